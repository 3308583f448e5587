"""The silent-video knowledge base: a memory bank of silent-video embeddings searched by maximum inner product.

OphCLIP's retrieval-augmented pretraining lets the embedding of a video's title query a bank of *silent* videos
(surgeries without narration) for its top-K nearest neighbours, which then serve as extra supervision for the
video-level objective. The bank's rows are re-encoded with the current vision tower as training proceeds, so the
bank must support cheap in-place updates, and every process of a distributed run must hold an identical copy.

[`SilentVideoBank`] is that bank, built on the Hugging Face stack:

- the metadata (`video_id`, `title`, optionally `duration` and any other column) is a `datasets.Dataset`, one row per
  silent video;
- the `(N, d)` float32 embedding matrix is indexed with
  `Dataset.add_faiss_index_from_external_arrays(..., metric_type=faiss.METRIC_INNER_PRODUCT)`; faiss ids are row
  numbers, so a search result indexes both the dataset and the embedding matrix;
- by default the index is an exact `IndexFlat` (inner product). At OphVL's scale (~30K silent videos, d = 768) it
  searches 256 queries in milliseconds, builds in under a second, and its vector storage can be overwritten in place.
  Approximate indexes (`string_factory="IVF1024,Flat"`, `"HNSW32,Flat"`, ...) are for larger banks: at 1M clustered
  rows `"IVF1024,Flat"` with `nprobe=8` searched 10x faster than exact search with recall@16 0.99, but only 0.68 where
  the clusters were many and overlapping (README, Benchmarks): measure recall on your own embeddings.

Example:

```python
>>> import numpy as np
>>> from datasets_ophvl.knowledge_base import SilentVideoBank

>>> rng = np.random.default_rng(0)
>>> bank = SilentVideoBank.from_embeddings(
...     rng.standard_normal((100, 8)), video_ids=[f"silent-{i:03d}" for i in range(100)])
>>> bank
SilentVideoBank(num_rows=100, dim=8, index='Flat', normalize=True)
>>> scores, indices = bank.search(bank.embeddings[:2], k=3)  # two queries that are rows 0 and 1 of the bank
>>> indices[:, 0].tolist()  # each query's best match is itself...
[0, 1]
>>> [round(s, 4) for s in scores[:, 0].tolist()]  # ...with cosine similarity 1
[1.0, 1.0]
>>> bank.dataset[int(indices[1, 0])]["video_id"]
'silent-001'

```
"""

import contextlib
import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import datasets
from datasets import Dataset, Features, Value, load_from_disk


try:
    import faiss
except ImportError:  # optional (`pip install faiss-cpu`): fail when a bank is built, not when this module is imported
    faiss = None


logger = logging.getLogger(__name__)

INDEX_NAME = "embeddings"
CONFIG_NAME = "bank_config.json"
DATASET_DIR = "dataset"
INDEX_FILE = "index.faiss"
EMBEDDINGS_FILE = "embeddings.npy"
# 2: the config holds the sha256 of the embedding matrix and of every file saved; `load` checks them. Banks of format
# 1 (no checksums) still load, with a warning.
FORMAT_VERSION = 2
_CONFIG_TYPES = {  # key: (allowed types, what is expected)
    "num_rows": ((int,), "a whole number of rows"),
    "dim": ((int,), "the embedding dimension, a whole number"),
    "normalize": ((bool,), "true or false"),
    "string_factory": ((str, type(None)), "a faiss index-factory string or null"),
    "train_size": ((int, type(None)), "a whole number or null"),
    "nprobe": ((int, type(None)), "a whole number or null"),
}
REQUIRED_COLUMNS = ("video_id", "title")
# Indexes that need training (IVF, PQ, SQ) learn from a seeded random sample of the bank, the same on every process.
TRAIN_SEED = 0
DEFAULT_TRAIN_ROWS = 65_536
DEFAULT_EF_SEARCH = 64


class BankSearchResult(NamedTuple):
    """What [`SilentVideoBank.search`] returns; unpacks as `scores, indices = bank.search(...)`."""

    scores: torch.Tensor
    """`(batch_size, k)` float32 inner products, best first (cosines when bank and queries are normalised)."""
    indices: torch.Tensor
    """`(batch_size, k)` int64 row numbers of the bank (`-1` where an approximate index found fewer than `k`)."""


def _require_faiss():
    if faiss is None:
        raise ImportError(
            "SilentVideoBank needs faiss: `pip install faiss-cpu` (or `pip install 'ophclip[curation]'`)."
        )


class _IndexOwner:
    """Exposes a faiss buffer through the numpy array interface while holding a reference to the index.

    `faiss.rev_swig_ptr` returns an array that does not keep the index alive: if the index were freed (dropped,
    replaced by `load`, garbage collected with an old bank) while a training loop still held the embedding view, the
    view would point at freed memory. An array created from this object has it as its `base`, so the index lives as
    long as any view of its vectors.
    """

    def __init__(self, index, array: np.ndarray):
        self.index = index
        self.__array_interface__ = array.__array_interface__


@contextlib.contextmanager
def _quiet_progress_bars():
    """Silence datasets' progress bar while adding vectors (noise in a training loop that rebuilds an index)."""
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _flat_vectors(index) -> np.ndarray:
    """A writable `(ntotal, d)` float32 view of an `IndexFlat`'s stored vectors (no copy)."""
    raw = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
    return np.asarray(_IndexOwner(index, raw))


def _is_flat(index) -> bool:
    return isinstance(index, faiss.IndexFlat)


def _flat_codes(index):
    """A writable `(ntotal, code_size)` uint8 view of the codes of a flat-codes index that is not `IndexFlat` (scalar
    quantiser, PQ: row `i` is code slot `i`), else None. Updating those in place keeps ids equal to row numbers,
    where `remove_ids` would renumber the rows after each removed one."""
    index = faiss.downcast_index(index)
    if _is_flat(index) or not isinstance(index, faiss.IndexFlatCodes) or index.ntotal == 0:
        return None
    raw = faiss.rev_swig_ptr(index.codes.data(), index.ntotal * index.code_size)
    return np.asarray(_IndexOwner(index, raw.reshape(index.ntotal, index.code_size)))


def _is_ivf(index) -> bool:
    return faiss.try_extract_index_ivf(index) is not None


def _hnsw_of(index):
    """The `faiss.HNSW` graph of an `IndexHNSW*` (its `efSearch` sets the search breadth), else None."""
    hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
    return hnsw if isinstance(hnsw, faiss.HNSW) else None


def training_sample(num_rows: int, size: int, seed: int = TRAIN_SEED) -> np.ndarray:
    """The rows an index is trained on: `size` distinct rows of `num_rows` drawn with a fixed seed, ascending.

    Every process of a distributed run draws the same rows, so their indexes learn the same centroids; all rows
    when `size >= num_rows`.
    """
    if size >= num_rows:
        return np.arange(num_rows, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(num_rows, size=size, replace=False)).astype(np.int64)


def _to_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy has no bfloat16, and the bank is float32 anyway.
        return (x.float() if x.is_floating_point() else x).numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # e.g. ragged nested lists
        raise ValueError(
            f"`{name}` must be a torch tensor, numpy array or nested sequence of numbers; got {type(x)}."
        ) from e


def _as_matrix(x, name: str, dim: int | None = None, allow_empty: bool = False) -> np.ndarray:
    """Validate an `(n, d)` real matrix and return it as a new C-contiguous float32 array (never aliasing `x`)."""
    array = _to_numpy(x, name)
    expected = f"(num_vectors, {dim})" if dim is not None else "(num_vectors, dim)"
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array of shape {expected}, got shape {tuple(array.shape)}.")
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"`{name}` must hold real numbers, got dtype {array.dtype}.")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"`{name}` must have shape {expected} to match the bank, got shape {tuple(array.shape)}.")
    if array.shape[1] == 0:
        raise ValueError(f"`{name}` must have shape {expected} with dim >= 1, got shape {tuple(array.shape)}.")
    if array.shape[0] == 0 and not allow_empty:
        raise ValueError(f"`{name}` is empty (shape {tuple(array.shape)}); a bank needs at least one vector.")
    array = np.array(array, dtype=np.float32, order="C", copy=True)
    # Checked in slices: a whole-matrix boolean mask would cost another quarter of the matrix (0.8 GB at 1M x 768).
    for start in range(0, len(array), 65_536):
        finite = np.isfinite(array[start : start + 65_536])
        if not finite.all():
            bad = start + np.flatnonzero(~finite.all(axis=1))
            raise ValueError(f"`{name}` contains NaN or infinite values (in rows {_preview(bad)}).")
    return array


def _l2_normalize(array: np.ndarray, name: str) -> np.ndarray:
    """Normalise rows in place; a zero (or overflowing) row has no direction, so it is an error rather than NaN."""
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    bad = np.flatnonzero(~(np.isfinite(norms[:, 0]) & (norms[:, 0] > 0)))
    if len(bad):
        raise ValueError(
            f"`{name}` rows {_preview(bad)} have zero (or overflowing) L2 norm and "
            "cannot be normalised; pass finite non-zero vectors (or normalize=False)."
        )
    array /= norms
    return array


def _as_rows(rows, num_rows: int, name: str = "rows") -> np.ndarray:
    """Validate a 1-D collection of distinct row numbers in `[0, num_rows)`; returns int64."""
    array = _to_numpy(rows, name) if not isinstance(rows, range) else np.arange(rows.start, rows.stop, rows.step)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D sequence of row numbers, got shape {tuple(array.shape)}.")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"`{name}` must hold integer row numbers, got dtype {array.dtype} (boolean masks are not accepted)."
        )
    array = array.astype(np.int64, copy=False)
    out_of_range = array[(array < 0) | (array >= num_rows)]
    if out_of_range.size:
        raise ValueError(
            f"`{name}` must be row numbers in [0, {num_rows}), got {_preview(out_of_range)}."
        )
    unique, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"`{name}` must not repeat a row (which update would win is undefined), got duplicates "
            f"{_preview(unique[counts > 1])}; strip the padding of gathered shards first."
        )
    return array


def _preview(values, n: int = 5) -> str:
    """The first `n` values for an error message: `[3, 7, 9, ...]`."""
    values = list(np.asarray(values).tolist()) if isinstance(values, np.ndarray) else list(values)
    return repr(values[:n])[:-1] + (", ...]" if len(values) > n else "]")


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


class SilentVideoBank:
    r"""
    A memory bank of silent-video embeddings: a `datasets.Dataset` (one row per silent video) plus a faiss
    inner-product index over an `(N, d)` float32 embedding matrix whose ids are the dataset's row numbers.

    Build one with [`~SilentVideoBank.from_embeddings`] (or from an existing metadata dataset with the constructor),
    query it with [`~SilentVideoBank.search`], refresh rows in place with [`~SilentVideoBank.update`], and persist it
    with [`~SilentVideoBank.save`] / [`~SilentVideoBank.load`].

    **Normalisation.** With `normalize=True` (the default) every stored vector is L2-normalised when it enters the
    bank (at construction and in `update`), and `search` normalises the queries too, so scores are cosine
    similarities in `[-1, 1]`. With `normalize=False` vectors are stored as given and the search is raw maximum inner
    product search; queries are then left as given unless `search(..., normalize_queries=True)`. Normalising a query
    never changes which rows it retrieves, only the scale of its scores.

    **Index types.** The default exact `IndexFlat` (inner product) is the right choice at OphVL's scale; its results
    equal a brute-force `queries @ embeddings.T` top-k. With `string_factory` (e.g. `"IVF256,Flat"`, `"HNSW32,Flat"`)
    the search is **approximate**: it may miss true neighbours, and IVF indexes may return fewer than `k` hits (index
    `-1`, score `-inf`). An index that needs training (IVF, PQ, SQ) is trained on `train_size` rows drawn with a
    fixed seed from the whole bank ([`training_sample`]; default 64 per IVF list, else 65,536), the same rows on every
    process. IVF searches `nprobe` lists (default `nlist // 16`); HNSW keeps `nprobe` candidates (`efSearch`, default
    64). `benchmarks/bench_knowledge_base.py --sweep` measures build time, search time and recall@16 against exact
    search up to 1M rows (README, Benchmarks). Refresh, per index type:

    | index | `update` of some rows | `update` of every row |
    |---|---|---|
    | Flat (default) | overwrite the index's vector storage in place (~1 ms for 512 rows at d = 768) | the same |
    | IVF (`"IVF..."`) | `remove_ids` + `add_with_ids` (ids stay row numbers; the centroids stay) | retrain + re-add |
    | SQ / PQ without IVF (`"SQ8"`, `"PQ96"`) | overwrite the rows' codes in place (`sa_encode`) | retrain + re-add |
    | anything else (HNSW, ...) | full re-add from the bank's matrix (HNSW cannot remove) | re-add |

    A partial refresh leaves IVF centroids where the first embeddings put them; `rebuild()` retrains on the current
    embeddings (the trainer does it once per refresh cycle, when every row has been re-encoded).

    Only the Flat index holds the exact vectors itself; for every other index the bank keeps its own float32 copy of
    the matrix (so `embeddings` is exact and a rebuild is possible), which [`~SilentVideoBank.save`] writes next to
    the index.

    **Distributed training.** Every process holds its own copy of the bank. To keep the copies identical, every
    process applies the *same* updates: the rows to refresh come from the deterministic
    [`~SilentVideoBank.rows_for_refresh`], each process re-encodes its share
    ([`~SilentVideoBank.shard_rows`]), and the gathered rows and embeddings of all processes go to `update` on every
    process. Shards are contiguous, so the gathered embeddings are in the order of `rows`:

    ```python
    rows = bank.rows_for_refresh(step, rows_per_step=512)
    mine = SilentVideoBank.shard_rows(rows, accelerator.process_index, accelerator.num_processes)
    with torch.no_grad():
        embeds = encode_silent_videos(mine)  # (len(mine), d), the current vision tower + projection
    # shards may differ in length by one: pad, gather, strip the padding
    world = accelerator.num_processes
    sizes = [len(SilentVideoBank.shard_rows(rows, r, world)) for r in range(world)]
    padded = accelerator.gather(accelerator.pad_across_processes(embeds, dim=0))
    bank.update(rows, torch.cat([chunk[:n] for chunk, n in zip(padded.split(max(sizes)), sizes)]))
    ```

    Build the initial bank the same way everywhere (e.g. build and `save` it on the main process, then `load` it on
    every process), and save it with the training checkpoint so a resumed run continues from the same bank.

    faiss searches with OpenMP threads over all cores. When several processes share the cores (DDP on CPU, data
    loader workers), its threads spin at barriers; `faiss.omp_set_num_threads(max(1, os.cpu_count() // world))` in
    each process avoids that (on a busy 2-core machine one thread searched ~4x faster than two).

    Args:
        dataset (`datasets.Dataset`):
            One row per silent video, with at least the columns `video_id` (distinct strings) and `title`. It must
            have no attached index; the bank wraps its Arrow table in a new `Dataset` object (no copy), so the
            caller's object is left untouched.
        embeddings (`torch.Tensor` or `np.ndarray` of shape `(len(dataset), dim)`):
            The embedding of each row, e.g. `model.get_video_features(...).pooler_output`. Copied to float32.
        normalize (`bool`, *optional*, defaults to `True`):
            L2-normalise stored vectors (and, by default, queries) so inner product equals cosine similarity.
        string_factory (`str`, *optional*):
            A faiss index-factory string for an approximate index, e.g. `"IVF256,Flat"`. Default: exact Flat.
        train_size (`int`, *optional*):
            Rows (a seeded random sample of the bank) that train an index that needs training (IVF, PQ, SQ);
            defaults to 64 per IVF list, else 65,536, at most all rows.
        nprobe (`int`, *optional*):
            Search breadth: inverted lists an IVF index visits per query (default `max(1, nlist // 16)`), or an HNSW
            index's `efSearch` (default 64). Larger is slower and finds more of the true neighbours.

    Example:

    ```python
    >>> import numpy as np, torch
    >>> from datasets_ophvl.knowledge_base import SilentVideoBank

    >>> rng = np.random.default_rng(0)
    >>> bank = SilentVideoBank.from_embeddings(
    ...     rng.standard_normal((1000, 16)), video_ids=[f"v{i}" for i in range(1000)],
    ...     titles=[f"silent video {i}" for i in range(1000)], durations=[600.0] * 1000)
    >>> len(bank), bank.dim
    (1000, 16)

    >>> # refresh rows 3 and 7 with new encodings, then find the new vector of row 7
    >>> new = torch.randn(2, 16)
    >>> bank.update([3, 7], new)
    >>> scores, indices = bank.search(new[1:], k=5)
    >>> int(indices[0, 0])
    7

    >>> # a deterministic refresh schedule that visits every row once per cycle of ceil(1000 / 300) = 4 steps
    >>> [bank.rows_for_refresh(step, rows_per_step=300)[[0, -1]].tolist() for step in range(5)]
    [[0, 299], [300, 599], [600, 899], [900, 999], [0, 299]]
    >>> SilentVideoBank.shard_rows(np.arange(10), rank=1, world_size=3).tolist()
    [4, 5, 6]

    ```
    """

    def __init__(
        self,
        dataset: Dataset,
        embeddings,
        normalize: bool = True,
        string_factory: str | None = None,
        train_size: int | None = None,
        nprobe: int | None = None,
    ):
        _require_faiss()
        if not isinstance(dataset, Dataset):
            raise ValueError(
                f"`dataset` must be a datasets.Dataset with columns {REQUIRED_COLUMNS}, got {type(dataset)}."
            )
        missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"`dataset` must have the columns {REQUIRED_COLUMNS}; missing {missing} (has {dataset.column_names})."
            )
        if dataset.list_indexes():
            raise ValueError(
                f"`dataset` must have no attached index, found {dataset.list_indexes()}; drop them with `drop_index`."
            )
        if len(dataset) == 0:
            raise ValueError("`dataset` is empty; a bank needs at least one silent video.")
        if string_factory is not None and (not isinstance(string_factory, str) or not string_factory.strip()):
            raise ValueError(
                f"`string_factory` must be a faiss index-factory string such as 'IVF256,Flat', got {string_factory!r}."
            )
        if train_size is not None:
            _check_int(train_size, "train_size", 1)

        matrix = _as_matrix(embeddings, "embeddings")
        if matrix.shape[0] != len(dataset):
            raise ValueError(
                f"`embeddings` must have one row per silent video (row of `dataset` / entry of `video_ids`): expected "
                f"shape ({len(dataset)}, dim), got {tuple(matrix.shape)}."
            )
        _check_video_ids(list(dataset["video_id"]))
        if normalize:
            _l2_normalize(matrix, "embeddings")

        # A fresh Dataset object over the same Arrow table: the index is attached to it, not to the caller's object,
        # and it has no indices mapping (row number == position in the table), which `save` relies on.
        if getattr(dataset, "_indices", None) is not None:  # a select()/shuffle() view: materialise it once
            dataset = dataset.flatten_indices()
        self.dataset = Dataset(dataset.data, info=dataset.info, split=dataset.split)
        self.normalize = bool(normalize)
        self.string_factory = string_factory
        self.train_size = train_size
        self.nprobe = nprobe
        self._vectors = None
        self._build_index(matrix)

    # -- construction ----------------------------------------------------------------------------------------------

    @classmethod
    def from_embeddings(
        cls,
        embeddings,
        video_ids: Sequence[str],
        titles: Sequence[str] | None = None,
        durations: Sequence[float] | None = None,
        normalize: bool = True,
        **index_kwargs,
    ) -> "SilentVideoBank":
        r"""
        Build a bank from an embedding matrix and per-row metadata.

        Args:
            embeddings (`torch.Tensor` or `np.ndarray` of shape `(num_videos, dim)`):
                One embedding per silent video (any float dtype or device; copied to CPU float32).
            video_ids (sequence of `str`):
                Distinct, non-empty video ids, in the order of `embeddings`.
            titles (sequence of `str`, *optional*):
                The videos' titles; missing titles are stored as `None`.
            durations (sequence of `float`, *optional*):
                Durations in seconds; adds a `duration` column.
            normalize (`bool`, *optional*, defaults to `True`):
                See the class documentation.
            index_kwargs:
                `string_factory`, `train_size`, `nprobe`, as in the constructor.

        Example:

        ```python
        >>> import torch
        >>> from datasets_ophvl.knowledge_base import SilentVideoBank

        >>> bank = SilentVideoBank.from_embeddings(torch.eye(3), ["a", "b", "c"], titles=["phaco", "vitrectomy", None])
        >>> bank.dataset[1]
        {'video_id': 'b', 'title': 'vitrectomy'}

        ```
        """
        video_ids = list(_check_sequence(video_ids, "video_ids"))
        n = len(video_ids)
        columns = {"video_id": video_ids}
        features = {"video_id": Value("string"), "title": Value("string")}
        columns["title"] = list(_check_sequence(titles, "titles", n)) if titles is not None else [None] * n
        if durations is not None:
            columns["duration"] = [None if d is None else float(d) for d in _check_sequence(durations, "durations", n)]
            features["duration"] = Value("float64")
        _check_video_ids(video_ids)
        for i, title in enumerate(columns["title"]):
            if title is not None and not isinstance(title, str):
                raise ValueError(f"`titles` must be strings or None, got {type(title).__name__} at position {i}.")
        dataset = Dataset.from_dict(columns, features=Features(features))
        return cls(dataset, embeddings, normalize=normalize, **index_kwargs)

    def _build_index(self, matrix: np.ndarray):
        """(Re)create the faiss index over `matrix` (already validated, float32, normalised if configured); an index
        that needs training (IVF, PQ, SQ) is trained on a seeded sample of `matrix` first."""
        if INDEX_NAME in self.dataset.list_indexes():
            self.dataset.drop_index(INDEX_NAME)
        name = self.string_factory or "Flat"
        index = None
        try:
            if self.string_factory is not None:
                index = faiss.index_factory(matrix.shape[1], self.string_factory, faiss.METRIC_INNER_PRODUCT)
                if not index.is_trained:
                    # Trained here rather than by datasets' `train_size`, which takes the *leading* rows: a bank is
                    # ordered by shard, so its first rows are one slice of the data, not a sample of it.
                    sample = training_sample(len(matrix), self._training_rows(index, len(matrix)))
                    index.train(matrix[sample])
            with _quiet_progress_bars():
                self.dataset.add_faiss_index_from_external_arrays(
                    matrix,
                    INDEX_NAME,
                    metric_type=faiss.METRIC_INNER_PRODUCT,
                    custom_index=index,  # None: datasets builds the exact IndexFlat (inner product)
                    batch_size=len(matrix),  # one `add` call: the matrix is already in memory
                )
        except RuntimeError as e:
            first = " ".join(str(e).strip().splitlines()[:1])[:300]
            raise ValueError(
                f"faiss could not build the index {name!r} over {matrix.shape[0]} vectors of dimension "
                f"{matrix.shape[1]}; check `string_factory`: expected a faiss index-factory string whose index "
                f"supports inner product and `add` (and, for IVF, at least nlist training vectors): {first}"
            ) from e
        index = self.faiss_index
        if _is_flat(index):
            # The index stores exactly `matrix`: keep a view of its storage instead of a second copy.
            self._vectors = _flat_vectors(index)
        else:
            self._vectors = matrix
            self._apply_search_parameters(index)

    def _training_rows(self, index, num_rows: int) -> int:
        """How many rows train `index`: `train_size` if given, else 64 per IVF list (k-means needs ~40 per centroid
        to be stable; faiss itself subsamples above 256) or 65,536 for other trained codecs (PQ, SQ); never more
        than the bank."""
        if self.train_size is not None:
            return min(self.train_size, num_rows)
        ivf = faiss.try_extract_index_ivf(index)
        wanted = 64 * ivf.nlist if ivf is not None else DEFAULT_TRAIN_ROWS
        return min(wanted, num_rows)

    def _apply_search_parameters(self, index) -> None:
        """`nprobe` (IVF: inverted lists visited per query) or, for HNSW, `efSearch` (candidates kept per query);
        the default `nprobe` is `nlist // 16`, the default `efSearch` faiss's own (16) raised to 64."""
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.nprobe = self.nprobe if self.nprobe is not None else max(1, ivf.nlist // 16)
            return
        hnsw = _hnsw_of(index)
        if hnsw is not None:
            hnsw.efSearch = self.nprobe if self.nprobe is not None else DEFAULT_EF_SEARCH

    # -- properties ------------------------------------------------------------------------------------------------

    @property
    def nprobe(self) -> int | None:
        """The search breadth of an approximate index (IVF `nprobe`, HNSW `efSearch`); `None`: the default.

        Setting it takes effect at once (no rebuild), e.g. to trade recall for speed: `bank.nprobe = 32`. It has no
        effect on the exact Flat index.
        """
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int | None) -> None:
        self._nprobe = None if value is None else _check_int(value, "nprobe", 1)
        if INDEX_NAME in self.dataset.list_indexes() and not _is_flat(self.faiss_index):
            self._apply_search_parameters(self.faiss_index)

    @property
    def faiss_index(self):
        """The raw faiss index (ids are row numbers). Prefer the bank's methods, which keep index and matrix in sync."""
        return self.dataset.get_index(INDEX_NAME).faiss_index

    @property
    def embeddings(self) -> torch.Tensor:
        """
        The current `(N, dim)` float32 embedding matrix as a CPU tensor that shares memory with the bank (no copy).

        It reflects later `update`s. Treat it as read-only: write through `update`, which validates, normalises and
        keeps an approximate index in sync. Index it (`bank.embeddings[indices]`) to get a copy of retrieved rows,
        e.g. as extra positives or negatives for the contrastive loss.
        """
        return torch.from_numpy(self._vectors)

    @property
    def dim(self) -> int:
        """Dimension of the embeddings."""
        return int(self._vectors.shape[1])

    @property
    def is_exact(self) -> bool:
        """Whether searches are exact (Flat index) rather than approximate."""
        return _is_flat(self.faiss_index)

    def __len__(self) -> int:
        return len(self.dataset)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_rows={len(self)}, dim={self.dim}, index={self.string_factory or 'Flat'!r}, "
            f"normalize={self.normalize})"
        )

    # -- search ----------------------------------------------------------------------------------------------------

    def search(self, queries, k: int, normalize_queries: bool | None = None) -> BankSearchResult:
        r"""
        Top-`k` maximum inner product search for a batch of queries.

        Args:
            queries (`torch.Tensor` or `np.ndarray` of shape `(batch_size, dim)`):
                E.g. title embeddings. Any float dtype or device; gradients are not tracked through the search.
            k (`int`):
                Number of rows to return per query, `1 <= k <= len(bank)`.
            normalize_queries (`bool`, *optional*):
                L2-normalise the queries first. Defaults to the bank's `normalize`, so a normalised bank returns
                cosine similarities.

        Returns:
            [`BankSearchResult`] `(scores, indices)`: `(batch_size, k)` float32 scores, best first, and int64 row
            numbers, on the device of `queries` when it is a tensor (else on the CPU). Ties are broken by faiss.

        Example:

        ```python
        >>> import torch
        >>> from datasets_ophvl.knowledge_base import SilentVideoBank

        >>> bank = SilentVideoBank.from_embeddings(torch.eye(4), ["a", "b", "c", "d"])
        >>> scores, indices = bank.search(torch.tensor([[0.0, 2.0, 1.0, 0.0]]), k=2)
        >>> indices.tolist(), [round(s, 3) for s in scores[0].tolist()]
        ([[1, 2]], [0.894, 0.447])

        ```
        """
        k = _check_int(k, "k", 1)
        if k > len(self):
            raise ValueError(f"`k` must be at most the number of rows in the bank ({len(self)}), got {k}.")
        device = queries.device if isinstance(queries, torch.Tensor) else torch.device("cpu")
        matrix = _as_matrix(queries, "queries", dim=self.dim, allow_empty=True)
        if self.normalize if normalize_queries is None else normalize_queries:
            _l2_normalize(matrix, "queries")
        if len(matrix) == 0:
            empty = torch.zeros(0, k, device=device)
            return BankSearchResult(empty, empty.long())
        # `search_batch` returns raw ids; `get_nearest_examples_batch` would also materialise every row as Python
        # objects, which costs more than the search itself.
        scores, indices = self.dataset.search_batch(INDEX_NAME, matrix, k=k)
        scores = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
        indices = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
        # Approximate indexes pad missing hits with id -1 and score -FLT_MAX; -inf says "no hit" unambiguously.
        scores[indices < 0] = -math.inf
        return BankSearchResult(scores.to(device), indices.to(device))

    # -- updates ---------------------------------------------------------------------------------------------------

    def update(self, rows, embeddings) -> None:
        r"""
        Replace the embeddings of `rows` in place (no rebuild for Flat and IVF indexes).

        In distributed training pass the rows and embeddings gathered from *all* processes, so that every process
        applies the identical update (see the class documentation).

        Args:
            rows (sequence of `int`, `np.ndarray` or `torch.Tensor` of shape `(num_updates,)`):
                Distinct row numbers in `[0, len(bank))`. An empty sequence is a no-op.
            embeddings (`torch.Tensor` or `np.ndarray` of shape `(num_updates, dim)`):
                The new embeddings, in the order of `rows`; normalised if the bank is.

        Example:

        ```python
        >>> import torch
        >>> from datasets_ophvl.knowledge_base import SilentVideoBank

        >>> bank = SilentVideoBank.from_embeddings(torch.eye(3), ["a", "b", "c"])
        >>> bank.update(torch.tensor([2]), torch.tensor([[3.0, 4.0, 0.0]]))
        >>> bank.embeddings[2]  # normalised
        tensor([0.6000, 0.8000, 0.0000])

        ```
        """
        rows = _as_rows(rows, len(self), "rows")
        matrix = _as_matrix(embeddings, "embeddings", dim=self.dim, allow_empty=True)
        if len(matrix) != len(rows):
            raise ValueError(
                f"`embeddings` must have one row per entry of `rows`: expected shape ({len(rows)}, {self.dim}), "
                f"got {tuple(matrix.shape)}."
            )
        if len(rows) == 0:
            return
        if self.normalize:
            _l2_normalize(matrix, "embeddings")
        index = self.faiss_index
        # For Flat the matrix is the index's own storage, so this write is the whole update; for every other index
        # it updates the bank's copy, from which the index is then patched or rebuilt.
        self._vectors[rows] = matrix
        if _is_flat(index):
            return
        if len(rows) == len(self):
            # Every row is new (the initial encoding, a full refresh): retrain, so that IVF centroids and PQ/SQ
            # codebooks describe the current embeddings rather than the ones they replaced.
            self._build_index(self._vectors)
            return
        codes = _flat_codes(index)
        if codes is not None:  # IndexScalarQuantizer / IndexPQ: rows are code slots, overwrite them in place
            codes[rows] = index.sa_encode(matrix)
            return
        if _is_ivf(index):
            try:
                removed = index.remove_ids(faiss.IDSelectorBatch(rows))
                if removed == len(rows):
                    index.add_with_ids(matrix, rows)  # ids stay row numbers
                    return
            except RuntimeError:  # a wrapper around the IVF index that cannot remove vectors: rebuild
                pass
        self._build_index(self._vectors)

    def rebuild(self) -> None:
        """
        Rebuild (and, for IVF/PQ, retrain) the index from the current embedding matrix.

        Never needed for the exact Flat index. An IVF index updated many times keeps the centroids learned from the
        first embeddings; as the vision tower drifts, rebuilding restores its recall.
        """
        self._build_index(np.array(self._vectors, dtype=np.float32, order="C", copy=True))

    # -- refresh schedule helpers ----------------------------------------------------------------------------------

    def rows_for_refresh(self, step: int, rows_per_step: int) -> np.ndarray:
        """
        The rows to re-encode at refresh `step`: a deterministic cyclic slice.

        A cycle is `ceil(len(bank) / rows_per_step)` consecutive steps; within a cycle the slices are disjoint and
        cover every row exactly once (the last slice of a cycle may be shorter), and the same step always gives the
        same rows on every process. `step` counts refreshes (e.g. `global_step // refresh_interval`), not
        optimiser steps.

        Args:
            step (`int`): Refresh counter, `>= 0`.
            rows_per_step (`int`): Rows re-encoded per refresh, `>= 1`; values `>= len(bank)` refresh every row.

        Returns:
            `np.ndarray` of int64 row numbers, ascending.
        """
        step = _check_int(step, "step", 0)
        rows_per_step = _check_int(rows_per_step, "rows_per_step", 1)
        steps_per_cycle = math.ceil(len(self) / rows_per_step)
        start = (step % steps_per_cycle) * rows_per_step
        return np.arange(start, min(start + rows_per_step, len(self)), dtype=np.int64)

    @staticmethod
    def shard_rows(rows, rank: int, world_size: int) -> np.ndarray:
        """
        This process's contiguous share of `rows`.

        The shards of ranks `0 .. world_size - 1` partition `rows`, differ in length by at most one (the first
        `len(rows) % world_size` ranks get one more), and concatenated in rank order give `rows` back, so embeddings
        gathered across processes line up with `rows`.

        Args:
            rows (sequence of `int`): E.g. from `rows_for_refresh`.
            rank (`int`): This process's index, `0 <= rank < world_size`.
            world_size (`int`): Number of processes, `>= 1`.

        Returns:
            `np.ndarray` of int64 row numbers.
        """
        world_size = _check_int(world_size, "world_size", 1)
        rank = _check_int(rank, "rank", 0)
        if rank >= world_size:
            raise ValueError(f"`rank` must be in [0, world_size) = [0, {world_size}), got {rank}.")
        array = _to_numpy(rows, "rows") if not isinstance(rows, range) else np.arange(rows.start, rows.stop, rows.step)
        if array.ndim != 1 or (array.size and (array.dtype == bool or not np.issubdtype(array.dtype, np.integer))):
            raise ValueError(
                f"`rows` must be a 1-D sequence of integer row numbers, got shape {array.shape}, dtype {array.dtype}."
            )
        array = array.astype(np.int64, copy=False)
        base, extra = divmod(len(array), world_size)
        start = rank * base + min(rank, extra)
        return array[start : start + base + (rank < extra)].copy()

    # -- persistence -----------------------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> None:
        """
        Save the bank to a local folder: the dataset (`save_to_disk`), the faiss index (`save_faiss_index`), the
        embedding matrix when the index does not hold it exactly (every index but Flat), and a small JSON config.

        The folder is written under a temporary name and swapped in at the end, so an interrupted save never leaves
        a half-written bank behind, and re-saving over the folder a bank was loaded from is safe.

        Example:

        ```python
        >>> import tempfile, torch
        >>> from datasets_ophvl.knowledge_base import SilentVideoBank

        >>> bank = SilentVideoBank.from_embeddings(torch.randn(10, 4), [str(i) for i in range(10)])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     bank.save(f"{tmp}/bank")
        ...     reloaded = SilentVideoBank.load(f"{tmp}/bank")
        >>> torch.equal(reloaded.embeddings, bank.embeddings)
        True

        ```
        """
        from modeling_ophclip.saving import staged_folder  # on use: importing the model package loads transformers

        with staged_folder(folder, "tmp") as tmp:
            # save_to_disk refuses datasets with attached indexes: save an index-free Dataset over the same table.
            plain = Dataset(self.dataset.data, info=self.dataset.info, split=self.dataset.split)
            plain.save_to_disk(str(tmp / DATASET_DIR))
            self.dataset.save_faiss_index(INDEX_NAME, str(tmp / INDEX_FILE))
            if not _is_flat(self.faiss_index):
                np.save(tmp / EMBEDDINGS_FILE, self._vectors)
            config = {
                "format_version": FORMAT_VERSION,
                "num_rows": len(self),
                "dim": self.dim,
                "metric": "inner_product",
                "normalize": self.normalize,
                "string_factory": self.string_factory,
                "train_size": self.train_size,
                "nprobe": self.nprobe,
                # `load` checks both: the matrix searches use, and every file (index, dataset, embeddings.npy).
                "vectors_sha256": _sha256_vectors(self._vectors),
                "files_sha256": {name: _sha256_file(tmp / name) for name in _saved_files(tmp)},
            }
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "SilentVideoBank":
        """Load a bank written by [`~SilentVideoBank.save`]; searches give the same results as the saved bank.

        The files are checked against the sha256 sums the config holds before they are read, and the loaded matrix
        against the sha256 of the saved one, so a corrupted bank is refused instead of giving wrong search results.

        Raises:
            ValueError: the folder is not a saved bank, its config lacks a field or has a wrong one, a file is
                missing, changed or unreadable, or the index does not match the config; the message names the
                folder (and the file) and says what was expected.
        """
        _require_faiss()
        folder = Path(folder)
        try:
            return cls._load(folder)
        except _BadBank as error:
            raise ValueError(f"cannot load the memory bank {folder}: {error}") from None
        except MemoryError:
            raise
        except Exception as error:  # faiss's RuntimeError, datasets' and numpy's errors, OSError: name the bank
            lines = str(error).strip().splitlines()
            text = " ".join(lines[0].split())[:300] if lines else ""
            raise ValueError(f"cannot load the memory bank {folder}: {type(error).__name__}: {text}") from error

    @classmethod
    def _load(cls, folder: Path) -> "SilentVideoBank":
        config_path = folder / CONFIG_NAME
        if not config_path.is_file():
            raise _BadBank(f"`folder` must be a bank saved with SilentVideoBank.save; {config_path} does not exist.")
        config = _read_config(config_path)
        if config["format_version"] >= 2:
            _check_files(folder, config)
        else:
            logger.warning("the memory bank %s was saved without checksums (format 1): its vectors cannot be "
                           "verified; save it again to add them", folder)
        # The metadata is small (ids, titles): keep it in memory rather than memory-mapping files that a later
        # `save` to the same folder replaces.
        dataset = load_from_disk(str(folder / DATASET_DIR), keep_in_memory=True)
        if len(dataset) != config["num_rows"]:
            raise _BadBank(f"{folder / DATASET_DIR} has {len(dataset)} rows, {config_path} says {config['num_rows']}")
        dataset.load_faiss_index(INDEX_NAME, str(folder / INDEX_FILE))  # checks ntotal == len(dataset)
        index = dataset.get_index(INDEX_NAME).faiss_index
        if index.d != config["dim"] or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise _BadBank(f"{folder / INDEX_FILE} does not match {config_path} (dimension {index.d} vs "
                           f"{config['dim']}, or a metric other than inner product)")
        if _is_flat(index):
            vectors = _flat_vectors(index)
        else:
            vectors = np.load(folder / EMBEDDINGS_FILE, allow_pickle=False)
            if vectors.shape != (len(dataset), config["dim"]) or vectors.dtype != np.float32:
                raise _BadBank(
                    f"{folder / EMBEDDINGS_FILE} has shape {vectors.shape} and dtype {vectors.dtype}, expected "
                    f"float32 ({len(dataset)}, {config['dim']})"
                )
        if config["format_version"] >= 2 and _sha256_vectors(vectors) != config["vectors_sha256"]:
            where = folder / (INDEX_FILE if _is_flat(index) else EMBEDDINGS_FILE)
            raise _BadBank(f"the embedding vectors read from {where} do not match the sha256 in {config_path}; "
                           "expected the vectors as saved")
        bank = cls.__new__(cls)
        bank.dataset = dataset
        bank.normalize = config["normalize"]
        bank.string_factory = config["string_factory"]
        bank.train_size = config["train_size"]
        bank.nprobe = config["nprobe"]
        bank._vectors = vectors
        return bank


class _BadBank(ValueError):
    """A saved bank that cannot be loaded; `SilentVideoBank.load` adds the folder to the message."""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_vectors(vectors: np.ndarray) -> str:
    """The sha256 of the `(N, dim)` float32 matrix's bytes in row-major order."""
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype=np.float32).data).hexdigest()


def _saved_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != CONFIG_NAME)


def _read_config(config_path: Path) -> dict:
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:
        raise _BadBank(f"{config_path} is not valid JSON ({type(error).__name__}); expected the config that "
                       "SilentVideoBank.save writes") from None
    if not isinstance(config, dict):
        raise _BadBank(f"{config_path} holds a {type(config).__name__}; expected a JSON object")
    version = config.get("format_version")
    if type(version) is not int or version not in (1, FORMAT_VERSION):
        raise _BadBank(f"unsupported bank format_version {version!r} in {config_path}; expected 1 or {FORMAT_VERSION}")
    checks = dict(_CONFIG_TYPES)
    if version >= 2:
        checks["vectors_sha256"] = ((str,), "the sha256 of the embedding matrix")
        checks["files_sha256"] = ((dict,), "an object of file names and their sha256")
    for key, (types, expected) in checks.items():
        if key not in config:
            raise _BadBank(f"{config_path} has no `{key}`; expected {expected}")
        value = config[key]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise _BadBank(f"{config_path}: `{key}` is {value!r}; expected {expected}")
    if config["dim"] < 1 or config["num_rows"] < 1:
        raise _BadBank(f"{config_path}: `dim` {config['dim']} and `num_rows` {config['num_rows']}; expected both >= 1")
    return config


def _check_files(folder: Path, config: dict) -> None:
    """Every file the config lists exists with its sha256."""
    expected = config["files_sha256"]
    if not all(isinstance(name, str) and isinstance(digest, str) for name, digest in expected.items()) or any(
            name.startswith("/") or ".." in name.split("/") for name in expected):
        raise _BadBank(f"{folder / CONFIG_NAME}: `files_sha256` is not an object of relative file names and sha256 "
                       "sums; expected the one SilentVideoBank.save writes")
    present = _saved_files(folder)
    missing = sorted(set(expected) - set(present))
    if missing:
        raise _BadBank(f"missing {', '.join(missing)}; expected the files listed in {CONFIG_NAME}")
    for name in sorted(expected):
        actual = _sha256_file(folder / name)
        if actual != expected[name]:
            raise _BadBank(f"{folder / name} is corrupted: its sha256 is {actual}, {CONFIG_NAME} says "
                           f"{expected[name]}; expected the file as saved")


def _check_sequence(values, name: str, expected_len: int | None = None):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ValueError(f"`{name}` must be a sequence (e.g. a list), got {type(values).__name__}.")
    if expected_len is not None and len(values) != expected_len:
        raise ValueError(f"`{name}` must have one entry per video id ({expected_len}), got {len(values)}.")
    return values


def _check_video_ids(video_ids) -> None:
    if len(video_ids) == 0:
        raise ValueError("`video_ids` is empty; a bank needs at least one silent video.")
    for i, video_id in enumerate(video_ids):
        if not isinstance(video_id, str) or not video_id:
            raise ValueError(f"`video_ids` must be non-empty strings, got {video_id!r} at position {i}.")
    if len(set(video_ids)) != len(video_ids):
        seen, duplicates = set(), []
        for video_id in video_ids:
            if video_id in seen and video_id not in duplicates:
                duplicates.append(video_id)
            seen.add(video_id)
        raise ValueError(f"`video_ids` must be distinct, got duplicates {_preview(duplicates)}.")


__all__ = ["BankSearchResult", "SilentVideoBank", "training_sample"]
