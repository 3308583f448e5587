"""Text <-> video retrieval from a similarity matrix: Recall@K (a fraction), median rank and mean rank."""

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
Cross-modal retrieval (text -> video or video -> text) scored from a similarity matrix. Each input row is one query:
its similarity to every one of the N candidates (higher = more similar), and the reference is the index of the
query's correct candidate. Transpose the matrix (and the references) to score the other direction.

Rank of a query (1 = best), with the pessimistic rule for ties:
    rank = 1 + #{candidates j != correct : score_j >= score_correct}
i.e. every other candidate scoring as high as the correct one is ranked ahead of it (a constant similarity row gets
rank N, never 1). Scores are stored as float32, so values equal after float32 rounding tie.

R@K = fraction of queries with rank <= K, in [0, 1] (the suite's one unit for rates; tables show percent); MedR = median rank (the mean of the two middle ranks
for an even number of queries); MnR = mean rank. Lower MedR / MnR is better.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): similarity matrix rows, shape (queries, candidates); all rows must have
        the same number of candidates. NaN is rejected; +-inf is allowed (e.g. masked candidates).
    references (`list` of `int`): index in [0, candidates) of each query's correct candidate.
    ks (`tuple` of `int`, defaults to (1, 5, 10)): the K of the R@K outputs, positive ints.

Returns:
    R@K (`float`), one per K in `ks`: fraction of queries whose correct candidate ranks <= K, in [0, 1].
    MedR (`float`): median rank. MnR (`float`): mean rank. Ranks are in [1, candidates].
    num_queries (`int`), num_candidates (`int`).

Raises:
    ValueError: on different numbers of rows, ragged or empty rows, NaN scores, references outside
        [0, candidates), or bad `ks`.

Example:
    >>> metric = evaluate.load("evaluate_suite/metrics/retrieval")
    >>> results = metric.compute(
    ...     predictions=[[0.9, 0.1, 0.3], [0.5, 0.2, 0.5], [0.3, 0.8, 0.1]],
    ...     references=[0, 2, 2],
    ...     ks=(1, 2),
    ... )
    >>> results["R@1"], results["R@2"], results["MedR"], results["MnR"]
    (0.3333333333333333, 0.6666666666666666, 2.0, 2.0)
"""

_CHUNK = 1024  # query rows compared at a time (bounds the boolean temporary to 1024 x candidates)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Retrieval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2411.15421"],
        )

    def _compute(self, predictions, references, ks=(1, 5, 10)):
        if len(predictions) != len(references):
            raise ValueError(
                f"predictions ({len(predictions)} similarity rows) and references ({len(references)}) must have one "
                "entry per query."
            )
        if len(predictions) == 0:
            raise ValueError("No query to score: predictions and references are empty.")
        if isinstance(ks, (int, np.integer)):
            ks = (ks,)
        ks = tuple(ks)
        if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
            raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks!r}.")
        if len(set(ks)) != len(ks):
            raise ValueError(f"ks has duplicates: {ks!r}.")

        lengths = {len(row) for row in predictions}
        if len(lengths) > 1:
            raise ValueError(
                f"predictions are ragged: every similarity row must score the same candidates, got row lengths "
                f"{sorted(lengths)}."
            )
        num_candidates = lengths.pop()
        if num_candidates == 0:
            raise ValueError("predictions rows are empty: there must be at least one candidate.")
        scores = np.asarray(predictions, dtype=np.float32).reshape(len(predictions), num_candidates)
        if np.isnan(scores).any():
            raise ValueError("predictions contain NaN similarities.")
        targets = np.asarray(references, dtype=np.int64)
        out_of_range = (targets < 0) | (targets >= num_candidates)
        if out_of_range.any():
            raise ValueError(
                f"references must be candidate indices in [0, {num_candidates}), got {targets[out_of_range][:10].tolist()}."
            )

        ranks = np.empty(len(targets), dtype=np.int64)
        for start in range(0, len(targets), _CHUNK):
            block, block_targets = scores[start : start + _CHUNK], targets[start : start + _CHUNK]
            correct = block[np.arange(len(block)), block_targets][:, None]
            # >= counts the correct candidate itself once: rank = 1 + (others scoring >= correct).
            ranks[start : start + _CHUNK] = (block >= correct).sum(axis=1)

        results = {f"R@{int(k)}": int(np.count_nonzero(ranks <= k)) / len(ranks) for k in ks}
        results.update(
            {
                "MedR": float(np.median(ranks)),
                "MnR": float(np.mean(ranks)),
                "num_queries": int(len(ranks)),
                "num_candidates": int(num_candidates),
            }
        )
        return results
