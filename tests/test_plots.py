"""Phase timelines and confusion matrices: valid PNG files of a sensible size, ignored frames, long class names, and
clear errors for bad inputs."""

import doctest
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluate_suite import plots
from evaluate_suite.plots import (
    confusion_counts,
    normalise_counts,
    plot_confusion_matrix,
    plot_phase_timeline,
    wrap_label,
)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PHASES = ["Incision", "Viscoelastic agent injection into the anterior chamber", "Capsulorhexis", "Hydrodissection",
          "Phacoemulsification", "Irrigation and aspiration", "Capsule polishing", "Lens implant setting-up",
          "Viscoelastic suction", "Tonifying and antibiotics"]


def png_size(path) -> tuple[int, int]:
    """Width and height of a PNG file (after checking its signature and that its first chunk is IHDR)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def video(seed=0, classes=len(PHASES)):
    """Reference labels in runs (unlabelled head and tail), predictions with 25% noise, a cleaner smoothed copy."""
    rng = np.random.default_rng(seed)
    reference = np.repeat(np.arange(classes), rng.integers(5, 30, classes))
    reference[:7] = reference[-4:] = -1
    prediction = np.where(reference == -1, 0, reference)
    noisy = rng.random(len(reference)) < 0.25
    prediction[noisy] = rng.integers(0, classes, noisy.sum())
    smoothed = np.where(rng.random(len(reference)) < 0.05, 0, np.where(reference == -1, 0, reference))
    return prediction, reference, smoothed


def test_doctests():
    assert doctest.testmod(plots).failed == 0


def test_phase_timeline_png(tmp_path):
    prediction, reference, smoothed = video()
    path = plot_phase_timeline(prediction, reference, PHASES, tmp_path / "sub" / "timeline.png", title="video 269",
                               fps=1.0, smoothed=smoothed)
    assert path == tmp_path / "sub" / "timeline.png" and path.stat().st_size > 15_000
    width, height = png_size(path)
    assert 1000 < width < 2000 and 250 < height < 900  # wide strip with a legend under it

    plain = plot_phase_timeline(list(prediction), list(reference), PHASES, tmp_path / "plain.png", fps=25.0)
    assert png_size(plain)[1] < height  # two rows instead of three


def test_phase_timeline_all_ignored_and_one_frame(tmp_path):
    assert png_size(plot_phase_timeline([0, 1], [-1, -1], ["a", "b"], tmp_path / "ignored.png"))
    assert png_size(plot_phase_timeline([1], [1], ["a", "b"], tmp_path / "one.png", ignore_index=-100))


def test_phase_timeline_many_classes(tmp_path):
    names = [f"phase {i} with a rather long descriptive name" for i in range(25)]
    prediction, reference, _ = video(1, classes=25)
    assert png_size(plot_phase_timeline(prediction, reference, names, tmp_path / "many.png"))[0] > 1000


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(predictions=[], references=[]), "empty video"),
    (dict(predictions=[0, 1], references=[0]), "prediction has 2 frames, references 1"),
    (dict(predictions=[0, 3], references=[0, 1]), r"outside \[0, 3\)"),
    (dict(predictions=[0, 1], references=[0, 1], smoothed=[0]), "smoothed has 1 frames"),
    (dict(predictions=[[0, 1]], references=[[0, 1]]), "1-d"),
    (dict(predictions=[0.5, 1], references=[0, 1]), "integer class indices"),
    (dict(predictions=[0, 1], references=[0, 1], fps=0), "fps must be positive"),
    (dict(predictions=[0], references=[0], class_names=[]), "at least one class name"),
])
def test_phase_timeline_errors(tmp_path, kwargs, message):
    kwargs = {"class_names": ["a", "b", "c"], "path": tmp_path / "x.png", **kwargs}
    with pytest.raises(ValueError, match=message):
        plot_phase_timeline(**kwargs)
    assert not (tmp_path / "x.png").exists()


def test_confusion_counts_and_normalisation():
    counts = confusion_counts([0, 1, 1, 0, 2, 2], [0, 1, 0, -1, 2, 1], 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert normalise_counts(counts, "true").sum(axis=1).tolist() == [1, 1, 1]
    assert np.allclose(normalise_counts(counts, "pred").sum(axis=0), [1, 1, 1])
    assert normalise_counts(counts, "all").sum() == pytest.approx(1)
    assert normalise_counts(np.zeros((2, 2), int), "true").tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="ignore_index on scored frames"):
        confusion_counts([-1], [0], 2)


@pytest.mark.parametrize("normalize", ["true", "pred", "all", None])
def test_confusion_matrix_png(tmp_path, normalize):
    prediction, reference, _ = video()
    path = plot_confusion_matrix(prediction, reference, PHASES, tmp_path / f"confusion_{normalize}.png",
                                 normalize=normalize)
    width, height = png_size(path)
    assert path.stat().st_size > 30_000 and 700 < width < 2500 and 700 < height < 2500


def test_confusion_matrix_many_classes(tmp_path):
    names = [f"instrument {i}" for i in range(40)]
    rng = np.random.default_rng(0)
    path = plot_confusion_matrix(rng.integers(0, 40, 500), rng.integers(0, 40, 500), names, tmp_path / "40.png")
    assert png_size(path)[0] > 1500


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(predictions=[], references=[]), "no scored frame"),
    (dict(predictions=[0, 1], references=[-1, -1]), "no scored frame"),
    (dict(predictions=[0, 1], references=[0]), "predictions has 2 frames, references 1"),
    (dict(predictions=[0, 1], references=[0, 5]), r"references has class indices outside \[0, 3\)"),
    (dict(predictions=[0], references=[0], normalize="rows"), "normalize must be one of"),
])
def test_confusion_matrix_errors(tmp_path, kwargs, message):
    kwargs = {"class_names": ["a", "b", "c"], "path": tmp_path / "x.png", **kwargs}
    with pytest.raises(ValueError, match=message):
        plot_confusion_matrix(**kwargs)


def test_wrap_label():
    assert wrap_label("Lens implant setting-up", 20) == "Lens implant\nsetting-up"
    assert wrap_label("short") == "short"
    assert wrap_label("a " * 60, 10, max_lines=2).count("\n") == 1


def test_no_pyplot_and_no_backend_switch():
    code = ("import matplotlib; matplotlib.use('svg'); from evaluate_suite.plots import plot_confusion_matrix; "
            "import sys, tempfile, os; p = plot_confusion_matrix([0], [0], ['a'], os.path.join(tempfile.mkdtemp(), "
            "'c.png')); print('matplotlib.pyplot' in sys.modules, matplotlib.get_backend(), p.exists())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert out == ["False", "svg", "True"]
