"""Figures of the phase-recognition results: a per-video phase timeline and a confusion matrix (PNG files).

matplotlib is imported on first use and only through its object-oriented API with the Agg canvas: no pyplot, no
global backend switch, no display needed, and an interactive session's backend is left alone.

```python
>>> plot_phase_timeline([0, 0, 1, 1, 2], [0, 1, 1, 1, 2], ["Incision", "Capsulorhexis", "Phaco"],
...                     "plots/video_01.png", fps=1.0)                           # doctest: +SKIP
PosixPath('plots/video_01.png')
>>> plot_confusion_matrix([0, 0, 1, 1, 2], [0, 1, 1, 1, 2], ["Incision", "Capsulorhexis", "Phaco"],
...                       "plots/confusion.png")                                 # doctest: +SKIP
PosixPath('plots/confusion.png')
```
"""

import textwrap
from pathlib import Path

import numpy as np


IGNORE_INDEX = -1
IGNORED_COLOUR = "#d9d9d9"
LABEL_WIDTH = 24  # characters per line of a wrapped class name
NORMALIZE = ("true", "pred", "all", None)
_NORMALISED = {"true": ", rows sum to 100%", "pred": ", columns sum to 100%", "all": ", all cells sum to 100%",
               None: ""}


def _figure(width: float, height: float):
    """A matplotlib `Figure` with constrained layout on an Agg canvas (no pyplot: nothing global is touched)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("evaluate_suite.plots needs matplotlib: pip install matplotlib") from error

    figure = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight", facecolor="white")
    return path


def class_colours(num_classes: int) -> list:
    """One distinct RGBA colour per class: `tab10` up to 10 classes, `tab20` up to 20, else evenly spaced over
    `turbo`.

    >>> len(class_colours(3)), len(class_colours(25))                            # doctest: +SKIP
    (3, 25)
    """
    from matplotlib import colormaps

    if num_classes <= 10:
        return [colormaps["tab10"](i) for i in range(num_classes)]
    if num_classes <= 20:
        return [colormaps["tab20"](i) for i in range(num_classes)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, num_classes)]


def wrap_label(name: str, width: int = LABEL_WIDTH, max_lines: int = 2) -> str:
    """A class name wrapped to `width` characters a line, cut with `…` past `max_lines` lines.

    >>> wrap_label("Viscoelastic agent injection into the anterior chamber", 20)
    'Viscoelastic agent\\ninjection into the…'
    """
    lines = textwrap.wrap(str(name), width, break_on_hyphens=False) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 1].rstrip() + "…"
    return "\n".join(lines)


def _labels(values, name: str, num_classes: int, ignore_index: int) -> np.ndarray:
    """`values` as a 1-d int array, checked against the classes."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-d sequence of class indices, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError(f"{name} must hold integer class indices")
    array = array.astype(np.int64)
    bad = (array != ignore_index) & ((array < 0) | (array >= num_classes))
    if bad.any():
        raise ValueError(f"{name} has class indices outside [0, {num_classes}): "
                         f"{sorted(set(array[bad].tolist()))[:10]} (ignore_index is {ignore_index})")
    return array


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """`(start, length, label)` of each run of equal labels.

    >>> _runs(np.array([2, 2, 0, -1, -1]))
    [(0, 2, 2), (2, 1, 0), (3, 2, -1)]
    """
    if labels.size == 0:
        return []
    starts = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], starts])
    ends = np.concatenate([starts[1:], [labels.size]])
    return [(int(s), int(e - s), int(labels[s])) for s, e in zip(starts, ends)]


def _accuracy(predicted: np.ndarray, reference: np.ndarray, ignore_index: int) -> float | None:
    scored = reference != ignore_index
    return float((predicted[scored] == reference[scored]).mean()) if scored.any() else None


def plot_phase_timeline(predictions, references, class_names, path, title=None, fps: float = 1.0,
                        ignore_index: int = IGNORE_INDEX, smoothed=None) -> Path:
    """Save a phase timeline of one video as a PNG and return its path.

    One horizontal colour bar per row, top to bottom: ground truth, prediction and (if given) smoothed prediction;
    frame i spans `[i / fps, (i + 1) / fps)` seconds. Unlabelled frames (reference `ignore_index`) are grey in the
    ground-truth row; the prediction rows show what was predicted there, but their frame accuracy (in the row label)
    counts the labelled frames only. The legend lists the class names (long ones wrapped) with their colours.

    Raises `ValueError` for empty inputs, sequences of different lengths, class indices outside the classes, or a
    non-positive `fps`.

    >>> plot_phase_timeline([0, 1, 1], [0, 0, 1], ["Incision", "Phaco"], "t.png", title="video 1")  # doctest: +SKIP
    PosixPath('t.png')
    """
    class_names = [str(c) for c in class_names]
    num_classes = len(class_names)
    if num_classes == 0:
        raise ValueError("plot_phase_timeline needs at least one class name")
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    reference = _labels(references, "references", num_classes, ignore_index)
    rows = [("Ground truth", reference, None)]
    for name, values in (("Prediction", predictions), ("Smoothed", smoothed)):
        if values is None:
            continue
        predicted = _labels(values, name.lower(), num_classes, ignore_index)
        if len(predicted) != len(reference):
            raise ValueError(f"{name.lower()} has {len(predicted)} frames, references {len(reference)}")
        rows.append((name, predicted, _accuracy(predicted, reference, ignore_index)))
    if reference.size == 0:
        raise ValueError("plot_phase_timeline got an empty video (no frame)")

    ignored = reference == ignore_index
    legend_entries = num_classes + int(ignored.any())
    legend_columns = min(legend_entries, 4)
    legend_rows = -(-legend_entries // legend_columns)
    figure = _figure(12, 0.55 * len(rows) + 1.2 + 0.32 * legend_rows)
    colours = class_colours(num_classes)
    axes = figure.add_subplot()
    for y, (_, labels, _) in enumerate(rows):
        for start, length, label in _runs(labels):
            colour = IGNORED_COLOUR if label == ignore_index else colours[label]
            axes.broken_barh([(start / fps, length / fps)], (y - 0.4, 0.8), facecolors=[colour], linewidth=0)
    axes.set_yticks(range(len(rows)))
    axes.set_yticklabels([name if acc is None else f"{name}\n(acc {100 * acc:.1f}%)" for name, _, acc in rows])
    axes.invert_yaxis()
    axes.set_xlim(0, len(reference) / fps)
    axes.set_xlabel("time (s)")
    axes.spines[["top", "right", "left"]].set_visible(False)
    axes.tick_params(axis="y", length=0)
    if title:
        axes.set_title(str(title), loc="left")

    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colours[i], label=wrap_label(name)) for i, name in enumerate(class_names)]
    if ignored.any():
        handles.append(Patch(facecolor=IGNORED_COLOUR, label="unlabelled (ignored)"))
    figure.legend(handles=handles, loc="outside lower center", ncol=legend_columns, frameon=False,
                  fontsize="small", handlelength=1.2)
    return _save(figure, path)


def confusion_counts(predictions, references, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """The `(num_classes, num_classes)` count matrix, rows true classes and columns predicted ones; frames whose
    reference is `ignore_index` are left out.

    >>> confusion_counts([0, 1, 1, 0], [0, 1, 0, -1], 2).tolist()
    [[1, 1], [0, 1]]
    """
    reference = _labels(references, "references", num_classes, ignore_index)
    predicted = _labels(predictions, "predictions", num_classes, ignore_index)
    if len(predicted) != len(reference):
        raise ValueError(f"predictions has {len(predicted)} frames, references {len(reference)}")
    scored = reference != ignore_index
    if (predicted[scored] == ignore_index).any():
        raise ValueError("predictions hold ignore_index on scored frames")
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (reference[scored], predicted[scored]), 1)
    return counts


def normalise_counts(counts: np.ndarray, normalize: str | None = "true") -> np.ndarray:
    """Counts as fractions of each true class (`"true"`, rows), predicted class (`"pred"`, columns) or of all frames
    (`"all"`); `None` keeps counts. Empty rows/columns give 0.

    >>> normalise_counts(np.array([[1, 1], [0, 0]]), "true").tolist()
    [[0.5, 0.5], [0.0, 0.0]]
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    counts = counts.astype(np.float64)
    if normalize is None:
        return counts
    if normalize == "true":
        total = counts.sum(axis=1, keepdims=True)
    elif normalize == "pred":
        total = counts.sum(axis=0, keepdims=True)
    else:
        total = np.array(counts.sum())
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def plot_confusion_matrix(predictions, references, class_names, path, normalize: str | None = "true",
                          ignore_index: int = IGNORE_INDEX, title=None) -> Path:
    """Save the confusion matrix of frame predictions as a PNG and return its path.

    Rows are true classes, columns predicted ones; colours show the matrix normalised by `normalize` (`"true"`: each
    row sums to 100%, `"pred"`: each column, `"all"`: the whole matrix, None: raw counts). Each cell reads
    `percent` and `(count)` (counts only with `normalize=None`; up to 12 classes, then percent only; empty cells
    and matrices past 30 classes have no text). Frames with reference `ignore_index` are left out; long class
    names are wrapped.

    Raises `ValueError` for empty inputs (or no scored frame), different lengths, indices outside the classes or an
    unknown `normalize`.

    >>> plot_confusion_matrix([0, 1, 1], [0, 0, 1], ["Incision", "Phaco"], "c.png")       # doctest: +SKIP
    PosixPath('c.png')
    """
    class_names = [str(c) for c in class_names]
    num_classes = len(class_names)
    if num_classes == 0:
        raise ValueError("plot_confusion_matrix needs at least one class name")
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    counts = confusion_counts(predictions, references, num_classes, ignore_index)
    total = int(counts.sum())
    if total == 0:
        raise ValueError("plot_confusion_matrix got no scored frame (empty inputs, or every reference ignored)")
    shown = normalise_counts(counts, normalize)

    side = min(max(5.0, 0.55 * num_classes + 3.0), 24.0)
    figure = _figure(side + 1.5, side)
    axes = figure.add_subplot()
    image = axes.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, counts.max()))
    colourbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colourbar.set_label({"true": "fraction of the true class", "pred": "fraction of the predicted class",
                         "all": "fraction of all frames", None: "frames"}[normalize])
    labels = [wrap_label(name, 22) for name in class_names]
    axes.set_xticks(range(num_classes))
    axes.set_yticks(range(num_classes))
    axes.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor", fontsize="small")
    axes.set_yticklabels(labels, fontsize="small")
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title or f"Confusion matrix ({total} frames{_NORMALISED[normalize]})", loc="left")
    if num_classes <= 30:
        _annotate(axes, counts, shown, normalize, fontsize=9 if num_classes <= 12 else 6)
    return _save(figure, path)


def _annotate(axes, counts: np.ndarray, shown: np.ndarray, normalize, fontsize: float) -> None:
    """Write each non-empty cell's percentage and count; white text on dark cells."""
    top = shown.max() or 1
    with_counts = counts.shape[0] <= 12
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts[i, j] == 0:
                continue
            if normalize is None:
                text = str(counts[i, j])
            else:
                text = f"{100 * shown[i, j]:.0f}%" + (f"\n({counts[i, j]})" if with_counts else "")
            colour = "white" if shown[i, j] > 0.55 * top else "black"
            axes.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=colour)


__all__ = [
    "class_colours",
    "confusion_counts",
    "normalise_counts",
    "plot_confusion_matrix",
    "plot_phase_timeline",
    "wrap_label",
]
