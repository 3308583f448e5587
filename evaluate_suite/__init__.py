"""evaluate_suite: benchmarks, protocols, metrics and the leaderboard of OphCLIP.

- Benchmarks: `get_benchmark(name)`, `list_benchmarks(real=None)`, `register_benchmark(BenchmarkSpec(...))`
  (spec.py: what a benchmark is, the split vocabulary `SPLITS`, the prompt modes; registry.py; loaders.py;
  benchmarks.py: the built-in ones; prompts/), `benchmark_card(spec)` (cards.py: what is scored and ignored).
- Models: `load_encoder(folder_or_hub_id)` -> a `VideoTextEncoder` (`OphCLIPEncoder`, `CLIPEncoder`; models.py);
  `read_model_config(path)` checks that a path is a model, with one clear error line (model_path.py, also used by
  the `ophclip` command).
- Protocols: `zero_shot_phase`, `zero_shot_instruments`, `linear_probe`, `video_text_retrieval` (protocols/), each
  returning a result dict and appending an `EvalRecord` to a results file.
- Metrics: `load_metric("video_phase" | "multilabel_instruments" | "retrieval")` (local evaluate modules).
- Leaderboard: `EvalRecord`, `append_record`, `read_records`, `render_leaderboard`, `weights_hash` (leaderboard.py:
  the record store, the weights hash, the tables; `published_metrics` feeds the Hub metadata writers of
  `model_cards.eval_results`). Every rate is stored as a fraction; tables show percent.
- Progress bars on stderr when it is a terminal: `set_progress(False)` turns them off (progress.py; `--quiet`).
- The paper's Table 1: `run_table(models, roots, ...)` (table.py; `python -m evaluate_suite table`).
- Command line: `python -m evaluate_suite --help`.

Names are imported on first use (`datasets_ophvl.lazy`), so `import evaluate_suite` stays cheap (no torch until a
model or protocol is used). Of ours it imports `modeling_ophclip` (the model, the zero-shot classifier builder, frame
sampling, the masked frame mean) and `datasets_ophvl` (the OphVL reader for retrieval); `ophclip_train` and
`ophclip_cli` import it, never the reverse.
"""

from datasets_ophvl.lazy import lazy_exports


_LAZY = {
    ".registry": (
        "BenchmarkSpec", "IGNORE_INDEX", "LoadReport", "VideoAnnotation", "get_benchmark", "list_benchmarks",
        "register_benchmark", "load_builtin_benchmarks",
    ),
    ".spec": ("PROMPT_MODES", "SPLITS"),
    ".cards": ("benchmark_card",),
    ".table": ("run_table",),
    ".metrics": ("load_metric",),
    ".models": ("CLIPEncoder", "OphCLIPEncoder", "VideoTextEncoder", "load_encoder"),
    ".protocols": (
        "extract_frame_features", "linear_probe", "video_text_retrieval", "zero_shot_instruments", "zero_shot_phase",
    ),
    ".leaderboard": (
        "EvalRecord", "append_record", "read_records", "render_leaderboard", "weights_hash", "published_metrics",
    ),
    ".model_path": ("read_model_config",),
    ".progress": ("set_progress",),
    ".cli": ("main",),
}


__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
