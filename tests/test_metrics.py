"""Tests of the local `evaluate` metric modules in `evaluate_suite/metrics`.

Each module is checked against values worked out by hand (the arithmetic is in the comments), against scikit-learn
where it has the metric, for incremental `add_batch` + `compute` == one-shot `compute`, and for clear `ValueError`s on
bad inputs. Everything runs offline: the Hub is never contacted (sockets are blocked during each test).
"""

import configparser
import doctest
import fnmatch
import math
import shutil
import socket
import statistics
from pathlib import Path

import numpy as np
import pytest

import evaluate
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    multilabel_confusion_matrix,
    top_k_accuracy_score,
)

from evaluate_suite.metrics import METRIC_NAMES, METRICS_DIR, load_metric, metric_path
from remote_code import REPO_ROOT, run_without_project


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Offline flags set, and any attempt to open a network connection fails the test."""
    for name in ("HF_EVALUATE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)


def fresh(name, tmp_path):
    """A new metric instance writing its arrow cache under tmp_path (evaluate's default on-disk path)."""
    return load_metric(name, cache_dir=str(tmp_path / "evaluate_cache"))


def in_memory(name):
    """A new in-memory metric instance, for the error cases: when `_compute` raises, evaluate 0.4.6 keeps the lock on
    its on-disk cache file, and the next `compute` of the same instance waits 1 s for it before taking a new file."""
    return load_metric(name, keep_in_memory=True)


def assert_results_equal(got, expected):
    """Same keys and values; floats (also nested in dicts) compared to 1e-12, NaN equal to NaN."""
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_results_equal(got[key], value)
        elif isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key]), key
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=1e-12), key
        else:
            assert got[key] == value, key


def feed_in_batches(metric, sizes, **columns):
    """`add_batch` the columns in consecutive slices of the given sizes (which must cover them)."""
    total = len(next(iter(columns.values())))
    assert sum(sizes) == total
    start = 0
    for size in sizes:
        metric.add_batch(**{key: values[start : start + size] for key, values in columns.items()})
        start += size


# ----------------------------------------------------------------------------------------------------------------------
# Loading and packaging
# ----------------------------------------------------------------------------------------------------------------------


def test_load_metric_and_folders():
    for name in METRIC_NAMES:
        folder = Path(metric_path(name))
        assert folder == METRICS_DIR / name
        assert (folder / f"{name}.py").is_file() and (folder / "README.md").is_file()
        metric = load_metric(name, keep_in_memory=True)
        assert isinstance(metric, evaluate.Metric)
        assert metric.name == name
        assert "2411.15421" in metric.citation
        assert "Example:" in metric.inputs_description
    # The folder path loads with plain evaluate.load as well.
    assert isinstance(evaluate.load(str(METRICS_DIR / "retrieval"), keep_in_memory=True), evaluate.Metric)
    with pytest.raises(ValueError, match="Unknown metric 'accuracy'"):
        load_metric("accuracy")


def test_package_data_ships_modules_and_cards():
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["evaluate_suite"].replace("\n", ",").split(",")]
    package_dir = REPO_ROOT / "evaluate_suite"
    for name in METRIC_NAMES:
        for file_name in (f"{name}.py", "README.md"):
            relative = (METRICS_DIR / name / file_name).relative_to(package_dir).as_posix()
            assert any(fnmatch.fnmatch(relative, p) for p in patterns), (relative, patterns)


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_docstring_examples_run(name, monkeypatch):
    """The `Example:` in each module's inputs_description gives the numbers it shows."""
    monkeypatch.chdir(REPO_ROOT)  # the examples load "evaluate_suite/metrics/<name>"
    metric = load_metric(name, keep_in_memory=True)
    test = doctest.DocTestParser().get_doctest(metric.inputs_description, {"evaluate": evaluate}, name, None, 0)
    assert test.examples
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_modules_are_self_contained_offline(tmp_path):
    """A copy of each module folder loads in a fresh offline interpreter that cannot import this project."""
    for name in METRIC_NAMES:
        shutil.copytree(METRICS_DIR / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    result = run_without_project(
        """
        import evaluate
        phase = evaluate.load("video_phase").compute(predictions=[0, 1], references=[0, 0], video_ids=["a", "a"])
        tools = evaluate.load("multilabel_instruments").compute(predictions=[[0.9], [0.1]], references=[[1], [0]])
        ranks = evaluate.load("retrieval").compute(predictions=[[0.2, 0.1], [0.3, 0.4]], references=[0, 1])
        print(phase["accuracy"], phase["f1"], tools["mAP"], tools["FPR"], ranks["R@1"])
        """,
        cwd=tmp_path,
        env_extra={"HF_EVALUATE_OFFLINE": "1", "HF_HOME": tmp_path / "hf_home"},
    )
    # accuracy 1/2; present classes {0, 1}: F1_0 = 2*1/(2*1+0+1) = 2/3, F1_1 = 0 -> macro 1/3.
    assert result.stdout.split() == [str(0.5), str(1 / 3), "1.0", "0.0", "1.0"]


# ----------------------------------------------------------------------------------------------------------------------
# video_phase
# ----------------------------------------------------------------------------------------------------------------------

# Frames of three videos, interleaved (a video's frames need not be contiguous).
#   v1 references [0, 0, 1, 1, 2, -1], predictions [0, 1, 1, 1, 2, 0]
#   v2 references [3, 3, 3, 0],        predictions [3, 3, 4, 0]
#   v3 references [-1, -1],            predictions [1, 2]            (every frame ignored)
PHASE_VIDEOS = ["v1", "v1", "v1", "v2", "v2", "v3", "v1", "v1", "v1", "v2", "v2", "v3"]
PHASE_REFERENCES = [0, 0, 1, 3, 3, -1, 1, 2, -1, 3, 0, -1]
PHASE_PREDICTIONS = [0, 1, 1, 3, 3, 1, 1, 2, 0, 4, 0, 2]


def test_video_phase_by_hand(tmp_path):
    results = fresh("video_phase", tmp_path).compute(
        predictions=PHASE_PREDICTIONS, references=PHASE_REFERENCES, video_ids=PHASE_VIDEOS
    )
    # v1: the -1 frame is dropped, 5 frames left; correct: frames 1, 3, 4, 5 -> accuracy 4/5.
    #     present classes {0, 1, 2}:
    #       class 0: TP 1, FP 0, FN 1 -> 2*1/(2+0+1) = 2/3
    #       class 1: TP 2, FP 1, FN 0 -> 4/(4+1+0)   = 4/5
    #       class 2: TP 1, FP 0, FN 0 -> 1
    #     macro-F1 = (2/3 + 4/5 + 1)/3 = (10 + 12 + 15)/45 = 37/45
    # v2: 4 frames, 3 correct -> accuracy 3/4; present classes {0, 3, 4} (4 is only predicted):
    #       class 0: 1;  class 3: TP 2, FP 0, FN 1 -> 4/5;  class 4: TP 0, FP 1 -> 0
    #     macro-F1 = (1 + 4/5 + 0)/3 = 3/5 = 27/45
    # v3: all frames ignored -> skipped, not scored.
    # Means: accuracy (4/5 + 3/4)/2 = 0.775; F1 (37/45 + 27/45)/2 = 32/45.
    # Population std of two values = half their distance: |4/5 - 3/4|/2 = 0.025; |37/45 - 27/45|/2 = 1/9.
    expected = {
        "accuracy": 0.775,
        "f1": 32 / 45,
        "accuracy_std": 0.025,
        "f1_std": 1 / 9,
        "num_videos": 2,
        "skipped_videos": ["v3"],
        "per_video": {
            "v1": {"accuracy": 4 / 5, "f1": 37 / 45, "frames": 5},
            "v2": {"accuracy": 3 / 4, "f1": 3 / 5, "frames": 4},
        },
    }
    assert_results_equal(results, expected)
    assert list(results["per_video"]) == ["v1", "v2"]  # order of first appearance


def test_video_phase_all_labels_by_hand(tmp_path):
    metric = fresh("video_phase", tmp_path)
    kwargs = dict(predictions=PHASE_PREDICTIONS, references=PHASE_REFERENCES, video_ids=PHASE_VIDEOS)
    # f1_labels="all" over labels 0..4; a class absent from a video's references and predictions scores zero_division.
    #   v1: classes 0, 1, 2 as above (2/3, 4/5, 1) = 37/15 in total; classes 3 and 4 absent.
    #   v2: classes 0, 3, 4 as above (1, 4/5, 0) = 9/5 in total; classes 1 and 2 absent.
    # zero_division=0: v1 (37/15 + 0 + 0)/5 = 37/75, v2 (9/5 + 0 + 0)/5 = 27/75 -> mean 32/75
    results = metric.compute(**kwargs, labels=[0, 1, 2, 3, 4], f1_labels="all")
    assert results["per_video"]["v1"]["f1"] == pytest.approx(37 / 75)
    assert results["per_video"]["v2"]["f1"] == pytest.approx(27 / 75)
    assert results["f1"] == pytest.approx(32 / 75)
    assert results["accuracy"] == pytest.approx(0.775)  # accuracy does not depend on the F1 class set
    # zero_division=1: v1 (37/15 + 2)/5 = 67/75, v2 (9/5 + 2)/5 = 57/75 -> mean 62/75.
    # (Class 4 in v2 is predicted but never true: F1 0, not zero_division.)
    results = metric.compute(**kwargs, labels=[0, 1, 2, 3, 4], f1_labels="all", zero_division=1.0)
    assert results["per_video"]["v1"]["f1"] == pytest.approx(67 / 75)
    assert results["per_video"]["v2"]["f1"] == pytest.approx(57 / 75)
    assert results["f1"] == pytest.approx(62 / 75)
    # labels with the default f1_labels="present" only validate: same numbers as without labels.
    results = metric.compute(**kwargs, labels=[0, 1, 2, 3, 4])
    assert results["f1"] == pytest.approx(32 / 45)


def test_video_phase_ignore_label_options(tmp_path):
    metric = fresh("video_phase", tmp_path)
    # ignore_label=255: v1 refs [0, 255, 1], preds [0, 0, 0] -> frames 1 and 3 scored: accuracy 1/2;
    # classes {0, 1}: F1_0 = 2/(2+1+0) = 2/3, F1_1 = 0/(0+0+1) = 0 -> macro 1/3.
    results = metric.compute(predictions=[0, 0, 0], references=[0, 255, 1], video_ids=["v1"] * 3, ignore_label=255)
    assert results["accuracy"] == pytest.approx(1 / 2)
    assert results["f1"] == pytest.approx(1 / 3)
    assert results["per_video"]["v1"]["frames"] == 2
    # ignore_label=None keeps every frame: 3 frames, 1 correct.
    results = metric.compute(predictions=[0, 0, 0], references=[0, 2, 1], video_ids=["v1"] * 3, ignore_label=None)
    assert results["accuracy"] == pytest.approx(1 / 3) and results["per_video"]["v1"]["frames"] == 3


def random_phase_data(seed=0, num_videos=7, num_classes=6):
    rng = np.random.default_rng(seed)
    references, predictions, videos = [], [], []
    for v in range(num_videos):
        n = int(rng.integers(5, 40))
        ref = rng.integers(0, num_classes, n)
        # ~60% correct predictions, the rest random; ~10% of frames ignored.
        pred = np.where(rng.random(n) < 0.6, ref, rng.integers(0, num_classes, n))
        ref = np.where(rng.random(n) < 0.1, -1, ref)
        references += ref.tolist()
        predictions += pred.tolist()
        videos += [f"video_{v:02d}"] * n
    # Shuffle frames across videos: grouping must not rely on order.
    order = rng.permutation(len(videos))
    return [predictions[i] for i in order], [references[i] for i in order], [videos[i] for i in order]


def sklearn_per_video(predictions, references, videos, **f1_kwargs):
    predictions, references, videos = map(np.asarray, (predictions, references, videos))
    accuracies, f1s = [], []
    for video in dict.fromkeys(videos.tolist()):
        keep = (videos == video) & (references != -1)
        accuracies.append(accuracy_score(references[keep], predictions[keep]))
        f1s.append(f1_score(references[keep], predictions[keep], average="macro", **f1_kwargs))
    return accuracies, f1s


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_video_phase_matches_sklearn(seed, tmp_path):
    predictions, references, videos = random_phase_data(seed)
    metric = fresh("video_phase", tmp_path)

    results = metric.compute(predictions=predictions, references=references, video_ids=videos)
    accuracies, f1s = sklearn_per_video(predictions, references, videos)
    assert results["num_videos"] == len(accuracies) and results["skipped_videos"] == []
    assert results["accuracy"] == pytest.approx(np.mean(accuracies), abs=1e-12)
    assert results["f1"] == pytest.approx(np.mean(f1s), abs=1e-12)
    assert results["accuracy_std"] == pytest.approx(np.std(accuracies), abs=1e-12)
    assert results["f1_std"] == pytest.approx(np.std(f1s), abs=1e-12)
    assert [v["f1"] for v in results["per_video"].values()] == pytest.approx(f1s, abs=1e-12)

    labels = list(range(8))  # two classes (6, 7) never occur: they exercise zero_division
    for zero_division in (0.0, 1.0):
        results = metric.compute(
            predictions=predictions, references=references, video_ids=videos,
            labels=labels, f1_labels="all", zero_division=zero_division,
        )
        _, f1s = sklearn_per_video(predictions, references, videos, labels=labels, zero_division=zero_division)
        assert results["f1"] == pytest.approx(np.mean(f1s), abs=1e-12)


def test_video_phase_add_batch_equals_compute(tmp_path):
    predictions, references, videos = random_phase_data(seed=3)
    kwargs = dict(labels=list(range(6)), f1_labels="all")
    one_shot = fresh("video_phase", tmp_path / "a").compute(
        predictions=predictions, references=references, video_ids=videos, **kwargs
    )
    metric = fresh("video_phase", tmp_path / "b")
    n = len(videos)
    feed_in_batches(metric, [7, 1, n - 20, 12], predictions=predictions, references=references, video_ids=videos)
    assert_results_equal(metric.compute(**kwargs), one_shot)


def test_video_phase_validation(tmp_path):
    metric = in_memory("video_phase")
    with pytest.raises(ValueError, match="Mismatch in the number"):  # evaluate's own length check
        metric.compute(predictions=[0, 1], references=[0, 1, 1], video_ids=["a", "a", "a"])
    with pytest.raises(ValueError, match="negative class ids \\[-2\\]"):
        metric.compute(predictions=[0, 1], references=[0, -2], video_ids=["a", "a"])
    with pytest.raises(ValueError, match="predictions hold negative"):
        metric.compute(predictions=[0, -1], references=[0, 1], video_ids=["a", "a"])
    with pytest.raises(ValueError, match="references hold class ids \\[5\\] not in labels"):
        metric.compute(predictions=[0, 1], references=[0, 5], video_ids=["a", "a"], labels=[0, 1, 2])
    with pytest.raises(ValueError, match="predictions hold class ids \\[7\\] not in labels"):
        metric.compute(predictions=[0, 7], references=[0, 1], video_ids=["a", "a"], labels=[0, 1, 2])
    with pytest.raises(ValueError, match="f1_labels='all' needs"):
        metric.compute(predictions=[0], references=[0], video_ids=["a"], f1_labels="all")
    with pytest.raises(ValueError, match="f1_labels must be"):
        metric.compute(predictions=[0], references=[0], video_ids=["a"], f1_labels="weighted")
    with pytest.raises(ValueError, match="zero_division"):
        metric.compute(predictions=[0], references=[0], video_ids=["a"], zero_division=0.5)
    with pytest.raises(ValueError, match="No frame left to score"):
        metric.compute(predictions=[0, 1], references=[-1, -1], video_ids=["a", "b"])
    # The instance still works after the errors, on fresh data only.
    assert metric.compute(predictions=[1, 1], references=[1, 0], video_ids=["a", "b"])["accuracy"] == 0.5


# ----------------------------------------------------------------------------------------------------------------------
# multilabel_instruments
# ----------------------------------------------------------------------------------------------------------------------

# 4 frames x 4 classes. Class "iris_hook" has no positive frame, class "speculum" no negative frame.
TOOL_NAMES = ["forceps", "cannula", "iris_hook", "speculum"]
TOOL_SCORES = [
    [0.9, 0.2, 0.5, 0.7],
    [0.8, 0.6, 0.1, 0.9],
    [0.3, 0.6, 0.4, 0.6],
    [0.6, 0.1, 0.7, 0.8],
]
TOOL_REFERENCES = [
    [1, 0, 0, 1],
    [0, 1, 0, 1],
    [1, 0, 0, 1],
    [0, 1, 0, 1],
]


def test_multilabel_by_hand(tmp_path):
    results = fresh("multilabel_instruments", tmp_path).compute(
        predictions=TOOL_SCORES, references=TOOL_REFERENCES, class_names=TOOL_NAMES
    )
    # AP = sum over thresholds (distinct scores, decreasing) of (R_n - R_{n-1}) * P_n.
    # forceps: scores/labels sorted 0.9(1) 0.8(0) 0.6(0) 0.3(1); 2 positives.
    #   0.9: P 1/1, R 1/2 -> +1/2 * 1;  0.8: R unchanged;  0.6: R unchanged;  0.3: P 2/4, R 1 -> +1/2 * 1/2
    #   AP = 1/2 + 1/4 = 3/4
    # cannula: 0.6(1) and 0.6(0) tie, then 0.2(0), 0.1(1); the tie is one threshold.
    #   0.6: P 1/2, R 1/2 -> +1/2 * 1/2;  0.2: R unchanged;  0.1: P 2/4, R 1 -> +1/2 * 1/2
    #   AP = 1/4 + 1/4 = 1/2   (ranking the positive first within the tie would wrongly give 3/4)
    # iris_hook: no positive -> excluded.   speculum: every frame positive -> precision 1 everywhere, AP 1.
    # mAP = (3/4 + 1/2 + 1)/3 = 3/4
    # FPR at threshold 0.5 (present iff score >= 0.5), over cells whose reference is 0:
    #   forceps  negatives frames 2, 4: scores 0.8, 0.6 -> FP 2, TN 0 -> 1
    #   cannula  negatives frames 1, 3: scores 0.2, 0.6 -> FP 1, TN 1 -> 1/2
    #   iris_hook negatives all 4:      0.5 (>= 0.5), 0.1, 0.4, 0.7 -> FP 2, TN 2 -> 1/2
    #   speculum: no negative -> not in FPR_macro
    # FPR (micro) = (2 + 1 + 2) / (2 + 2 + 4) = 5/8;  FPR_macro = (1 + 1/2 + 1/2)/3 = 2/3
    expected = {
        "mAP": 0.75,
        "per_class_AP": {"forceps": 0.75, "cannula": 0.5, "speculum": 1.0},
        "classes_without_positives": ["iris_hook"],
        "FPR": 5 / 8,
        "FPR_macro": 2 / 3,
        "per_class_FPR": {"forceps": 1.0, "cannula": 0.5, "iris_hook": 0.5},
        "classes_without_negatives": ["speculum"],
        "num_frames": 4,
        "num_classes": 4,
    }
    assert_results_equal(results, expected)


def test_multilabel_threshold_and_defaults(tmp_path):
    metric = fresh("multilabel_instruments", tmp_path)
    # threshold 0.55: iris_hook's 0.5 is no longer a FP -> FP 2 + 1 + 1 = 4 of 8 negatives.
    results = metric.compute(predictions=TOOL_SCORES, references=TOOL_REFERENCES, threshold=0.55)
    assert results["FPR"] == pytest.approx(4 / 8)
    # Without class_names, classes are keyed by index.
    assert results["classes_without_positives"] == [2] and sorted(results["per_class_AP"]) == [0, 1, 3]
    # Comparison in float32: float32(0.7) < 0.7 in float64, yet a score written as 0.7 passes threshold=0.7, also
    # when the threshold comes as a numpy float64 (which numpy would otherwise compare in float64).
    for threshold in (0.7, np.float64(0.7)):
        results = metric.compute(predictions=[[0.7], [0.2]], references=[[0], [1]], threshold=threshold)
        assert results["FPR"] == 1.0
    # No positive anywhere: mAP undefined (NaN), never a silent zero; FPR still defined (1 FP of 2 negatives).
    results = metric.compute(predictions=[[0.7], [0.2]], references=[[0], [0]])
    assert math.isnan(results["mAP"]) and results["per_class_AP"] == {} and results["FPR"] == 0.5


def test_multilabel_matches_sklearn(tmp_path):
    rng = np.random.default_rng(0)
    num_frames, num_classes = 300, 7
    references = (rng.random((num_frames, num_classes)) < 0.3).astype(np.int64)
    references[:, 5] = 0  # a class without positives
    # Scores correlated with the labels, rounded to 0.05 so that many ties occur; stored as float32 by the metric.
    scores = np.clip(0.35 * references + rng.random((num_frames, num_classes)) * 0.7, 0, 1)
    scores = (np.round(scores * 20) / 20).astype(np.float32)
    names = [f"tool_{c}" for c in range(num_classes)]

    for threshold in (0.5, 0.3):
        results = fresh("multilabel_instruments", tmp_path / str(threshold)).compute(
            predictions=scores, references=references, class_names=names, threshold=threshold
        )
        expected_ap = {
            names[c]: average_precision_score(references[:, c], scores[:, c])
            for c in range(num_classes) if references[:, c].any()
        }
        assert results["classes_without_positives"] == ["tool_5"]
        assert results["per_class_AP"] == pytest.approx(expected_ap, abs=1e-12)
        assert results["mAP"] == pytest.approx(np.mean(list(expected_ap.values())), abs=1e-12)

        confusion = multilabel_confusion_matrix(references, (scores >= np.float32(threshold)).astype(int))
        tn, fp = confusion[:, 0, 0], confusion[:, 0, 1]  # per class [[TN, FP], [FN, TP]]
        assert results["FPR"] == pytest.approx(fp.sum() / (fp.sum() + tn.sum()), abs=1e-12)
        assert results["FPR_macro"] == pytest.approx(np.mean(fp / (fp + tn)), abs=1e-12)  # every class has negatives


def test_multilabel_add_batch_equals_compute(tmp_path):
    rng = np.random.default_rng(1)
    references = (rng.random((50, 5)) < 0.4).astype(int).tolist()
    scores = rng.random((50, 5)).round(2).tolist()
    one_shot = fresh("multilabel_instruments", tmp_path / "a").compute(
        predictions=scores, references=references, threshold=0.4
    )
    metric = fresh("multilabel_instruments", tmp_path / "b")
    feed_in_batches(metric, [16, 16, 16, 2], predictions=scores, references=references)
    assert_results_equal(metric.compute(threshold=0.4), one_shot)


def test_multilabel_validation(tmp_path):
    metric = in_memory("multilabel_instruments")
    with pytest.raises(ValueError, match="Mismatch in the number"):
        metric.compute(predictions=[[0.1, 0.2]], references=[[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="predictions are ragged"):
        metric.compute(predictions=[[0.1, 0.2], [0.3]], references=[[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="references are ragged"):
        metric.compute(predictions=[[0.1, 0.2], [0.3, 0.4]], references=[[0, 1], [1]])
    with pytest.raises(ValueError, match="2 scores per frame but references have 3"):
        metric.compute(predictions=[[0.1, 0.2]], references=[[0, 1, 1]])
    with pytest.raises(ValueError, match="references must be 0/1"):
        metric.compute(predictions=[[0.1, 0.2]], references=[[0, 2]])
    with pytest.raises(ValueError, match="NaN"):
        metric.compute(predictions=[[0.1, float("nan")]], references=[[0, 1]])
    with pytest.raises(ValueError, match="class_names must hold 2"):
        metric.compute(predictions=[[0.1, 0.2]], references=[[0, 1]], class_names=["a"])
    with pytest.raises(ValueError, match="class_names must hold 2"):
        metric.compute(predictions=[[0.1, 0.2]], references=[[0, 1]], class_names=["a", "a"])
    with pytest.raises(ValueError, match="threshold must be finite"):
        metric.compute(predictions=[[0.1, 0.2]], references=[[0, 1]], threshold=float("inf"))
    assert metric.compute(predictions=[[0.1, 0.2]], references=[[0, 1]])["mAP"] == 1.0


# ----------------------------------------------------------------------------------------------------------------------
# retrieval
# ----------------------------------------------------------------------------------------------------------------------

# 4 queries x 5 candidates.
RETRIEVAL_SIMILARITIES = [
    [0.9, 0.1, 0.2, 0.3, 0.0],  # correct 0: nothing else >= 0.9              -> rank 1
    [0.5, 0.5, 0.5, 0.1, 0.2],  # correct 1: candidates 0 and 2 tie at 0.5    -> rank 3 (pessimistic; optimistic 1)
    [0.1, 0.2, 0.3, 0.4, 0.5],  # correct 0: all 4 others are higher           -> rank 5
    [0.2, 0.8, 0.1, 0.7, 0.3],  # correct 3: only candidate 1 (0.8) is higher  -> rank 2
]
RETRIEVAL_TARGETS = [0, 1, 0, 3]


def test_retrieval_by_hand(tmp_path):
    metric = fresh("retrieval", tmp_path)
    # ranks [1, 3, 5, 2]: R@1 = 1/4, R@5 = 4/4, R@10 = 4/4 (fractions); MedR = (2 + 3)/2 = 2.5; MnR = 11/4 = 2.75
    results = metric.compute(predictions=RETRIEVAL_SIMILARITIES, references=RETRIEVAL_TARGETS)
    assert_results_equal(
        results,
        {"R@1": 0.25, "R@5": 1.0, "R@10": 1.0, "MedR": 2.5, "MnR": 2.75, "num_queries": 4, "num_candidates": 5},
    )
    # ks=(2, 3): rank <= 2 for queries 1 and 4 -> 0.5; rank <= 3 adds query 2 -> 0.75.
    results = metric.compute(predictions=RETRIEVAL_SIMILARITIES, references=RETRIEVAL_TARGETS, ks=(2, 3))
    assert (results["R@2"], results["R@3"]) == (0.5, 0.75) and "R@1" not in results
    # A constant row ranks the correct candidate last: rank 3 of 3, never 1.
    results = metric.compute(predictions=[[0.4, 0.4, 0.4]], references=[1], ks=(1, 3))
    assert (results["R@1"], results["R@3"], results["MedR"]) == (0.0, 1.0, 3.0)
    # -inf is a valid (masked) score: ranks 1 and 2 -> MnR 1.5.
    results = metric.compute(predictions=[[1.0, float("-inf")], [float("-inf"), float("-inf")]], references=[0, 1])
    assert results["MnR"] == 1.5


def brute_force_ranks(similarities, targets):
    ranks = []
    for row, target in zip(similarities, targets):
        ranks.append(1 + sum(1 for j, s in enumerate(row) if j != target and s >= row[target]))
    return ranks


def test_retrieval_matches_reference_implementations(tmp_path):
    rng = np.random.default_rng(0)
    num_queries, num_candidates = 60, 40
    # Continuous scores (no ties): R@K must equal sklearn's top-k accuracy.
    similarities = rng.standard_normal((num_queries, num_candidates)).astype(np.float32)
    targets = rng.integers(0, num_candidates, num_queries)
    similarities[np.arange(num_queries), targets] += 1.5  # make the task non-trivial but imperfect
    results = fresh("retrieval", tmp_path / "a").compute(predictions=similarities, references=targets, ks=(1, 5, 10))
    for k in (1, 5, 10):
        expected = top_k_accuracy_score(targets, similarities, k=k, labels=np.arange(num_candidates))
        assert results[f"R@{k}"] == pytest.approx(expected, abs=1e-9)
    ranks = brute_force_ranks(similarities.tolist(), targets.tolist())
    assert results["MedR"] == statistics.median(ranks)
    assert results["MnR"] == pytest.approx(statistics.mean(ranks), abs=1e-12)

    # Heavily tied scores (3 distinct values): ranks follow the pessimistic rule of the brute-force loop.
    tied = rng.integers(0, 3, (num_queries, num_candidates)).astype(np.float32)
    results = fresh("retrieval", tmp_path / "b").compute(predictions=tied, references=targets, ks=(1, 5, 10))
    ranks = np.array(brute_force_ranks(tied.tolist(), targets.tolist()))
    for k in (1, 5, 10):
        assert results[f"R@{k}"] == pytest.approx(np.mean(ranks <= k), abs=1e-9)
    assert results["MedR"] == np.median(ranks) and results["MnR"] == pytest.approx(ranks.mean(), abs=1e-12)


def test_retrieval_add_batch_equals_compute(tmp_path):
    rng = np.random.default_rng(2)
    similarities = rng.random((30, 12)).round(1).tolist()  # ties included
    targets = rng.integers(0, 12, 30).tolist()
    one_shot = fresh("retrieval", tmp_path / "a").compute(predictions=similarities, references=targets, ks=(1, 3))
    metric = fresh("retrieval", tmp_path / "b")
    feed_in_batches(metric, [10, 1, 19], predictions=similarities, references=targets)
    assert_results_equal(metric.compute(ks=(1, 3)), one_shot)


def test_retrieval_validation(tmp_path):
    metric = in_memory("retrieval")
    with pytest.raises(ValueError, match="Mismatch in the number"):
        metric.compute(predictions=[[0.1, 0.2]], references=[0, 1])
    with pytest.raises(ValueError, match="ragged"):
        metric.compute(predictions=[[0.1, 0.2], [0.3]], references=[0, 0])
    with pytest.raises(ValueError, match="in \\[0, 2\\), got \\[2\\]"):
        metric.compute(predictions=[[0.1, 0.2], [0.3, 0.4]], references=[0, 2])
    with pytest.raises(ValueError, match="in \\[0, 2\\), got \\[-1\\]"):
        metric.compute(predictions=[[0.1, 0.2], [0.3, 0.4]], references=[-1, 1])
    with pytest.raises(ValueError, match="NaN"):
        metric.compute(predictions=[[0.1, float("nan")]], references=[0])
    with pytest.raises(ValueError, match="rows are empty"):
        metric.compute(predictions=[[]], references=[0])
    for bad_ks in ((), (0, 5), (1.5,), (1, 1)):
        with pytest.raises(ValueError, match="ks"):
            metric.compute(predictions=[[0.1, 0.2]], references=[0], ks=bad_ks)
    assert metric.compute(predictions=[[0.1, 0.2]], references=[1], ks=(1,))["R@1"] == 1.0
