"""Zero-shot phase recognition and zero-shot multi-instrument recognition on labelled benchmark videos.

Both follow the SurgVLP/PeskaVLP frame-level protocol that OphCLIP's predecessors publish (`tests/zero_shot.py`):
frames sampled at 1 fps from each test video, each frame embedded on its own, compared with class text embeddings.

Prompts (`prompts`): `"sentence"` embeds one sentence per class, as SurgVLP/HecVL/PeskaVLP do — the default of the
real benchmarks, so their numbers compare with the published ones; `"ensemble"` embeds every sentence and template of
a class and averages them (open_clip's template ensembling) — the default of the synthetic OphVL-mini benchmarks.
`None` takes the benchmark's `prompt_mode`. The mode is recorded (`extra["prompt_mode"]`, and the prompts hash covers
the texts); a mode other than the benchmark's default is also named in the protocol (`zero-shot-ensemble`), so both
can sit on one leaderboard.

Frames (`sampling`): `"fps"` (1 fps) by default; `"labelled"` scores exactly the labelled frames, the default of
benchmarks with sparse labels (CaDIS, the Cataract-1K segmentation frames). Other deliberate differences: the class
embeddings are computed once per benchmark (not once per video), and unusable videos are listed instead of crashing
or counting as zeros; loader notes (e.g. Cataract-1K frame numbers that disagree with seconds) are recorded in
`extra["load_notes"]`.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from ..spec import IGNORE_INDEX
from .common import (
    DEFAULT_RESULTS_FILE,
    benchmark_extra,
    class_embeddings,
    instrument_metrics,
    phase_metrics,
    prompt_embeddings,
    prompt_mode,
    protocol_name,
    resolve_benchmark,
    sampling_mode,
    save_record,
    scalar_metrics,
    sigmoid,
    softmax,
)
from .defaults import INSTRUMENT_RULES, NEGATIVE_TEMPLATES
from .frames import scorable, split_frame_features


# -- phase ----------------------------------------------------------------------------------------------------------


def phase_probabilities(features: np.ndarray, class_embeds: np.ndarray, logit_scale: float) -> np.ndarray:
    """softmax over classes of `logit_scale * cos(frame, class)`: `(n, C)` probabilities."""
    return softmax(logit_scale * features @ class_embeds.T)


def smooth_probabilities(probs: np.ndarray, window: int) -> np.ndarray:
    """Centred moving mean over `window` consecutive sampled frames (shrinking at the video's ends); `window <= 1`
    returns `probs` unchanged. At 1 fps a window of 5 averages each frame with the two seconds on either side."""
    if window is None or window <= 1 or len(probs) < 2:
        return probs
    half_before, half_after = (window - 1) // 2, window // 2
    padded = np.concatenate([np.zeros((1, probs.shape[1])), np.cumsum(probs, axis=0)])
    n = len(probs)
    lo = np.clip(np.arange(n) - half_before, 0, n)
    hi = np.clip(np.arange(n) + half_after + 1, 0, n)
    return (padded[hi] - padded[lo]) / (hi - lo)[:, None]


def zero_shot_phase(encoder, benchmark, root, split: str = "test", *, fps: float = 1.0, batch_size: int = 32,
                    num_workers: int = 0, smooth_window: int = 0, plots_dir=None,
                    results_file=DEFAULT_RESULTS_FILE, prompts: str | None = None,
                    sampling: str | None = None) -> dict:
    """Zero-shot phase recognition: every sampled frame gets `argmax_c softmax(s * cos(frame, class_c))`, with `s`
    the model's logit scale and class embeddings from all prompts of a class (averaged, re-normalised).

    Scored with `video_phase`: accuracy and macro-F1 per video (frames labelled IGNORE_INDEX dropped), averaged over
    videos. With `smooth_window > 1` the class probabilities are also smoothed over time (centred moving mean over
    that many sampled frames) and the smoothed predictions are scored separately (`accuracy_smoothed`,
    `f1_smoothed`, ...); the unsmoothed numbers are the protocol's result. With `plots_dir`, one phase-timeline PNG per
    video and a confusion matrix PNG (row-normalised) are written.

    `prompts` and `sampling`: see the module docstring (`None`: the benchmark's defaults).

    Returns a dict with `metrics`, `per_video`, `skipped` (`{video_id: reason}`), `plots`, `predictions` (per video,
    at the sampled frames), `prompts_hash`, `prompt_mode`, `load_notes` and the appended `record`
    (`results_file=None`: none, and `record` is None).
    """
    spec = resolve_benchmark(benchmark, "phase")
    mode, sampling = prompt_mode(spec, prompts), sampling_mode(spec, sampling)
    class_embeds = class_embeddings(encoder, spec, mode)  # first: a class without prompts fails before any decoding
    extracted, skipped, notes = split_frame_features(encoder, spec, root, split, fps=fps, batch_size=batch_size,
                                                     num_workers=num_workers, sampling=sampling)

    scale = encoder.logit_scale
    ids, predictions, smoothed, references = [], [], [], []
    for video in extracted.videos:
        if not scorable(video).any():
            skipped[video.video_id] = "no labelled frame among the sampled frames"
            continue
        probs = phase_probabilities(video.features, class_embeds, scale)
        ids.append(video.video_id)
        predictions.append(probs.argmax(axis=1))
        smoothed.append(smooth_probabilities(probs, smooth_window).argmax(axis=1))
        references.append(video.labels)
    if not ids:
        raise ValueError(f"benchmark {spec.name!r}: every video of split {split!r} was skipped: {skipped}")

    results = phase_metrics(ids, predictions, references, len(spec.classes))
    metrics = scalar_metrics(results)
    per_video = results["per_video"]
    if smooth_window and smooth_window > 1:
        results_smoothed = phase_metrics(ids, smoothed, references, len(spec.classes))
        metrics.update({f"{k}_smoothed": v for k, v in scalar_metrics(results_smoothed).items() if k != "num_videos"})
        for vid, values in results_smoothed["per_video"].items():
            per_video[vid].update({"accuracy_smoothed": values["accuracy"], "f1_smoothed": values["f1"]})
    metrics["num_skipped"] = len(skipped)
    metrics["frames"] = int(sum(np.count_nonzero(r != IGNORE_INDEX) for r in references))  # scored frames

    plots = []
    if plots_dir is not None:
        plots = _phase_plots(Path(plots_dir), spec, ids, predictions, references,
                             smoothed if smooth_window and smooth_window > 1 else None, fps)

    extra = {**benchmark_extra(spec, split, sampling, fps, notes), "prompt_mode": mode,
             "smooth_window": smooth_window, "logit_scale": scale, "per_video": per_video,
             "model": encoder.describe(), "seconds": round(extracted.seconds, 2)}
    prompts_hash = spec.prompts_hash(mode)
    protocol = protocol_name("zero-shot", spec, mode)
    record = save_record(results_file, encoder, spec.name, protocol, metrics, prompts_hash, skipped, extra)
    return {"benchmark": spec.name, "protocol": protocol, "split": split, "model_id": encoder.model_id,
            "metrics": metrics, "per_video": per_video, "skipped": skipped, "plots": [str(p) for p in plots],
            "predictions": dict(zip(ids, predictions)), "prompts_hash": prompts_hash, "prompt_mode": mode,
            "load_notes": notes, "record": record}


def _phase_plots(folder: Path, spec, ids, predictions, references, smoothed, fps) -> list[Path]:
    from ..plots import plot_confusion_matrix, plot_phase_timeline

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, vid in enumerate(ids):
        path = folder / f"{_safe(spec.name)}_timeline_{_safe(vid)}.png"
        plot_phase_timeline(predictions[i], references[i], list(spec.classes), path, title=f"{spec.name}: {vid}",
                            fps=fps or 1.0, ignore_index=IGNORE_INDEX,
                            smoothed=None if smoothed is None else smoothed[i])
        paths.append(path)
    refs, preds = np.concatenate(references), np.concatenate(predictions)
    scored = refs != IGNORE_INDEX
    path = folder / f"{_safe(spec.name)}_confusion.png"
    plot_confusion_matrix(preds[scored], refs[scored], list(spec.classes), path, normalize="true")
    paths.append(path)
    return paths


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


# -- instruments ----------------------------------------------------------------------------------------------------


def negative_texts(classes, templates=NEGATIVE_TEMPLATES) -> dict[str, list[str]]:
    """The "absent" description of every class: each negative template filled with the class name."""
    if not templates:
        raise ValueError("the prompt-pair rule needs at least one negative template, e.g. 'no {} is visible.'")
    return {name: [template.format(name) for template in templates] for name in classes}


def instrument_probabilities(features: np.ndarray, positive: np.ndarray, negative: np.ndarray | None,
                             logit_scale: float, rule: str = "prompt-pair") -> np.ndarray:
    """Per-class presence probabilities `(n, C)` of frames `(n, D)`; see `zero_shot_instruments` for the rules."""
    if rule == "prompt-pair":
        return sigmoid(logit_scale * (features @ positive.T - features @ negative.T))
    if rule == "sigmoid":
        return sigmoid(features @ positive.T)
    raise ValueError(f"unknown instrument decision rule {rule!r}; choose one of {INSTRUMENT_RULES}")


def zero_shot_instruments(encoder, benchmark, root, split: str = "test", *, fps: float = 1.0,
                          rule: str = "prompt-pair", negative_templates=NEGATIVE_TEMPLATES, threshold: float = 0.5,
                          batch_size: int = 32, num_workers: int = 0, results_file=DEFAULT_RESULTS_FILE,
                          prompts: str | None = None, sampling: str | None = None) -> dict:
    """Zero-shot multi-instrument recognition: an independent presence probability per instrument and frame.

    Decision rules (`rule`), with `x` the normalised frame embedding, `t_c` the class embedding (all prompts of
    instrument c averaged, re-normalised), `n_c` the embedding of its negative prompts (`negative_templates` filled
    with the class name, averaged, re-normalised) and `s` the model's logit scale (1/τ):

    - `"prompt-pair"` (default): `p_c = softmax(s * [x·t_c, x·n_c])[0] = sigmoid(s * (x·t_c - x·n_c))`. This is the
      model's own contrastive head asked a two-way question per instrument, "present or absent?", at the temperature
      it was trained with. It is a probability that does not depend on the other instruments nor on the absolute
      level of cosine similarities (which differs between models: CLIP's are all positive), so one threshold fits
      every model and class; `p_c >= 0.5` exactly when the frame is closer to the "present" than to the "absent"
      description.
    - `"sigmoid"`: `p_c = sigmoid(x·t_c)` (no scale), the PeskaVLP triplet evaluator's rule, kept for comparison with
      published FPRs. It is not calibrated: any positive cosine similarity counts as present, which is why CLIP
      reaches an FPR of 100% under it.

    Scored with `multilabel_instruments`: mAP over classes (threshold-free) and the false-positive rate at
    `threshold` (0.5). Unknown labels (NaN, e.g. CATARACTS' 0.5) are excluded cell by cell. `prompts` and
    `sampling`: see the module docstring (the negative prompts are the templates whatever the mode).
    """
    spec = resolve_benchmark(benchmark, "instruments")
    if rule not in INSTRUMENT_RULES:
        raise ValueError(f"unknown instrument decision rule {rule!r}; choose one of {INSTRUMENT_RULES}")
    mode, sampling = prompt_mode(spec, prompts), sampling_mode(spec, sampling)
    positive = class_embeddings(encoder, spec, mode)
    negative, negatives = None, None
    if rule == "prompt-pair":
        negatives = negative_texts(spec.classes, negative_templates)
        negative = prompt_embeddings(encoder, negatives)
    extracted, skipped, notes = split_frame_features(encoder, spec, root, split, fps=fps, batch_size=batch_size,
                                                     num_workers=num_workers, sampling=sampling)

    scale = encoder.logit_scale
    scores, labels, used = [], [], []
    for video in extracted.videos:
        known = scorable(video)
        if not known.any():
            skipped[video.video_id] = "no labelled frame among the sampled frames"
            continue
        scores.append(instrument_probabilities(video.features[known], positive, negative, scale, rule))
        labels.append(video.labels[known])
        used.append(video.video_id)
    if not used:
        raise ValueError(f"benchmark {spec.name!r}: every video of split {split!r} was skipped: {skipped}")

    results = instrument_metrics(np.concatenate(scores), np.concatenate(labels), spec.classes, threshold)
    metrics = scalar_metrics(results)
    metrics.update({"num_videos": len(used), "num_skipped": len(skipped)})
    protocol = protocol_name("zero-shot" if rule == "prompt-pair" else f"zero-shot-{rule}", spec, mode)
    extra = {**benchmark_extra(spec, split, sampling, fps, notes), "prompt_mode": mode,
             "rule": rule, "threshold": threshold, "logit_scale": scale,
             "negative_templates": list(negative_templates) if negatives else None,
             "per_class_AP": results["per_class_AP"], "per_class_FPR": results["per_class_FPR"],
             "classes_without_positives": results["classes_without_positives"],
             "classes_without_negatives": results["classes_without_negatives"],
             "videos": used, "model": encoder.describe(), "seconds": round(extracted.seconds, 2)}
    prompts_hash = _prompts_hash(spec, negatives, mode)
    record = save_record(results_file, encoder, spec.name, protocol, metrics, prompts_hash, skipped, extra)
    return {"benchmark": spec.name, "protocol": protocol, "split": split, "model_id": encoder.model_id,
            "metrics": metrics, "per_class_AP": results["per_class_AP"], "per_class_FPR": results["per_class_FPR"],
            "skipped": skipped, "prompts_hash": prompts_hash, "prompt_mode": mode, "load_notes": notes,
            "record": record}


def _prompts_hash(spec, negatives: dict | None, mode: str | None = None) -> str:
    """The benchmark's prompt hash (of `mode`), extended with the negative prompts when the rule uses them."""
    if not negatives:
        return spec.prompts_hash(mode)
    text = json.dumps({"positive": spec.class_texts(mode), "negative": negatives}, sort_keys=True,
                      ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


__all__ = [
    "INSTRUMENT_RULES",
    "NEGATIVE_TEMPLATES",
    "instrument_probabilities",
    "negative_texts",
    "phase_probabilities",
    "smooth_probabilities",
    "zero_shot_instruments",
    "zero_shot_phase",
]
