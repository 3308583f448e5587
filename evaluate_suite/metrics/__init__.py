"""Local `evaluate` metric modules of the OphCLIP evaluation suite.

The Hub is not reachable, so `evaluate.load("accuracy")` fails; these modules load from their folder instead:

    from evaluate_suite.metrics import load_metric
    phase = load_metric("video_phase")      # per-video accuracy / macro-F1, averaged over videos
    tools = load_metric("multilabel_instruments")  # multi-label mAP and false-positive rate
    retrieval = load_metric("retrieval")    # R@1/5/10 (fractions), MedR, MnR

Each module is `<name>/<name>.py` with a `README.md` metric card next to it; both ship with the package (setup.cfg
`[options.package_data]`), so `load_metric` works from an installed package as well as from a checkout.
"""

from pathlib import Path


METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("video_phase", "multilabel_instruments", "retrieval")


def metric_path(name: str) -> str:
    """Folder of the local metric module `name` (what `evaluate.load` takes)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; available: {', '.join(METRIC_NAMES)}.")
    folder = METRICS_DIR / name
    if not (folder / f"{name}.py").is_file():
        raise FileNotFoundError(
            f"Metric module {folder / (name + '.py')} is missing: the package was installed without its data files."
        )
    return str(folder)


def load_metric(name: str, **kwargs) -> "evaluate.EvaluationModule":  # noqa: F821 (evaluate is imported lazily)
    """`evaluate.load` on the local module folder of `name`; `kwargs` go to `evaluate.load` (e.g. `keep_in_memory`,
    `cache_dir`, `experiment_id`, `num_process`/`process_id` for distributed evaluation)."""
    import evaluate  # imported here so that `metric_path` works without evaluate (and its datasets import) installed

    return evaluate.load(metric_path(name), **kwargs)


__all__ = ["METRICS_DIR", "METRIC_NAMES", "load_metric", "metric_path"]
