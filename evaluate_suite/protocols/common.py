"""Pieces every protocol shares: benchmark resolution, class embeddings, metric calls, result records."""

import functools
import math

import numpy as np

from ..registry import BenchmarkSpec, LoadReport, get_benchmark
from .defaults import DEFAULT_RESULTS_FILE


def resolve_benchmark(benchmark, task: str | None = None) -> BenchmarkSpec:
    """A registered benchmark name or a `BenchmarkSpec` -> the spec, checking its task when `task` is given."""
    spec = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    if not isinstance(spec, BenchmarkSpec):
        raise TypeError(f"benchmark must be a registered name or a BenchmarkSpec, got {type(benchmark).__name__}")
    if task is not None and spec.task != task:
        raise ValueError(f"benchmark {spec.name!r} is a {spec.task!r} benchmark; this protocol needs a {task!r} one")
    return spec


def load_split(spec: BenchmarkSpec, root, split: str, notes: dict | None = None):
    """Annotations of one split and the loader's skipped videos (`{video_id: reason}`); the loader's notes on kept
    videos (`LoadReport.notes`) are added to `notes` when given."""
    annotations, report = spec.load(root, split)
    report = report or LoadReport()
    if notes is not None:
        notes.update(getattr(report, "notes", {}) or {})
    if not annotations:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(report.skipped.items())[:5])
        raise ValueError(f"benchmark {spec.name!r}: no usable video in split {split!r} under {str(root)!r}"
                         + (f" (skipped: {reasons})" if reasons else ""))
    return annotations, dict(report.skipped)


def prompt_embeddings(encoder, texts_per_class: dict[str, list[str]]) -> np.ndarray:
    """One embedding per class: its prompts embedded, averaged, re-normalised
    (`modeling_ophclip.build_zero_shot_classifier`). Returns `(C, D)` float32."""
    from modeling_ophclip import build_zero_shot_classifier

    empty = [name for name, texts in texts_per_class.items() if not texts]
    if not texts_per_class or empty:
        raise ValueError(f"no prompt for class(es) {empty}")
    return build_zero_shot_classifier(encoder.encode_texts, texts_per_class).numpy().astype(np.float32)


def class_embeddings(encoder, spec: BenchmarkSpec, mode: str | None = None) -> np.ndarray:
    """The benchmark's class embeddings in prompt `mode` (default: the benchmark's `prompt_mode`), computed once per
    call (raises a clear error when a class lacks prompts)."""
    return prompt_embeddings(encoder, spec.class_texts(mode))


def prompt_mode(spec: BenchmarkSpec, mode: str | None) -> str:
    """The prompt mode a protocol uses: `mode`, or the benchmark's default."""
    from ..spec import PROMPT_MODES

    mode = mode or spec.prompt_mode
    if mode not in PROMPT_MODES:
        raise ValueError(f"prompt mode must be one of {PROMPT_MODES}, got {mode!r}")
    return mode


def protocol_name(base: str, spec: BenchmarkSpec, mode: str) -> str:
    """`base`, suffixed with the prompt mode when it is not the benchmark's default (`zero-shot-ensemble` on a real
    benchmark), so that results of both modes are separate leaderboard entries."""
    return base if mode == spec.prompt_mode else f"{base}-{mode}"


def sampling_mode(spec: BenchmarkSpec, sampling: str | None) -> str:
    """`"labelled"` for benchmarks with sparse labels, else `"fps"`, unless `sampling` says otherwise."""
    from .defaults import SAMPLINGS

    sampling = sampling or ("labelled" if spec.sparse_labels else "fps")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    return sampling


def benchmark_extra(spec: BenchmarkSpec, split: str, sampling: str, fps, notes: dict) -> dict:
    """What every frame-level result records about how the benchmark was read."""
    return {"split": spec.canonical_split(split), "sampling": sampling,
            "fps": fps if sampling == "fps" else None, "unlabelled": list(spec.unlabelled),
            "load_notes": dict(notes)}


def l2_normalize(array: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return (array / np.maximum(norms, 1e-12)).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


@functools.lru_cache(maxsize=None)
def metric(name: str):
    """A local evaluate metric module, loaded once per process."""
    from ..metrics import load_metric

    return load_metric(name)


def phase_metrics(video_ids, predictions, references, num_classes: int) -> dict:
    """`video_phase` over the scored frames of every video (IGNORE_INDEX frames are dropped by the metric)."""
    ids = [vid for vid, pred in zip(video_ids, predictions) for _ in range(len(pred))]
    return metric("video_phase").compute(
        predictions=np.concatenate(predictions).tolist(), references=np.concatenate(references).tolist(),
        video_ids=ids, ignore_label=-1, labels=list(range(num_classes)),
    )


def instrument_metrics(scores: np.ndarray, labels: np.ndarray, class_names, threshold: float = 0.5) -> dict:
    """`multilabel_instruments` (mAP, FPR) with unknown labels (NaN) left out cell by cell.

    Without NaN this is one metric call. With NaN every class is scored on its own known frames and the class results
    are combined exactly as the metric combines them: mAP = mean AP over classes with a positive, FPR (micro) =
    sum of false positives / sum of negatives, FPR_macro = mean of the per-class FPRs.
    """
    scores, labels = np.asarray(scores, np.float32), np.asarray(labels, np.float32)
    names = list(class_names)
    if not np.isnan(labels).any():
        return metric("multilabel_instruments").compute(predictions=scores.tolist(),
                                                        references=labels.astype(np.int64).tolist(),
                                                        threshold=threshold, class_names=names)
    per_class_ap, per_class_fpr, no_pos, no_neg = {}, {}, [], []
    false_pos = negatives = 0
    for c, name in enumerate(names):
        known = ~np.isnan(labels[:, c])
        y, s = labels[known, c].astype(np.int64), scores[known, c]
        if y.size and y.any():
            result = metric("multilabel_instruments").compute(predictions=s[:, None].tolist(),
                                                              references=y[:, None].tolist(), threshold=threshold)
            per_class_ap[name] = result["per_class_AP"][0]
        else:
            no_pos.append(name)
        neg = y == 0
        if neg.any():
            fp = int(np.count_nonzero(s[neg] >= np.float32(threshold)))
            per_class_fpr[name] = fp / int(neg.sum())
            false_pos, negatives = false_pos + fp, negatives + int(neg.sum())
        else:
            no_neg.append(name)
    nan = float("nan")
    return {
        "mAP": float(np.mean(list(per_class_ap.values()))) if per_class_ap else nan,
        "per_class_AP": per_class_ap,
        "classes_without_positives": no_pos,
        "FPR": false_pos / negatives if negatives else nan,
        "FPR_macro": float(np.mean(list(per_class_fpr.values()))) if per_class_fpr else nan,
        "per_class_FPR": per_class_fpr,
        "classes_without_negatives": no_neg,
        "num_frames": int(len(labels)),
        "num_classes": len(names),
        "unknown_label_cells": int(np.isnan(labels).sum()),
    }


def scalar_metrics(results: dict) -> dict:
    """The numeric top-level entries of a metric result (per-video / per-class breakdowns go elsewhere)."""
    return {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def finite_or_none(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def save_record(results_file, encoder, benchmark: str, protocol: str, metrics: dict, prompts_hash: str | None,
                skipped: dict, extra: dict):
    """Append an `EvalRecord` to `results_file` and return it; with `results_file=None` nothing is recorded and
    None is returned (no weights hash is computed either: periodic evaluation during training stays cheap)."""
    if results_file is None:
        return None
    from ..leaderboard import EvalRecord, append_record

    record = EvalRecord(
        model_id=encoder.model_id,
        weights_hash=encoder.weights_hash,
        benchmark=benchmark,
        protocol=protocol,
        metrics=metrics,
        prompts_hash=prompts_hash,
        skipped=dict(skipped),
        extra=extra,
    )
    append_record(results_file, record)
    return record


__all__ = [
    "DEFAULT_RESULTS_FILE",
    "class_embeddings",
    "instrument_metrics",
    "load_split",
    "metric",
    "phase_metrics",
    "prompt_embeddings",
    "prompt_mode",
    "protocol_name",
    "sampling_mode",
    "resolve_benchmark",
    "save_record",
    "scalar_metrics",
]
