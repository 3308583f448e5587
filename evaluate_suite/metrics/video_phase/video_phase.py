"""Per-video phase-recognition metric: accuracy and macro-F1 per video, then the mean over videos.

This is the SurgVLP / PeskaVLP zero-shot protocol (`evaluate_zero_frame`), which OphCLIP's phase benchmarks follow:
frames are scored per video, each video yields one accuracy and one sklearn-style macro-F1, and the reported numbers
are the unweighted means over videos.
"""

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
Surgical phase recognition scored per video and averaged over videos (the SurgVLP zero-shot protocol used for
OphCLIP's phase benchmarks). Input is one row per frame: the predicted class id, the reference class id and the id of
the video the frame belongs to. Frames whose reference equals `ignore_label` are dropped. For every video with at least
one remaining frame:

* accuracy = (frames with prediction == reference) / (frames of the video);
* macro-F1 = mean over a class set L of F1_c = 2*TP_c / (2*TP_c + FP_c + FN_c).
  With `f1_labels="present"` (the default) L is the set of classes that occur in that video's references or
  predictions, i.e. exactly what `sklearn.metrics.f1_score(y_true, y_pred, average="macro")` uses on that video alone.
  With `f1_labels="all"` L is the full `labels` list; a class absent from both the references and the predictions of
  a video has an undefined F1, which is set to `zero_division` (0.0 by default, as sklearn's
  `f1_score(..., labels=labels, average="macro", zero_division=0.0)`).

The results are the unweighted means over videos (every video counts once, whatever its length), their population
standard deviations (numpy's default, ddof=0), and a per-video breakdown. Videos whose frames are all ignored are not
scored: they are listed in `skipped_videos` and do not enter the means. All values are fractions in [0, 1].
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class id of each frame (non-negative).
    references (`list` of `int`): reference class id of each frame (non-negative), or `ignore_label`.
    video_ids (`list` of `str`): id of the video each frame belongs to. A video's frames need not be contiguous.
    ignore_label (`int` or `None`, defaults to -1): frames whose reference equals it are excluded. `None` keeps all.
    labels (`list` of `int`, *optional*): the full list of class ids. When given, every scored reference and
        prediction must be in it (otherwise a ValueError is raised). It sets the F1 class set only with
        `f1_labels="all"`.
    f1_labels (`str`, defaults to `"present"`): the class set of each video's macro-F1. `"present"`: the classes
        present in that video's references or predictions (sklearn's default). `"all"`: every class in `labels`
        (which is then required).
    zero_division (`float`, defaults to 0.0): F1 of a class with no reference and no predicted frame in a video
        (only possible with `f1_labels="all"`); 0.0 or 1.0, as sklearn's argument of the same name.

Returns:
    accuracy (`float`): mean over scored videos of the per-video accuracy, in [0, 1].
    f1 (`float`): mean over scored videos of the per-video macro-F1, in [0, 1].
    accuracy_std (`float`), f1_std (`float`): population standard deviations (ddof=0) over scored videos.
    num_videos (`int`): number of scored videos.
    skipped_videos (`list` of `str`): videos whose frames were all ignored (not scored, not in the means).
    per_video (`dict`): video id -> {"accuracy": float, "f1": float, "frames": int (scored frames)}, in order of
        first appearance.

Raises:
    ValueError: on inputs of different lengths, negative class ids, ids outside `labels`, a bad `f1_labels` or
        `zero_division`, or when no frame at all is left to score.

Example:
    >>> metric = evaluate.load("evaluate_suite/metrics/video_phase")  # or evaluate_suite.metrics.load_metric("video_phase")
    >>> results = metric.compute(
    ...     predictions=[0, 1, 1, 2, 2, 0],
    ...     references=[0, 1, 2, 2, -1, 0],
    ...     video_ids=["v1", "v1", "v1", "v1", "v2", "v2"],
    ... )
    >>> round(results["accuracy"], 4), round(results["f1"], 4), results["num_videos"]
    (0.875, 0.8889, 2)
"""


def _macro_f1(y_true, y_pred, classes, zero_division):
    scores = []
    for c in classes:
        is_true, is_pred = y_true == c, y_pred == c
        tp = int(np.count_nonzero(is_true & is_pred))
        fp = int(np.count_nonzero(is_pred & ~is_true))
        fn = int(np.count_nonzero(is_true & ~is_pred))
        denominator = 2 * tp + fp + fn
        scores.append(2 * tp / denominator if denominator else zero_division)
    return float(np.mean(scores))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VideoPhase(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                    "video_ids": datasets.Value("string"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2411.15421", "https://github.com/CAMMA-public/SurgVLP"],
        )

    def _compute(
        self, predictions, references, video_ids, ignore_label=-1, labels=None, f1_labels="present", zero_division=0.0
    ):
        if not len(predictions) == len(references) == len(video_ids):
            raise ValueError(
                f"predictions ({len(predictions)}), references ({len(references)}) and video_ids ({len(video_ids)}) "
                "must have one entry per frame (same length)."
            )
        if f1_labels not in ("present", "all"):
            raise ValueError(f"f1_labels must be 'present' or 'all', got {f1_labels!r}.")
        if f1_labels == "all" and labels is None:
            raise ValueError("f1_labels='all' needs the full class list: pass labels=[...].")
        if zero_division not in (0, 1) or isinstance(zero_division, bool):
            raise ValueError(f"zero_division must be 0.0 or 1.0, got {zero_division!r}.")
        zero_division = float(zero_division)

        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if any(v is None for v in video_ids):
            raise ValueError("video_ids must not contain None.")

        scored = np.ones(len(references), dtype=bool) if ignore_label is None else references != ignore_label
        if np.any(references[scored] < 0):
            bad = sorted(set(references[scored][references[scored] < 0].tolist()))
            raise ValueError(
                f"references hold negative class ids {bad} that are not ignore_label={ignore_label!r}; class ids are "
                "non-negative integers and ignored frames carry ignore_label."
            )
        if np.any(predictions[scored] < 0):
            bad = sorted(set(predictions[scored][predictions[scored] < 0].tolist()))
            raise ValueError(f"predictions hold negative class ids {bad} on scored frames.")

        if labels is not None:
            labels = [int(label) for label in labels]
            if len(labels) == 0 or len(set(labels)) != len(labels) or min(labels) < 0:
                raise ValueError(f"labels must be a non-empty list of distinct non-negative ints, got {labels}.")
            if ignore_label is not None and ignore_label in labels:
                raise ValueError(f"ignore_label={ignore_label} is also in labels.")
            label_set = np.asarray(sorted(labels), dtype=np.int64)
            for name, values in (("references", references[scored]), ("predictions", predictions[scored])):
                outside = ~np.isin(values, label_set)
                if outside.any():
                    raise ValueError(f"{name} hold class ids {sorted(set(values[outside].tolist()))} not in labels.")

        # Group frames by video (frames of a video need not be contiguous); videos keep their first-appearance order.
        index = {}
        codes = np.fromiter((index.setdefault(v, len(index)) for v in video_ids), dtype=np.int64, count=len(video_ids))
        keep = np.flatnonzero(scored)
        keep = keep[np.argsort(codes[keep], kind="stable")]
        starts = np.searchsorted(codes[keep], np.arange(len(index) + 1))
        per_video, skipped = {}, []
        for code, video in enumerate(index):
            rows = keep[starts[code] : starts[code + 1]]
            if len(rows) == 0:
                skipped.append(video)
                continue
            y_true, y_pred = references[rows], predictions[rows]
            classes = label_set if f1_labels == "all" else np.union1d(y_true, y_pred)
            per_video[video] = {
                "accuracy": float(np.mean(y_true == y_pred)),
                "f1": _macro_f1(y_true, y_pred, classes, zero_division),
                "frames": int(len(rows)),
            }

        if not per_video:
            raise ValueError(
                f"No frame left to score: all {len(references)} frames are ignored (ignore_label={ignore_label!r}) "
                "or the input is empty."
            )
        accuracies = np.array([v["accuracy"] for v in per_video.values()])
        f1s = np.array([v["f1"] for v in per_video.values()])
        results = {
            "accuracy": float(accuracies.mean()),
            "f1": float(f1s.mean()),
            "accuracy_std": float(accuracies.std()),
            "f1_std": float(f1s.std()),
            "num_videos": len(per_video),
            "skipped_videos": skipped,
            "per_video": per_video,
        }
        return results
