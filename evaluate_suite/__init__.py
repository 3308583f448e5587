"""evaluate_suite: benchmarks, protocols, metrics and the leaderboard of OphCLIP.

- Benchmarks: `get_benchmark(name)`, `list_benchmarks(real=None)`, `register_benchmark(BenchmarkSpec(...))`
  (spec.py: what a benchmark is, the split vocabulary `SPLITS`, the prompt modes; registry.py; loaders.py;
  benchmarks.py: the built-in ones; prompts/), `benchmark_card(spec)` (cards.py: what is scored and ignored).
- Models: `load_encoder(folder_or_hub_id)` -> a `VideoTextEncoder` (`OphCLIPEncoder`, `CLIPEncoder`; models.py).
- Protocols: `zero_shot_phase`, `zero_shot_instruments`, `linear_probe`, `video_text_retrieval` (protocols/), each
  returning a result dict and appending an `EvalRecord` to a results file.
- Metrics: `load_metric("video_phase" | "multilabel_instruments" | "retrieval")` (local evaluate modules).
- Leaderboard: `EvalRecord`, `append_record`, `read_records`, `render_leaderboard`, `weights_hash` (leaderboard.py).
- The paper's Table 1: `run_table(models, roots, ...)` (table.py; `python -m evaluate_suite table`).
- Command line: `python -m evaluate_suite --help`.

Names are imported on first use, so `import evaluate_suite` stays cheap (no torch until a model or protocol is used).
"""

import importlib


_LAZY = {
    "BenchmarkSpec": ".registry",
    "IGNORE_INDEX": ".registry",
    "LoadReport": ".registry",
    "VideoAnnotation": ".registry",
    "get_benchmark": ".registry",
    "list_benchmarks": ".registry",
    "register_benchmark": ".registry",
    "load_builtin_benchmarks": ".registry",
    "PROMPT_MODES": ".spec",
    "SPLITS": ".spec",
    "benchmark_card": ".cards",
    "run_table": ".table",
    "load_metric": ".metrics",
    "CLIPEncoder": ".models",
    "OphCLIPEncoder": ".models",
    "VideoTextEncoder": ".models",
    "load_encoder": ".models",
    "extract_frame_features": ".protocols",
    "linear_probe": ".protocols",
    "video_text_retrieval": ".protocols",
    "zero_shot_instruments": ".protocols",
    "zero_shot_phase": ".protocols",
    "EvalRecord": ".leaderboard",
    "append_record": ".leaderboard",
    "read_records": ".leaderboard",
    "render_leaderboard": ".leaderboard",
    "weights_hash": ".leaderboard",
    "main": ".cli",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
