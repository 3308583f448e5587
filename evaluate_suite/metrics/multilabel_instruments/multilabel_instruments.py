"""Multi-label instrument recognition: per-class average precision (mAP) and false-positive rate (FPR)."""

import datasets
import evaluate
import numpy as np


_CITATION = """\
@inproceedings{hu2025ophclip,
  title={OphCLIP: Hierarchical Retrieval-Augmented Learning for Ophthalmic Surgical Video-Language Pretraining},
  author={Hu, Ming and Yuan, Kun and Shen, Yaling and Tang, Feilong and Xu, Xiaohao and Zhou, Lin and Li, Wei and
          Chen, Ying and Xu, Zhongxing and Peng, Zelin and others},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision},
  year={2025},
  note={arXiv:2411.15421}
}
"""

_DESCRIPTION = """\
Multi-instrument (multi-label) recognition scored over frames, as in OphCLIP's instrument benchmarks (mAP and FPR).
Input is one row per frame: a vector of C class scores and a vector of C 0/1 presence labels.

mAP (threshold-free): for every class c with at least one positive frame, the average precision
AP_c = sum_n (R_n - R_{n-1}) * P_n over the distinct score values taken as thresholds in decreasing order (tied scores
form one threshold), with R_0 = 0 -- the definition of `sklearn.metrics.average_precision_score` (no interpolation).
mAP is the unweighted mean of AP_c over those classes. Classes without a positive frame have no defined AP: they are
listed in `classes_without_positives` and excluded from mAP (mAP is NaN when no class has a positive).

FPR (thresholded): a class is predicted present in a frame when its score >= `threshold`. Over the frame x class
cells whose reference is 0, FP = cells predicted present and TN = cells predicted absent.
`FPR` = sum FP / (sum FP + sum TN) over all such cells of all classes (micro); `FPR_macro` = the mean over classes
with at least one negative frame of FP_c / (FP_c + TN_c). Classes without a negative frame are listed in
`classes_without_negatives` and excluded from `FPR_macro`. The default threshold 0.5 assumes probabilities: zero-shot
callers pass sigmoid (per class, independent) or softmax scores, not raw cosine similarities or logits -- or set
`threshold` to match their scores. Scores are stored as float32 and compared with float32(threshold), so a score
written as 0.7 counts as present at threshold=0.7. All values are fractions in [0, 1].
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): per-frame score vectors, shape (frames, C); higher = more likely present.
    references (`list` of `list` of `int`): per-frame 0/1 presence vectors, shape (frames, C).
    threshold (`float`, defaults to 0.5): decision rule for FPR, a class is predicted present iff score >= threshold.
    class_names (`list` of `str`, *optional*): C distinct names, used as keys of the per-class outputs; by default the
        class indices 0..C-1.

Returns:
    mAP (`float`): mean AP over classes with at least one positive frame (NaN if none has).
    per_class_AP (`dict`): class -> AP, for the classes that enter mAP.
    classes_without_positives (`list`): classes excluded from mAP.
    FPR (`float`): micro false-positive rate over all negative frame x class cells (NaN if there is none).
    FPR_macro (`float`): mean per-class FPR over classes with at least one negative frame (NaN if none has).
    per_class_FPR (`dict`): class -> FP_c / (FP_c + TN_c), for the classes that enter FPR_macro.
    classes_without_negatives (`list`): classes excluded from FPR_macro.
    num_frames (`int`), num_classes (`int`).

Raises:
    ValueError: on different numbers of rows, ragged or mismatched vectors, references other than 0/1, NaN scores,
        a non-finite threshold, or class_names of the wrong length or with duplicates.

Example:
    >>> metric = evaluate.load("evaluate_suite/metrics/multilabel_instruments")
    >>> results = metric.compute(
    ...     predictions=[[0.9, 0.2], [0.6, 0.7], [0.1, 0.4]],
    ...     references=[[1, 0], [0, 1], [0, 0]],
    ...     class_names=["forceps", "phaco_handpiece"],
    ... )
    >>> results["mAP"], results["FPR"], results["FPR_macro"]
    (1.0, 0.25, 0.25)
"""


def _average_precision(y_true, scores):
    """sklearn's average_precision_score for one class with at least one positive (ties grouped, no interpolation)."""
    order = np.argsort(-scores, kind="mergesort")
    scores, y_true = scores[order], y_true[order]
    # Last index of each run of equal scores: these are the thresholds (`!=` rather than diff, so equal infs tie).
    last = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), len(scores) - 1]
    tps = np.cumsum(y_true)[last]
    fps = last + 1 - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _as_matrix(rows, name, dtype):
    lengths = {len(row) for row in rows}
    if len(lengths) > 1:
        raise ValueError(
            f"{name} are ragged: every frame must have one value per class, got vector lengths {sorted(lengths)}."
        )
    if lengths == {0}:
        raise ValueError(f"{name} vectors are empty: there must be at least one class.")
    return np.asarray(rows, dtype=dtype).reshape(len(rows), lengths.pop() if lengths else 0)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelInstruments(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
            reference_urls=[
                "https://arxiv.org/abs/2411.15421",
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.average_precision_score.html",
            ],
        )

    def _compute(self, predictions, references, threshold=0.5, class_names=None):
        if len(predictions) != len(references):
            raise ValueError(
                f"predictions ({len(predictions)}) and references ({len(references)}) must have one row per frame."
            )
        if len(predictions) == 0:
            raise ValueError("No frame to score: predictions and references are empty.")
        scores = _as_matrix(predictions, "predictions", np.float32)
        labels = _as_matrix(references, "references", np.int64)
        if scores.shape != labels.shape:
            raise ValueError(
                f"predictions have {scores.shape[1]} scores per frame but references have {labels.shape[1]} labels."
            )
        if np.isnan(scores).any():
            raise ValueError("predictions contain NaN scores.")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"references must be 0/1, got values {sorted(set(np.unique(labels).tolist()) - {0, 1})}.")
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise ValueError(f"threshold must be a number, got {threshold!r}.") from None
        if not np.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold}.")
        num_frames, num_classes = labels.shape
        if class_names is None:
            names = list(range(num_classes))
        else:
            names = list(class_names)
            if len(names) != num_classes or len(set(names)) != num_classes:
                raise ValueError(
                    f"class_names must hold {num_classes} distinct names (one per score), got {len(names)}: {names}."
                )

        positive = labels == 1
        per_class_ap, without_positives = {}, []
        for c, name in enumerate(names):
            if positive[:, c].any():
                per_class_ap[name] = _average_precision(positive[:, c].astype(np.int64), scores[:, c])
            else:
                without_positives.append(name)

        # Compared in float32, the scores' storage type: a score written as 0.7 passes threshold=0.7.
        predicted = scores >= np.float32(threshold)
        false_pos = (predicted & ~positive).sum(axis=0)
        negatives = (~positive).sum(axis=0)  # FP_c + TN_c
        per_class_fpr, without_negatives = {}, []
        for c, name in enumerate(names):
            if negatives[c]:
                per_class_fpr[name] = float(false_pos[c] / negatives[c])
            else:
                without_negatives.append(name)

        nan = float("nan")
        return {
            "mAP": float(np.mean(list(per_class_ap.values()))) if per_class_ap else nan,
            "per_class_AP": per_class_ap,
            "classes_without_positives": without_positives,
            "FPR": float(false_pos.sum() / negatives.sum()) if negatives.sum() else nan,
            "FPR_macro": float(np.mean(list(per_class_fpr.values()))) if per_class_fpr else nan,
            "per_class_FPR": per_class_fpr,
            "classes_without_negatives": without_negatives,
            "num_frames": int(num_frames),
            "num_classes": int(num_classes),
        }
