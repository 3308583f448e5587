"""Evaluation protocols: zero-shot phase and instrument recognition, linear probing, text <-> video retrieval.

Every protocol is a function `(encoder, benchmark or folder, ...) -> dict` that also appends an `EvalRecord` to a
results file (`results_file=None`: none), with the videos it had to skip and why. `encoder` is any
`evaluate_suite.models.VideoTextEncoder`. The command line (`python -m evaluate_suite <protocol> --help`) wraps them.

- `zero_shot.py`: `zero_shot_phase`, `zero_shot_instruments` (and the instrument decision rules).
- `linear_probing.py`: `linear_probe` at 1% / 10% / 100% of the training videos.
- `retrieval.py`: `video_text_retrieval` on OphVL tar shards.
- `frames.py`: `extract_frame_features`, the shared frame stage (1-fps sampling, DataLoader decoding, skip rules).
- `common.py`: class embeddings, metric calls, result records. `defaults.py`: the defaults.

Names are imported on first use (torch is only imported when a protocol is).
"""

import importlib

from .defaults import (
    DEFAULT_FRACTIONS,
    DEFAULT_MAX_CLIPS,
    DEFAULT_RESULTS_FILE,
    DEFAULT_SEEDS,
    INSTRUMENT_RULES,
    NEGATIVE_TEMPLATES,
    SAMPLINGS,
)


_LAZY = {
    "class_embeddings": ".common",
    "instrument_metrics": ".common",
    "prompt_embeddings": ".common",
    "resolve_benchmark": ".common",
    "FRAME_TOLERANCE": ".frames",
    "FRAME_TOLERANCE_FRACTION": ".frames",
    "FrameFeatures": ".frames",
    "VideoFeatures": ".frames",
    "extract_frame_features": ".frames",
    "frame_count_problem": ".frames",
    "sample_frame_indices": ".frames",
    "linear_probe": ".linear_probing",
    "video_text_retrieval": ".retrieval",
    "instrument_probabilities": ".zero_shot",
    "smooth_probabilities": ".zero_shot",
    "zero_shot_instruments": ".zero_shot",
    "zero_shot_phase": ".zero_shot",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(
    ["DEFAULT_FRACTIONS", "DEFAULT_MAX_CLIPS", "DEFAULT_RESULTS_FILE", "DEFAULT_SEEDS", "INSTRUMENT_RULES",
     "NEGATIVE_TEMPLATES", "SAMPLINGS", *_LAZY]
)
