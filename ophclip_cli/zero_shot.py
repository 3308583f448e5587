"""`ophclip zero-shot`: per-second class probabilities of one video against text labels."""

import csv
import json
from pathlib import Path

from evaluate_suite.progress import progress_bar
from .common import CLIError, _check_output, encode_frames, encode_texts, frame_embeddings, load_ophclip
from .plots import plot_timeline
from .video import iter_fps_frames, open_video


def parse_labels(args) -> tuple[list[str], list[list[str]]]:
    """Class names and, per class, the texts whose mean embedding represents it."""
    if args.benchmark:
        try:
            from evaluate_suite.registry import get_benchmark
        except ImportError:
            raise CLIError("--benchmark needs the evaluate_suite package of the OphCLIP project") from None
        try:
            class_texts = get_benchmark(args.benchmark).class_texts()
        except (ValueError, OSError) as error:
            raise CLIError(str(error)) from None
        return list(class_texts), [list(texts) for texts in class_texts.values()]
    if args.labels_file:
        try:
            lines = Path(args.labels_file).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise CLIError(f"cannot read labels file {args.labels_file!r}: {error.strerror or error}") from None
        labels = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    else:
        labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    if not labels:
        raise CLIError("the label list is empty; give at least one label")
    if len(set(labels)) != len(labels):
        raise CLIError(f"the label list has duplicates: {sorted({l for l in labels if labels.count(l) > 1})}")
    if "{}" not in args.template:
        raise CLIError(f"--template must contain '{{}}' where the label goes, got {args.template!r}")
    return labels, [[args.template.format(label)] for label in labels]


def class_embeddings(model, processor, texts_per_class: list[list[str]]):
    """One L2-normalised embedding per class (`modeling_ophclip.build_zero_shot_classifier`)."""
    from modeling_ophclip import build_zero_shot_classifier

    return build_zero_shot_classifier(lambda texts: encode_texts(model, processor, texts), texts_per_class)


def iter_zero_shot_batches(model, processor, reader, class_embeds, fps: float, batch_size: int):
    """Classify the frames at 0, 1/fps, 2/fps, ... of an open video, `batch_size` decoded frames at a time (never the
    whole video). Yields one `(times, frames, frame_embeds, probs)` per batch: decoded RGB frames `(n, H, W, 3)`,
    L2-normalised frame embeddings `(n, D)` and softmax class probabilities `(n, C)` (both on the CPU), so that a
    caller can show progress, index the embeddings for search or score how in-domain the frames look without a
    second pass over the video."""
    scale = model.logit_scale.exp().float().item()
    for _, batch_times, frames in iter_fps_frames(reader, fps, batch_size):
        frame_embeds = encode_frames(model, processor, frames)
        probs = (scale * frame_embeds @ class_embeds.t()).softmax(dim=-1).cpu()
        yield batch_times, frames, frame_embeds.cpu(), probs


def frame_count(reader, fps: float) -> int:
    """How many frames `iter_zero_shot_batches` classifies at `fps`."""
    from modeling_ophclip.video_processing_ophclip import fps_frame_indices

    return len(fps_frame_indices(len(reader), reader.get_avg_fps(), fps))


def prediction_rows(times, probs, duration: float, fps: float, window: float | None):
    """`(start, end, probs)` per frame, or per window of `window` seconds with the frame probabilities averaged."""
    step = 1.0 / fps
    if not window:
        return [(t, min(t + step, duration), p.tolist()) for t, p in zip(times, probs)]
    rows = []
    bins = [int(t // window) for t in times]
    for b in sorted(set(bins)):
        members = [i for i, x in enumerate(bins) if x == b]
        rows.append((b * window, min((b + 1) * window, duration), probs[members].mean(dim=0).tolist()))
    return rows


def zero_shot_predictions(model, processor, video, class_embeds, fps: float, window: float | None, batch_size: int,
                          embeddings: list | None = None):
    """Per-frame (or per-window) class probabilities: a list of `(start, end, probs)`; also returns the duration.
    With `embeddings` (a list), the frame embeddings of each batch are appended to it."""
    import torch

    reader = open_video(video)
    duration = len(reader) / reader.get_avg_fps()
    times, probs = [], []
    with progress_bar(total=frame_count(reader, fps), desc=f"zero-shot {Path(video).name}", unit="frame") as bar:
        for batch_times, _, frame_embeds, batch_probs in iter_zero_shot_batches(model, processor, reader, class_embeds,
                                                                                fps, batch_size):
            probs.append(batch_probs)
            times.extend(batch_times)
            if embeddings is not None:
                embeddings.append(frame_embeds)
            bar.update(len(batch_times))
    return prediction_rows(times, torch.cat(probs), duration, fps, window), duration


def write_predictions(path: Path, video: str, labels: list[str], rows, args, duration: float, signal=None):
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["start", "end", "label", "score", *(f"prob_{label}" for label in labels)])
            for start, end, probs in rows:
                best = max(range(len(labels)), key=probs.__getitem__)
                writer.writerow([f"{start:.3f}", f"{end:.3f}", labels[best], f"{probs[best]:.6f}",
                                 *(f"{p:.6f}" for p in probs)])
    else:
        predictions = []
        for start, end, probs in rows:
            best = max(range(len(labels)), key=probs.__getitem__)
            predictions.append({"start": round(start, 3), "end": round(end, 3), "label": labels[best],
                                "score": probs[best], "probs": dict(zip(labels, probs))})
        payload = {"video": str(video), "model": args.model, "labels": labels, "fps": args.fps,
                   "window": args.window, "duration": duration, "predictions": predictions}
        if signal is not None:
            payload["out_of_domain"] = dict(signal)
        path.write_text(json.dumps(payload, indent=2), encoding="utf-8")


def _resolve_ood_reference(args, model, processor):
    path = args.ood_reference or default_ood_reference_path(args.model)
    return load_ood_reference(path, model, processor) if path else None


def cmd_zero_shot(args) -> int:
    import torch

    if args.fps <= 0:
        raise CLIError(f"--fps must be positive, got {args.fps}")
    if args.window is not None and args.window <= 0:
        raise CLIError(f"--window must be positive, got {args.window}")
    labels, texts = parse_labels(args)
    output = _check_output(args.output, args.overwrite, (".csv", ".json"))
    timeline = _check_output(args.timeline, args.overwrite, (".png",)) if args.timeline else None
    if args.ood_reference and not Path(args.ood_reference).is_file():
        raise CLIError(f"--ood-reference {args.ood_reference!r} does not exist")
    open_video(args.video)  # fail on an unreadable video before loading the model
    model, processor = load_ophclip(args.model, args.device)
    reference = _resolve_ood_reference(args, model, processor)
    class_embeds = class_embeddings(model, processor, texts)
    embeddings = []
    rows, duration = zero_shot_predictions(model, processor, args.video, class_embeds, args.fps, args.window,
                                           args.batch_size, embeddings=embeddings)
    signal = out_of_domain_signal(torch.cat(embeddings), reference, class_embeds, labels)
    write_predictions(output, args.video, labels, rows, args, duration, signal)
    if timeline is not None:
        plot_timeline(timeline, labels, rows, f"{Path(args.video).name} — {args.model}")
    print(f"ophclip zero-shot: wrote {len(rows)} predictions to {output}" + (f" and {timeline}" if timeline else ""))
    print(f"ophclip zero-shot: {signal['message']}")
    return 0


def cmd_ood_reference(args) -> int:
    """`ophclip ood-reference`: the out-of-domain reference of a model from in-domain videos."""
    import torch

    from .video import _collect_videos

    if args.fps <= 0:
        raise CLIError(f"--fps must be positive, got {args.fps}")
    output = _check_output(args.output, args.overwrite, (".json",))
    labels, texts = parse_labels(args) if (args.labels or args.labels_file or args.benchmark) else (None, None)
    videos = _collect_videos(args.inputs)
    for video in videos:  # every video must be readable: a reference is only as good as the videos it is made of
        open_video(video)
    model, processor = load_ophclip(args.model, args.device)
    class_embeds = class_embeddings(model, processor, texts) if texts else None
    embeddings = []
    for video in progress_bar(videos, desc="ood-reference", unit="video"):
        embeddings.append(frame_embeddings(model, processor, open_video(video), args.fps, args.batch_size)[0])
    reference = build_ood_reference(model, processor, torch.cat(embeddings), class_embeds, labels,
                                    videos=len(videos))
    save_ood_reference(reference, output)
    print(f"ophclip ood-reference: wrote the reference of {reference['frames']} frames from {len(videos)} videos to "
          f"{output}" + (f" (with the text statistic for {len(labels)} classes)" if labels else ""))
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# Out-of-domain signal
#
# A softmax over a handful of phase prompts always names some phase, often with a high probability, even for a
# street scene: the probabilities say which prompt fits best, not whether any fits. The signal asks instead whether
# the video's frames look like frames of videos the model is known to handle, in the model's own embedding space,
# against a reference computed once from in-domain videos (e.g. the demo benchmark's training split):
#
# * distance: a frame's root-mean-square z-score from the in-domain frames' per-dimension mean and standard deviation
#   (a diagonal Gaussian; plain cosine to the mean is not enough: embeddings share a large common direction, so every
#   picture has a cosine near 1 to the mean); a frame is "unlike the reference" when its distance exceeds the 99th
#   percentile of the in-domain frames' own distances. The video is flagged when more than half its frames are, i.e.
#   its median frame lies outside the in-domain frames' 99 %.
# * text, reported beside it (not part of the flag): the share of frames whose best prompt matches worse (cosine)
#   than 95 % of in-domain frames do, when the reference was made with the same class list. A trained model's prompts
#   fit surgical frames far better than a street scene; a random or barely trained one gives no such margin.
#
# It is a distance to one in-domain distribution, not a calibrated probability: a domain the reference videos do not
# cover (another clinic, another microscope) is flagged too, which is the intended reading ("the predictions are not
# backed by videos like the ones the model was checked on"); a reference of a few videos makes it stricter.

OOD_REFERENCE_FILE = "ood_reference.json"
OOD_FORMAT = "ophclip-ood-reference/2"
OOD_DISTANCE_QUANTILE = 0.99
OOD_TEXT_QUANTILE = 0.05
OOD_FLAG_FRACTION = 0.5
_PROBE_SIZE = 64


def _probe_frames():
    """A fixed synthetic picture whose embedding fingerprints the model a reference was computed with."""
    import numpy as np

    y, x = np.mgrid[0:_PROBE_SIZE, 0:_PROBE_SIZE]
    frame = np.stack([x * 4 % 256, y * 4 % 256, (x + y) * 2 % 256], axis=-1).astype(np.uint8)
    return frame[None]


def _ood_distances(frame_embeds, mean, std):
    return (((frame_embeds.float().cpu() - mean) / std) ** 2).mean(dim=1).sqrt()


def build_ood_reference(model, processor, frame_embeds, class_embeds=None, classes=None, *, videos: int) -> dict:
    """The out-of-domain reference (a JSON-serialisable dict) from the L2-normalised embeddings `(N, D)` of frames of
    in-domain videos; with `class_embeds` and `classes`, also the text statistic for that class list."""
    import torch

    frame_embeds = frame_embeds.float().cpu()
    if frame_embeds.ndim != 2 or len(frame_embeds) < 20:
        raise CLIError(f"an out-of-domain reference needs the embeddings of at least 20 in-domain frames, got "
                       f"{len(frame_embeds) if frame_embeds.ndim == 2 else 'none'}")
    mean = frame_embeds.mean(dim=0)
    std = frame_embeds.std(dim=0).clamp(min=1e-6)
    distances = _ood_distances(frame_embeds, mean, std)
    reference = {
        "format": OOD_FORMAT,
        "videos": int(videos),
        "frames": int(len(frame_embeds)),
        "mean": [round(v, 7) for v in mean.tolist()],
        "std": [round(v, 7) for v in std.tolist()],
        "distance_quantile": OOD_DISTANCE_QUANTILE,
        "distance_threshold": float(torch.quantile(distances, OOD_DISTANCE_QUANTILE)),
        "flag_fraction": OOD_FLAG_FRACTION,
        "probe": [round(v, 7) for v in encode_frames(model, processor, _probe_frames())[0].cpu().tolist()],
    }
    if class_embeds is not None and classes is not None:
        best = (frame_embeds @ class_embeds.float().cpu().t()).max(dim=1).values
        reference["text"] = {"classes": list(classes), "quantile": OOD_TEXT_QUANTILE,
                             "threshold": float(torch.quantile(best, OOD_TEXT_QUANTILE))}
    return reference


def save_ood_reference(reference: dict, path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(reference, indent=1), encoding="utf-8")
    return path


def load_ood_reference(path, model=None, processor=None) -> dict:
    """Read a reference written by `save_ood_reference`; with the model, check that it was computed with this model
    (the embedding of a fixed probe picture must match)."""
    import torch

    try:
        reference = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CLIError(f"cannot read the out-of-domain reference {str(path)!r}: {error}") from None
    if not isinstance(reference, dict) or reference.get("format") != OOD_FORMAT:
        raise CLIError(f"{str(path)!r} is not an out-of-domain reference (expected the JSON that "
                       "`ophclip ood-reference` writes)")
    if model is not None:
        probe = encode_frames(model, processor, _probe_frames())[0].cpu()
        stored = torch.tensor(reference["probe"], dtype=torch.float32)
        if stored.shape != probe.shape or float(stored @ probe) < 0.999:
            raise CLIError(f"the out-of-domain reference {str(path)!r} was computed with another model (its probe "
                           "embedding differs); compute it again with `ophclip ood-reference`")
    return reference


def out_of_domain_signal(frame_embeds, reference: dict | None, class_embeds=None, classes=None) -> dict:
    """How unlike the in-domain reference a video's frames are (see the comment above).

    Returns `{"available", "fraction_unlike" (share of frames beyond the reference's distance threshold),
    "median_distance", "threshold", "text_fraction" (None without a text statistic for these classes), "flagged",
    "message"}`; without a reference, `available` is False and the message says how to make one."""
    import torch

    if reference is None:
        return {"available": False, "fraction_unlike": None, "median_distance": None, "threshold": None,
                "text_fraction": None, "flagged": None,
                "message": "out-of-domain signal: no reference for this model (make one from in-domain videos with "
                           "`ophclip ood-reference`)"}
    mean = torch.tensor(reference["mean"], dtype=torch.float32)
    std = torch.tensor(reference["std"], dtype=torch.float32)
    distances = _ood_distances(frame_embeds, mean, std)
    threshold = reference["distance_threshold"]
    fraction = float((distances > threshold).float().mean())
    flagged = fraction > reference["flag_fraction"]
    text_fraction, text_note = None, ""
    text = reference.get("text")
    if text and class_embeds is not None and classes is not None and list(classes) == text["classes"]:
        best = (frame_embeds.float().cpu() @ class_embeds.float().cpu().t()).max(dim=1).values
        text_fraction = float((best < text["threshold"]).float().mean())
        text_note = (f"; {100 * text_fraction:.0f}% of frames match their best prompt worse than "
                     f"{100 - round(100 * text['quantile'])}% of in-domain frames")
    verdict = ("OUT OF DOMAIN: the predictions are not backed by videos like the reference" if flagged
               else "in domain")
    return {"available": True, "fraction_unlike": fraction, "median_distance": float(distances.median()),
            "threshold": threshold, "text_fraction": text_fraction, "flagged": flagged,
            "message": f"out-of-domain signal: {100 * fraction:.0f}% of frames lie farther from the in-domain "
                       f"reference ({reference['videos']} videos) than {round(100 * reference['distance_quantile'])}% "
                       f"of its own frames (flag above {100 * reference['flag_fraction']:.0f}%): {verdict}{text_note}"}


def default_ood_reference_path(model_id: str) -> Path | None:
    path = Path(model_id) / OOD_REFERENCE_FILE
    return path if path.is_file() else None
