"""Evaluation protocols: zero-shot phase and instrument recognition, linear probing, text <-> video retrieval.

Every protocol is a function `(encoder, benchmark or folder, ...) -> dict` that also appends an `EvalRecord` to a
results file (`results_file=None`: none), with the videos it had to skip and why. `encoder` is any
`evaluate_suite.models.VideoTextEncoder`. The command line (`python -m evaluate_suite <protocol> --help`) wraps them.

- `zero_shot.py`: `zero_shot_phase`, `zero_shot_instruments` (and the instrument decision rules).
- `linear_probing.py`: `linear_probe` at 1% / 10% / 100% of the training videos.
- `retrieval.py`: `video_text_retrieval` on OphVL tar shards.
- `frames.py`: `extract_frame_features`, the shared frame stage (1-fps sampling, DataLoader decoding, skip rules).
- `common.py`: class embeddings, metric calls, result records. `defaults.py`: the defaults.

Names are imported on first use (`datasets_ophvl.lazy`; torch is only imported when a protocol is), so that the
command line's `--help`, which reads `defaults.py`, stays fast.
"""

from datasets_ophvl.lazy import lazy_exports


_LAZY = {
    ".defaults": (
        "DEFAULT_FRACTIONS", "DEFAULT_MAX_CLIPS", "DEFAULT_RESULTS_FILE", "DEFAULT_SEEDS", "INSTRUMENT_RULES",
        "NEGATIVE_TEMPLATES", "SAMPLINGS",
    ),
    ".common": ("class_embeddings", "instrument_metrics", "prompt_embeddings", "resolve_benchmark"),
    ".frames": (
        "FRAME_TOLERANCE", "FRAME_TOLERANCE_FRACTION", "FrameFeatures", "VideoFeatures", "extract_frame_features",
        "frame_count_problem", "sample_frame_indices",
    ),
    ".linear_probing": ("linear_probe",),
    ".retrieval": ("video_text_retrieval",),
    ".zero_shot": ("instrument_probabilities", "smooth_probabilities", "zero_shot_instruments", "zero_shot_phase"),
}


__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
