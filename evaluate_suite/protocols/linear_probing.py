"""Linear probing on frozen frame features, trained on 1% / 10% / 100% of the training videos.

Features are the encoder's L2-normalised frame embeddings at 1 fps (the zero-shot sampling), extracted once per split
and reused for every fraction and seed. The fraction is taken over training *videos*, never frames (frames of one
video are strongly correlated, so a frame fraction would leak most of every video into a 1% probe): fraction `f`
trains on `max(1, round(f * N))` of the `N` usable training videos, drawn without replacement by
`numpy.random.default_rng(seed)`, once per seed (`seeds`, fixed), except when the fraction covers every training
video (100%): then every draw is the same set and one run is made.

The probe is scikit-learn: `StandardScaler` followed by `LogisticRegression(C, lbfgs, max_iter)` (multinomial over
phases; one binary probe per instrument, trained on that instrument's known labels). Standardising first makes one
`C` (1.0 by default) reasonable for any embedding width, since L2-normalised features have per-dimension variance of
order 1/D. A training subset that holds a single class (a 1% probe on one short video can) gives a constant predictor
of that class; an instrument never seen present (or never absent) gives a constant score equal to its training
frequency.

Phase probes are scored with `video_phase` on the test split (per-video accuracy / macro-F1, averaged over videos),
instrument probes with `multilabel_instruments` (mAP, and FPR at 0.5 on the probe's probabilities). The metrics of a
fraction are means over seeds, with their standard deviation over seeds (`*_seed_std`).

On a small benchmark several fractions can round to the same number of videos (1% and 10% of 8 videos are both one
video): their rows are then the same draws. `linear_probe` warns, naming the fractions and the number of videos they
train on, and every row reports `train_videos` (videos per draw) and `train_pool` (usable training videos).
"""

import warnings

import numpy as np

from .common import (
    DEFAULT_RESULTS_FILE,
    instrument_metrics,
    phase_metrics,
    resolve_benchmark,
    sampling_mode,
    save_record,
    scalar_metrics,
)
from ..progress import progress_bar
from .defaults import DEFAULT_FRACTIONS, DEFAULT_SEEDS
from .frames import scorable, split_frame_features


class ConstantProbe:
    """What a probe learns from a single class: always that class (or that presence frequency)."""

    def __init__(self, value):
        self.value = value

    def predict(self, X):
        return np.full(len(X), self.value)

    def presence(self, X):
        return np.full(len(X), float(self.value), dtype=np.float32)


class LogisticProbe:
    """`StandardScaler` + `LogisticRegression` (see the module docstring)."""

    def __init__(self, C: float = 1.0, max_iter: int = 1000, seed: int = 0):
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError:
            raise ImportError("linear probing needs scikit-learn: pip install scikit-learn (or the package's "
                              "'train' extra)") from None
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))

    def fit(self, X, y):
        self.pipeline.fit(X, y)
        return self

    def predict(self, X):
        return self.pipeline.predict(X)

    def presence(self, X):
        classes = list(self.pipeline.classes_)
        return self.pipeline.predict_proba(X)[:, classes.index(1)].astype(np.float32)


def fit_phase_probe(X: np.ndarray, y: np.ndarray, C: float = 1.0, max_iter: int = 1000, seed: int = 0):
    """A multinomial probe from frames `X` and phase ids `y` (ignored frames already removed)."""
    classes = np.unique(y)
    if len(classes) == 1:
        return ConstantProbe(int(classes[0]))
    return LogisticProbe(C, max_iter, seed).fit(X, y)


def fit_instrument_probes(X: np.ndarray, Y: np.ndarray, C: float = 1.0, max_iter: int = 1000, seed: int = 0):
    """One binary probe per instrument, each on the frames where that instrument's label is known."""
    probes = []
    for c in range(Y.shape[1]):
        known = ~np.isnan(Y[:, c])
        y = Y[known, c].astype(np.int64)
        if len(np.unique(y)) < 2:
            probes.append(ConstantProbe(float(y.mean()) if y.size else 0.0))
        else:
            probes.append(LogisticProbe(C, max_iter, seed).fit(X[known], y))
    return probes


def subset_size(fraction: float, total: int) -> int:
    """Training videos used at `fraction`: `max(1, round(fraction * total))`, at most `total`."""
    if not 0 < fraction <= 1:
        raise ValueError(f"training fractions must be in (0, 1], got {fraction}")
    return min(total, max(1, int(round(fraction * total))))


def choose_videos(num_videos: int, fraction: float, seed: int) -> np.ndarray:
    """Indices of the training videos of one (fraction, seed) draw, in their original order."""
    size = subset_size(fraction, num_videos)
    return np.sort(np.random.default_rng(seed).permutation(num_videos)[:size])


def fraction_label(fraction: float) -> str:
    """`0.01 -> "1%"`, `0.1 -> "10%"`, `1.0 -> "100%"`, `0.125 -> "12.5%"`."""
    return f"{100 * fraction:.4g}%"


def same_size_fractions(fractions, num_videos: int) -> list[str]:
    """One line per group of fractions that select the same number of the `num_videos` training videos (and so,
    with the same seeds, the same videos).

    >>> same_size_fractions([0.01, 0.1, 1.0], 8)
    ['fractions 1% and 10% both train on 1 of 8 videos (the same draws; their rows are identical)']
    >>> same_size_fractions([0.01, 0.1, 1.0], 1)
    ['fractions 1%, 10% and 100% all train on 1 of 1 video (the same draws; their rows are identical)']
    >>> same_size_fractions([0.01, 0.1, 1.0], 200)
    []
    """
    by_size: dict[int, list[float]] = {}
    for fraction in dict.fromkeys(fractions):
        by_size.setdefault(subset_size(fraction, num_videos), []).append(fraction)
    lines = []
    for size, group in by_size.items():
        if len(group) > 1:
            labels = [fraction_label(f) for f in group]
            names = ", ".join(labels[:-1]) + f" and {labels[-1]}"
            lines.append(f"fractions {names} {'both' if len(group) == 2 else 'all'} train on {size} of {num_videos} "
                         f"video{'s' if num_videos != 1 else ''} (the same draws; their rows are identical)")
    return lines


def _stack(videos):
    """Features and labels of the labelled sampled frames of `videos`, concatenated."""
    X = np.concatenate([v.features[scorable(v)] for v in videos])
    y = np.concatenate([v.labels[scorable(v)] for v in videos])
    return X, y


def _evaluate_phase(probe, test_videos, num_classes):
    ids = [v.video_id for v in test_videos]
    predictions = [probe.predict(v.features).astype(np.int64) for v in test_videos]
    return phase_metrics(ids, predictions, [v.labels for v in test_videos], num_classes)


def _evaluate_instruments(probes, test_videos, class_names):
    X, Y = _stack(test_videos)
    scores = np.stack([probe.presence(X) for probe in probes], axis=1)
    return instrument_metrics(scores, Y, class_names)


def linear_probe(encoder, benchmark, root, *, train_split: str = "train", test_split: str = "test",
                 fractions=DEFAULT_FRACTIONS, seeds=DEFAULT_SEEDS, fps: float = 1.0, C: float = 1.0,
                 max_iter: int = 1000, batch_size: int = 32, num_workers: int = 0,
                 results_file=DEFAULT_RESULTS_FILE, sampling: str | None = None) -> dict:
    """Linear probes at each training fraction (see the module docstring); one `EvalRecord` per fraction, protocol
    `linear-probe-<percent>` (e.g. `linear-probe-10%`).

    Returns `{"benchmark", "protocol": "linear-probe", "results": {"1%": {"metrics", "per_seed", ...}, ...},
    "skipped", "records", "warnings"}` (`warnings`: fractions that train on the same videos, see the module
    docstring); skipped videos are keyed `"<split>:<video_id>"`. `sampling`: `"fps"` or `"labelled"` (default:
    `"labelled"` for benchmarks with sparse labels, as the zero-shot protocols). Two different split names
    that hold the same videos (a benchmark without an official split loads every video for every name) are refused;
    the same name twice is taken as asked.
    """
    spec = resolve_benchmark(benchmark)
    sampling = sampling_mode(spec, sampling)
    train_split, test_split = spec.canonical_split(train_split), spec.canonical_split(test_split)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("linear_probe needs at least one seed")
    fractions = [float(f) for f in fractions]
    for fraction in fractions:
        subset_size(fraction, 1)  # validates the range before any decoding

    features, skipped, notes = {}, {}, {}
    for split in (train_split, test_split):
        extracted, split_skipped, split_notes = split_frame_features(
            encoder, spec, root, split, fps=fps, batch_size=batch_size, num_workers=num_workers, sampling=sampling)
        notes.update({f"{split}:{vid}": remark for vid, remark in split_notes.items()})
        usable = []
        for video in extracted.videos:
            if scorable(video).any():
                usable.append(video)
            else:
                split_skipped[video.video_id] = "no labelled frame among the sampled frames"
        skipped.update({f"{split}:{vid}": reason for vid, reason in split_skipped.items()})
        if not usable:
            raise ValueError(f"benchmark {spec.name!r}: no usable video in split {split!r}: {split_skipped}")
        features[split] = usable
    train, test = features[train_split], features[test_split]
    shared = {v.video_id for v in train} & {v.video_id for v in test}
    if shared and train_split != test_split:
        raise ValueError(f"benchmark {spec.name!r}: splits {train_split!r} and {test_split!r} share "
                         f"{len(shared)} video(s) (e.g. {sorted(shared)[:3]}); a linear probe needs disjoint splits "
                         f"(the dataset has no official split?)")

    same_size = same_size_fractions(fractions, len(train))
    for line in same_size:
        warnings.warn(f"benchmark {spec.name!r}: {line}", stacklevel=2)
    draws = [(fraction, seed) for fraction in fractions
             for seed in (seeds if subset_size(fraction, len(train)) < len(train) else seeds[:1])]
    bar = progress_bar(total=len(draws), desc="linear probes", unit="probe")
    results, records = {}, []
    for fraction in fractions:
        runs = []
        for seed in (seed for f, seed in draws if f == fraction):
            bar.update(1)
            chosen = [train[i] for i in choose_videos(len(train), fraction, seed)]
            X, y = _stack(chosen)
            if spec.task == "phase":
                probe = fit_phase_probe(X, y.astype(np.int64), C, max_iter, seed)
                scores = _evaluate_phase(probe, test, len(spec.classes))
            else:
                probes = fit_instrument_probes(X, y, C, max_iter, seed)
                scores = _evaluate_instruments(probes, test, spec.classes)
            runs.append({"seed": seed, "train_videos": [v.video_id for v in chosen], "train_frames": int(len(X)),
                         "metrics": scalar_metrics(scores)})
        metrics = _mean_over_seeds([run["metrics"] for run in runs])
        metrics.update({"fraction": fraction, "train_videos": len(runs[0]["train_videos"]),
                        "train_pool": len(train), "num_seeds": len(runs), "num_skipped": len(skipped)})
        label = fraction_label(fraction)
        extra = {"train_split": train_split, "test_split": test_split, "sampling": sampling,
                 "fps": fps if sampling == "fps" else None, "fraction": fraction, "load_notes": notes,
                 "unlabelled": list(spec.unlabelled),
                 "classifier": f"StandardScaler + LogisticRegression(C={C}, max_iter={max_iter})",
                 "per_seed": runs, "train_pool": len(train), "model": encoder.describe()}
        record = save_record(results_file, encoder, spec.name, f"linear-probe-{label}", metrics, None, skipped, extra)
        results[label] = {"metrics": metrics, "per_seed": runs}
        if record is not None:
            records.append(record)
    bar.close()
    return {"benchmark": spec.name, "protocol": "linear-probe", "model_id": encoder.model_id, "results": results,
            "skipped": skipped, "records": records, "warnings": same_size}


def _mean_over_seeds(runs: list[dict]) -> dict:
    """Mean of every metric over seeds, plus `<metric>_seed_std` for the headline ones."""
    keys = [k for k in runs[0] if all(k in run for run in runs)]
    mean = {k: float(np.mean([run[k] for run in runs])) for k in keys}
    for k in ("accuracy", "f1", "mAP", "FPR"):
        if k in mean:
            mean[f"{k}_seed_std"] = float(np.std([run[k] for run in runs]))
    for k in ("num_videos", "num_frames", "num_classes"):
        if k in mean:
            mean[k] = int(mean[k])
    return mean


__all__ = [
    "DEFAULT_FRACTIONS",
    "DEFAULT_SEEDS",
    "choose_videos",
    "fit_instrument_probes",
    "fit_phase_probe",
    "fraction_label",
    "linear_probe",
    "same_size_fractions",
    "subset_size",
]
