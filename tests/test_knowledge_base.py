"""Tests of the silent-video memory bank (`datasets_ophvl.knowledge_base`): exactness against brute force, in-place
updates (Flat, IVF, rebuild), persistence, the refresh schedule helpers, distributed consistency and input checks."""

import doctest
import gc
import hashlib
import json

import numpy as np
import pytest
import torch


faiss = pytest.importorskip("faiss")  # an optional dependency (curation extra); the bank needs it

from datasets import Dataset  # noqa: E402

import datasets_ophvl.knowledge_base as knowledge_base  # noqa: E402
from datasets_ophvl.knowledge_base import SilentVideoBank  # noqa: E402


N, D, B, K = 2000, 64, 37, 16


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ids(n):
    return [f"silent-{i:05d}" for i in range(n)]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, D)).astype(np.float32), rng.standard_normal((B, D)).astype(np.float32)


def assert_matches_brute_force(scores, indices, queries, matrix, k, atol=1e-5):
    """`(scores, indices)` is the exact top-k of `queries @ matrix.T`, up to the order of tied rows."""
    scores, indices = np.asarray(scores), np.asarray(indices)
    brute = queries.astype(np.float64) @ matrix.astype(np.float64).T
    expected = -np.sort(-brute, axis=1)[:, :k]
    np.testing.assert_allclose(scores, expected, atol=atol, rtol=0)
    assert (indices >= 0).all() and (indices < len(matrix)).all()
    for q in range(len(queries)):
        assert len(set(indices[q].tolist())) == k
        # each returned row really has the returned score...
        np.testing.assert_allclose(brute[q, indices[q]], scores[q], atol=atol, rtol=0)
        # ...and, unless the k-th and (k+1)-th scores tie, the returned set is the brute-force set
        order = np.argsort(-brute[q])
        if k == len(matrix) or brute[q, order[k - 1]] - brute[q, order[k]] > atol:
            assert set(indices[q].tolist()) == set(order[:k].tolist())


# -- exactness -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_torch", [True, False])
def test_flat_search_equals_brute_force(data, as_torch):
    X, Q = data
    bank = SilentVideoBank.from_embeddings(torch.from_numpy(X) if as_torch else X, _ids(N))
    assert bank.is_exact and len(bank) == N and bank.dim == D
    scores, indices = bank.search(torch.from_numpy(Q) if as_torch else Q, k=K)
    assert isinstance(scores, torch.Tensor) and isinstance(indices, torch.Tensor)
    assert scores.shape == indices.shape == (B, K)
    assert scores.dtype == torch.float32 and indices.dtype == torch.int64
    # normalised bank + normalised queries: cosine similarity
    assert_matches_brute_force(scores, indices, _unit(Q), _unit(X), K)
    np.testing.assert_allclose(bank.embeddings.numpy(), _unit(X), atol=1e-6)


def test_unnormalized_bank_is_raw_mips(data):
    X, Q = data
    scaled = X * np.linspace(0.1, 3.0, N, dtype=np.float32)[:, None]  # norms matter for MIPS
    bank = SilentVideoBank.from_embeddings(scaled, _ids(N), normalize=False)
    scores, indices = bank.search(Q, k=K)
    assert_matches_brute_force(scores, indices, Q, scaled, K, atol=1e-4)
    # normalising the queries rescales the scores but retrieves the same rows
    scores_n, indices_n = bank.search(Q, k=K, normalize_queries=True)
    assert_matches_brute_force(scores_n, indices_n, _unit(Q), scaled, K, atol=1e-4)
    assert torch.equal(indices_n, indices)


def test_search_accepts_training_tensors(data):
    X, Q = data
    bank = SilentVideoBank.from_embeddings(X, _ids(N))
    q = torch.from_numpy(Q).requires_grad_()
    reference = bank.search(Q, k=K)
    for queries in (q, q.to(torch.bfloat16), q.double()):
        scores, indices = bank.search(queries, k=K)
        assert scores.device == queries.device and not scores.requires_grad
    assert torch.equal(bank.search(q, k=K).indices, reference.indices)
    empty = bank.search(np.zeros((0, D), np.float32), k=3)
    assert empty.scores.shape == empty.indices.shape == (0, 3)


def test_k_equal_to_bank_size_ranks_everything():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20, 8)).astype(np.float32)
    bank = SilentVideoBank.from_embeddings(X, _ids(20))
    scores, indices = bank.search(X[:3], k=20)
    assert_matches_brute_force(scores, indices, _unit(X[:3]), _unit(X), 20)


# -- updates ---------------------------------------------------------------------------------------------------------


def test_flat_update_in_place(data):
    X, Q = data
    bank = SilentVideoBank.from_embeddings(X, _ids(N))
    index_before = bank.faiss_index
    view_before = bank.embeddings  # a training loop's reference to the bank vectors
    rng = np.random.default_rng(2)
    rows = rng.choice(N, size=512, replace=False)
    new = rng.standard_normal((512, D)).astype(np.float32)
    bank.update(torch.from_numpy(rows), torch.from_numpy(new))

    assert bank.faiss_index is index_before and bank.faiss_index.ntotal == N  # no rebuild, no append
    expected = _unit(X)
    expected[rows] = _unit(new)
    np.testing.assert_allclose(bank.embeddings.numpy(), expected, atol=1e-6)
    assert torch.equal(view_before, bank.embeddings)  # the old view sees the update: it is the index's storage

    # the new vector of a refreshed row is found as that row, with cosine 1
    scores, indices = bank.search(new[:5], k=1)
    assert indices[:, 0].tolist() == rows[:5].tolist()
    np.testing.assert_allclose(scores[:, 0].numpy(), 1.0, atol=1e-5)
    # and the whole search equals brute force over the updated matrix
    scores, indices = bank.search(Q, k=K)
    assert_matches_brute_force(scores, indices, _unit(Q), expected, K)


def test_update_with_no_rows_is_a_noop(data):
    X, _ = data
    bank = SilentVideoBank.from_embeddings(X[:10], _ids(10))
    before = bank.embeddings.clone()
    bank.update([], np.zeros((0, D), np.float32))
    assert torch.equal(bank.embeddings, before)


def test_ivf_update_keeps_ids_equal_to_rows(data):
    X, Q = data
    bank = SilentVideoBank.from_embeddings(X, _ids(N), string_factory="IVF16,Flat", nprobe=16)
    assert not bank.is_exact
    ivf = faiss.extract_index_ivf(bank.faiss_index)
    assert ivf.nlist == 16 and ivf.nprobe == 16  # probing every list makes IVF-Flat exact: comparable to brute force
    rng = np.random.default_rng(3)
    rows = rng.choice(N, size=300, replace=False)
    new = rng.standard_normal((300, D)).astype(np.float32)
    bank.update(rows, new)

    assert bank.faiss_index.ntotal == N
    expected = _unit(X)
    expected[rows] = _unit(new)
    np.testing.assert_allclose(bank.embeddings.numpy(), expected, atol=1e-6)
    scores, indices = bank.search(new, k=1)
    assert indices[:, 0].tolist() == rows.tolist()  # the ids of re-added vectors are still their row numbers
    scores, indices = bank.search(Q, k=K)
    assert_matches_brute_force(scores, indices, _unit(Q), expected, K)
    # the stale vectors are gone: querying an old vector no longer returns its row with cosine 1
    scores, indices = bank.search(X[rows[:20]], k=1)
    assert not ((indices[:, 0] == torch.from_numpy(rows[:20])) & (scores[:, 0] > 0.999)).any()

    bank.rebuild()  # retrains the centroids on the current matrix
    assert faiss.extract_index_ivf(bank.faiss_index).nprobe == 16
    assert_matches_brute_force(*bank.search(Q, k=K), _unit(Q), expected, K)


def test_ivf_default_nprobe_and_approximate_results(data):
    X, Q = data
    bank = SilentVideoBank.from_embeddings(X, _ids(N), string_factory="IVF32,Flat")
    assert faiss.extract_index_ivf(bank.faiss_index).nprobe == 2  # nlist // 16
    scores, indices = bank.search(Q, k=K)
    valid = indices >= 0
    assert torch.isinf(scores[~valid]).all()  # missing hits are marked, not given fake scores
    assert (indices[valid] < N).all()


@pytest.mark.parametrize(
    "string_factory",
    [
        "HNSW16,Flat",  # no removal in HNSW: rebuilt
        "IVF8,Flat,RFlat",  # an IVF inside a refine wrapper that cannot remove: rebuilt
        "PCA32,IVF8,Flat",  # an IVF behind a pre-transform: patched in place
    ],
)
def test_other_indexes_update(data, string_factory):
    X, _ = data
    bank = SilentVideoBank.from_embeddings(X[:500], _ids(500), string_factory=string_factory, nprobe=8)
    rng = np.random.default_rng(4)
    new = rng.standard_normal((3, D)).astype(np.float32)
    index_before = bank.faiss_index
    bank.update([10, 20, 30], new)
    assert (bank.faiss_index is index_before) == string_factory.startswith("PCA")
    assert bank.faiss_index.ntotal == 500
    np.testing.assert_allclose(bank.embeddings[[10, 20, 30]].numpy(), _unit(new), atol=1e-6)
    if not string_factory.startswith("PCA"):  # a 32-d projection of random 64-d vectors is too lossy to test ranks
        assert bank.search(new, k=1).indices[:, 0].tolist() == [10, 20, 30]


def test_embedding_view_keeps_the_index_alive(data):
    X, _ = data
    bank = SilentVideoBank.from_embeddings(X[:100], _ids(100))
    view = bank.embeddings
    expected = view.clone()
    del bank
    gc.collect()
    _ = [np.ones((100, D), np.float32) for _ in range(50)]  # churn the allocator
    assert torch.equal(view, expected)


# -- persistence -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("string_factory", [None, "IVF16,Flat"])
def test_save_load_round_trip(tmp_path, data, string_factory):
    X, Q = data
    bank = SilentVideoBank.from_embeddings(
        X, _ids(N), titles=[f"title {i}" for i in range(N)], durations=[float(i) for i in range(N)],
        string_factory=string_factory, nprobe=4 if string_factory else None,
    )
    bank.update([5, 6], np.ones((2, D), np.float32))  # saved state includes updates
    bank.save(tmp_path / "bank")
    loaded = SilentVideoBank.load(tmp_path / "bank")

    assert len(loaded) == N and loaded.dim == D and loaded.normalize and loaded.string_factory == string_factory
    assert loaded.dataset.column_names == ["video_id", "title", "duration"]
    assert loaded.dataset[7] == {"video_id": "silent-00007", "title": "title 7", "duration": 7.0}
    assert torch.equal(loaded.embeddings, bank.embeddings)
    for a, b in zip(bank.search(Q, k=K), loaded.search(Q, k=K)):
        assert torch.equal(a, b)
    if string_factory:
        assert faiss.extract_index_ivf(loaded.faiss_index).nprobe == 4
    # Flat: the index holds the exact matrix, nothing else is written
    assert (tmp_path / "bank" / "embeddings.npy").exists() == (string_factory is not None)

    # a loaded bank updates like a built one, and re-saving over its own folder is safe
    new = np.random.default_rng(5).standard_normal((1, D)).astype(np.float32)
    loaded.update([42], new)
    assert loaded.search(new, k=1).indices.item() == 42
    loaded.save(tmp_path / "bank")
    again = SilentVideoBank.load(tmp_path / "bank")
    assert torch.equal(again.embeddings, loaded.embeddings)
    assert again.dataset[42]["video_id"] == "silent-00042"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank"]  # no temporary folders left behind


def test_load_rejects_a_folder_that_is_not_a_bank(tmp_path):
    with pytest.raises(ValueError, match="`folder`"):
        SilentVideoBank.load(tmp_path)


# -- refresh schedule helpers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, rows_per_step", [(1000, 300), (1000, 250), (7, 1), (7, 7), (7, 100)])
def test_rows_for_refresh_covers_every_row_once_per_cycle(n, rows_per_step):
    bank = SilentVideoBank.from_embeddings(np.eye(n, 8, dtype=np.float32) + 1, _ids(n))
    cycle = -(-n // rows_per_step)
    for c in range(3):
        slices = [bank.rows_for_refresh(c * cycle + s, rows_per_step) for s in range(cycle)]
        assert all(0 < len(s) <= rows_per_step and s.dtype == np.int64 for s in slices)
        assert np.array_equal(np.sort(np.concatenate(slices)), np.arange(n))  # disjoint and complete
    assert np.array_equal(bank.rows_for_refresh(5, rows_per_step), bank.rows_for_refresh(5 + cycle, rows_per_step))


@pytest.mark.parametrize("num_rows, world_size", [(512, 2), (513, 4), (3, 8), (0, 2), (10, 1)])
def test_shard_rows_partitions(num_rows, world_size):
    rows = np.arange(100, 100 + num_rows)
    shards = [SilentVideoBank.shard_rows(rows, r, world_size) for r in range(world_size)]
    assert np.array_equal(np.concatenate(shards), rows)  # in rank order the shards give `rows` back
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    assert SilentVideoBank.shard_rows(torch.from_numpy(rows), 0, world_size).tolist() == shards[0].tolist()


def test_gathered_updates_keep_process_copies_identical(tmp_path, data):
    """Two 'processes' load the same bank, each encodes its shard, and both apply the gathered update."""
    X, Q = data
    SilentVideoBank.from_embeddings(X, _ids(N)).save(tmp_path / "bank")
    world = 2
    processes = [SilentVideoBank.load(tmp_path / "bank") for _ in range(world)]
    rng = np.random.default_rng(6)
    fresh = rng.standard_normal((N, D)).astype(np.float32)  # what the current vision tower would give
    for step in range(4):
        rows = processes[0].rows_for_refresh(step, rows_per_step=333)
        shards = [SilentVideoBank.shard_rows(rows, rank, world) for rank in range(world)]
        # the class docstring's recipe: pad each process's encodings to the longest shard, all_gather in rank order,
        # strip the padding (333 rows over 2 processes: shards of 167 and 166)
        sizes = [len(s) for s in shards]
        padded = torch.cat([torch.nn.functional.pad(torch.from_numpy(fresh[s]), (0, 0, 0, max(sizes) - len(s)))
                            for s in shards])
        gathered = torch.cat([chunk[:n] for chunk, n in zip(padded.split(max(sizes)), sizes)])
        for bank in processes:
            bank.update(rows, gathered)
    assert torch.equal(processes[0].embeddings, processes[1].embeddings)
    for a, b in zip(processes[0].search(Q, k=K), processes[1].search(Q, k=K)):
        assert torch.equal(a, b)
    refreshed = np.arange(4 * 333)
    np.testing.assert_allclose(processes[0].embeddings[refreshed].numpy(), _unit(fresh[refreshed]), atol=1e-6)


# -- construction from a dataset -------------------------------------------------------------------------------------


def test_constructor_leaves_the_callers_dataset_untouched():
    source = Dataset.from_dict({"video_id": ["a", "b", "c", "d"], "title": ["t0", "t1", "t2", "t3"]})
    view = source.select([3, 1])  # an indices mapping: row numbers must follow the view
    bank = SilentVideoBank(view, np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert source.list_indexes() == [] and view.list_indexes() == []
    assert bank.dataset["video_id"][:] == ["d", "b"]
    assert bank.search(np.array([[0.0, 1.0]]), k=1).indices.item() == 1


# -- input validation ------------------------------------------------------------------------------------------------


BAD_BUILDS = [
    ("empty bank", dict(embeddings=np.zeros((0, 4)), video_ids=[]), "`video_ids` is empty"),
    ("1-D embeddings", dict(embeddings=np.ones(4), video_ids=["a"]), r"`embeddings` must be a 2-D array"),
    ("count mismatch", dict(embeddings=np.ones((3, 4)), video_ids=["a", "b"]), r"`embeddings` must have one row per"),
    ("NaN", dict(embeddings=np.array([[1.0, np.nan], [1.0, 0.0]]), video_ids=["a", "b"]), "`embeddings` contains NaN"),
    ("inf", dict(embeddings=np.array([[1.0, np.inf], [1.0, 0.0]]), video_ids=["a", "b"]), "NaN or infinite"),
    ("zero vector", dict(embeddings=np.array([[0.0, 0.0], [1.0, 0.0]]), video_ids=["a", "b"]), "zero"),
    ("duplicate ids", dict(embeddings=np.eye(3), video_ids=["a", "b", "a"]), r"`video_ids` must be distinct.*'a'"),
    ("non-string id", dict(embeddings=np.eye(2), video_ids=["a", 3]), "`video_ids` must be non-empty strings"),
    ("titles length", dict(embeddings=np.eye(2), video_ids=["a", "b"], titles=["x"]), "`titles` must have one entry"),
    ("string ids", dict(embeddings=np.eye(2), video_ids="ab"), "`video_ids` must be a sequence"),
    ("complex", dict(embeddings=np.eye(2) * 1j, video_ids=["a", "b"]), "`embeddings` must hold real numbers"),
    ("IVF too small", dict(embeddings=np.eye(8), video_ids=list("abcdefgh"), string_factory="IVF64,Flat"), "faiss"),
    ("unknown factory", dict(embeddings=np.eye(2), video_ids=["a", "b"], string_factory="Nope"), "`string_factory`"),
    ("IDMap factory", dict(embeddings=np.eye(2), video_ids=["a", "b"], string_factory="IDMap,Flat"), "faiss could"),
    ("bad nprobe", dict(embeddings=np.eye(2), video_ids=["a", "b"], nprobe=0), "`nprobe` must be an integer >= 1"),
]


@pytest.mark.parametrize("kwargs, match", [case[1:] for case in BAD_BUILDS], ids=[case[0] for case in BAD_BUILDS])
def test_bad_construction_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SilentVideoBank.from_embeddings(**kwargs)


def test_bad_dataset_raises():
    with pytest.raises(ValueError, match=r"`dataset` must have the columns .*missing \['title'\]"):
        SilentVideoBank(Dataset.from_dict({"video_id": ["a"]}), np.ones((1, 2)))
    indexed = Dataset.from_dict({"video_id": ["a"], "title": ["t"]})
    indexed.add_faiss_index_from_external_arrays(np.ones((1, 2), np.float32), "other")
    with pytest.raises(ValueError, match="`dataset` must have no attached index"):
        SilentVideoBank(indexed, np.ones((1, 2)))


@pytest.fixture(scope="module")
def small_bank():
    return SilentVideoBank.from_embeddings(np.random.default_rng(7).standard_normal((10, 4)), _ids(10))


@pytest.mark.parametrize(
    "queries, k, match",
    [
        (np.ones((2, 5)), 3, r"`queries` must have shape \(num_vectors, 4\)"),
        (np.ones(4), 3, "`queries` must be a 2-D array"),
        (np.ones((2, 4)), 11, r"`k` must be at most the number of rows in the bank \(10\)"),
        (np.ones((2, 4)), 0, "`k` must be an integer >= 1"),
        (np.ones((2, 4)), 2.0, "`k` must be an integer >= 1"),
        (np.array([[1.0, np.nan, 0, 0]]), 3, "`queries` contains NaN"),
        (np.zeros((1, 4)), 3, "`queries` rows \\[0\\] have zero"),
    ],
)
def test_bad_search_raises(small_bank, queries, k, match):
    with pytest.raises(ValueError, match=match):
        small_bank.search(queries, k=k)


@pytest.mark.parametrize(
    "rows, embeddings, match",
    [
        ([10], np.ones((1, 4)), r"`rows` must be row numbers in \[0, 10\), got \[10\]"),
        ([-1], np.ones((1, 4)), r"`rows` must be row numbers in \[0, 10\)"),
        ([1, 1], np.ones((2, 4)), r"`rows` must not repeat a row.*\[1\]"),
        ([1.5], np.ones((1, 4)), "`rows` must hold integer row numbers"),
        ([True, False], np.ones((2, 4)), "boolean masks are not accepted"),
        ([[1]], np.ones((1, 4)), "`rows` must be a 1-D sequence"),
        ([1, 2], np.ones((1, 4)), r"`embeddings` must have one row per entry of `rows`: expected shape \(2, 4\)"),
        ([1], np.ones((1, 3)), r"`embeddings` must have shape \(num_vectors, 4\)"),
        ([1], np.array([[np.inf, 0, 0, 0]]), "`embeddings` contains NaN or infinite"),
    ],
)
def test_bad_update_raises_and_leaves_the_bank_unchanged(small_bank, rows, embeddings, match):
    before = small_bank.embeddings.clone()
    with pytest.raises(ValueError, match=match):
        small_bank.update(rows, embeddings)
    assert torch.equal(small_bank.embeddings, before)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda b: b.rows_for_refresh(-1, 3), "`step` must be an integer >= 0"),
        (lambda b: b.rows_for_refresh(0, 0), "`rows_per_step` must be an integer >= 1"),
        (lambda b: SilentVideoBank.shard_rows([1, 2], 2, 2), r"`rank` must be in \[0, world_size\)"),
        (lambda b: SilentVideoBank.shard_rows([1, 2], 0, 0), "`world_size` must be an integer >= 1"),
        (lambda b: SilentVideoBank.shard_rows([0.5], 0, 1), "`rows` must be a 1-D sequence of integer"),
    ],
)
def test_bad_schedule_arguments_raise(small_bank, call, match):
    with pytest.raises(ValueError, match=match):
        call(small_bank)


def test_docstring_examples():
    result = doctest.testmod(knowledge_base, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# -- corrupted and incomplete banks (issue 15, D17) ------------------------------------------------------------------


def _saved_bank(tmp_path, string_factory=None):
    rng = np.random.default_rng(3)
    bank = SilentVideoBank.from_embeddings(rng.standard_normal((64, 8)).astype(np.float32), _ids(64),
                                           string_factory=string_factory, nprobe=2 if string_factory else None)
    bank.save(tmp_path / "bank")
    return bank, tmp_path / "bank"


def _load_error(folder) -> str:
    with pytest.raises(ValueError) as error:
        SilentVideoBank.load(folder)
    message = str(error.value)
    assert message.startswith(f"cannot load the memory bank {folder}: ") and "\n" not in message, message
    return message


def _swap_rows(data: bytes, matrix: np.ndarray, a: int, b: int) -> bytes:
    """`data` with the bytes of row `a` of `matrix` replaced by those of row `b` (a valid file, wrong vectors)."""
    row_a, row_b = matrix[a].tobytes(), matrix[b].tobytes()
    assert data.count(row_a) == 1
    return data.replace(row_a, row_b)


@pytest.mark.parametrize("string_factory, file", [(None, "index.faiss"), ("IVF4,Flat", "embeddings.npy")])
def test_load_refuses_corrupted_vector_bytes(tmp_path, string_factory, file):
    """D17: vector bytes changed on disk (still a well-formed file) loaded silently and gave wrong search results."""
    bank, folder = _saved_bank(tmp_path, string_factory)
    path = folder / file
    path.write_bytes(_swap_rows(path.read_bytes(), bank.embeddings.numpy(), 5, 9))
    message = _load_error(folder)
    assert f"{path} is corrupted" in message and "sha256" in message

    # Even with the file's sum in the config made to match, the vectors' own sum does not.
    config = json.loads((folder / "bank_config.json").read_text())
    config["files_sha256"][file] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "bank_config.json").write_text(json.dumps(config))
    message = _load_error(folder)
    assert "embedding vectors read from" in message and "do not match the sha256" in message


@pytest.mark.parametrize("change, expected", [
    (lambda config: config.pop("dim"), "has no `dim`; expected the embedding dimension"),
    (lambda config: config.update(dim="8"), "`dim` is '8'; expected the embedding dimension"),
    (lambda config: config.pop("vectors_sha256"), "has no `vectors_sha256`"),
    (lambda config: config.update(format_version=7), "unsupported bank format_version 7"),
    (lambda config: config.update(dim=16), "does not match"),
], ids=["no-dim", "dim-string", "no-checksum", "future-version", "other-dim"])
def test_load_names_the_bank_and_the_config_problem(tmp_path, change, expected):
    """D17: a config without `dim` was a bare `KeyError: 'dim'`."""
    _, folder = _saved_bank(tmp_path)
    config = json.loads((folder / "bank_config.json").read_text())
    change(config)
    (folder / "bank_config.json").write_text(json.dumps(config))
    assert expected in _load_error(folder)


def test_load_names_the_bank_on_missing_files_and_raw_faiss_errors(tmp_path, caplog):
    """D17: faiss's own errors did not name the bank's path. A truncated index of a bank saved without checksums
    (format 1, which still loads, with a warning) reaches faiss; a missing file is named."""
    import logging

    bank, folder = _saved_bank(tmp_path, "IVF4,Flat")
    (folder / "embeddings.npy").unlink()
    assert "missing embeddings.npy" in _load_error(folder)

    bank, folder = _saved_bank(tmp_path / "v1")
    config = json.loads((folder / "bank_config.json").read_text())
    config = {k: v for k, v in config.items() if not k.endswith("sha256")} | {"format_version": 1}
    (folder / "bank_config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="datasets_ophvl"):
        assert torch.equal(SilentVideoBank.load(folder).embeddings, bank.embeddings)
    assert "saved without checksums" in caplog.text and str(folder) in caplog.text
    index = folder / "index.faiss"
    index.write_bytes(index.read_bytes()[:100])
    message = _load_error(folder)
    assert "RuntimeError" in message and "Traceback" not in message

    (folder / "bank_config.json").write_text("{\"format_version\": 1, ")
    assert "bank_config.json is not valid JSON" in _load_error(folder)


# -- approximate indexes: training sample, refresh per index kind, search breadth -------------------------------------


def _two_sided(n, d, rng):
    """Rows 0 .. n/2 - 1 near +e0, the rest near -e0: the leading rows are not a sample of the bank."""
    X = 0.1 * rng.standard_normal((n, d)).astype(np.float32)
    X[: n // 2, 0] += 1.0
    X[n // 2 :, 0] -= 1.0
    return X


def _centroids(bank):
    quantizer = faiss.extract_index_ivf(bank.faiss_index).quantizer
    return quantizer.reconstruct_n(0, quantizer.ntotal)


def test_training_sample_is_seeded_distinct_and_spread():
    rows = knowledge_base.training_sample(10_000, 500)
    assert len(rows) == 500 == len(set(rows.tolist())) and (np.diff(rows) > 0).all()
    assert np.array_equal(rows, knowledge_base.training_sample(10_000, 500))  # the same on every process
    assert rows.min() < 1000 and rows.max() > 9000  # drawn from the whole bank, not its leading rows
    assert np.array_equal(knowledge_base.training_sample(7, 50), np.arange(7))


def test_ivf_trains_on_a_sample_of_the_whole_bank():
    # 2 lists trained on 200 rows: the leading 200 rows all lie near +e0, so centroids learned from them would both
    # sit on that side; a sample of the whole bank puts one on each side.
    X = _two_sided(2000, 8, np.random.default_rng(0))
    bank = SilentVideoBank.from_embeddings(X, _ids(2000), string_factory="IVF2,Flat", train_size=200, nprobe=1)
    centroids = _centroids(bank)
    assert (centroids[:, 0] > 0.5).sum() == 1 and (centroids[:, 0] < -0.5).sum() == 1
    # so that one probed list holds each side's neighbours: the approximate search finds the exact top-k
    Q = X[[5, 1500]]
    np.testing.assert_array_equal(bank.search(Q, k=10).indices.numpy(),
                                  SilentVideoBank.from_embeddings(X, _ids(2000)).search(Q, k=10).indices.numpy())


def test_updating_every_row_retrains_and_some_rows_keep_the_centroids():
    rng = np.random.default_rng(1)
    one_sided = np.abs(_two_sided(2000, 8, rng))  # everything near +e0
    bank = SilentVideoBank.from_embeddings(one_sided, _ids(2000), string_factory="IVF2,Flat", train_size=400)
    assert (_centroids(bank)[:, 0] > 0).all()
    X = _two_sided(2000, 8, rng)
    bank.update(np.arange(100), X[:100])  # a partial refresh patches the lists, the centroids stay
    assert (_centroids(bank)[:, 0] > 0).all()
    bank.update(np.arange(2000), X)  # the initial encoding / a full refresh: retrained on the new vectors
    centroids = _centroids(bank)
    assert (centroids[:, 0] > 0.5).sum() == 1 and (centroids[:, 0] < -0.5).sum() == 1
    np.testing.assert_allclose(bank.embeddings.numpy(), _unit(X), atol=1e-6)


@pytest.mark.parametrize("string_factory", ["SQ8", "PQ8"])
def test_flat_code_indexes_update_their_codes_in_place(data, string_factory):
    X, _ = data
    bank = SilentVideoBank.from_embeddings(X, _ids(N), string_factory=string_factory)
    index_before = bank.faiss_index
    codes_before = knowledge_base._flat_codes(bank.faiss_index).copy()
    rows = np.array([10, 1999, 700])
    new = np.random.default_rng(6).standard_normal((3, D)).astype(np.float32)
    bank.update(rows, new)
    assert bank.faiss_index is index_before and bank.faiss_index.ntotal == N  # patched, not rebuilt or renumbered
    codes = knowledge_base._flat_codes(bank.faiss_index)
    changed = np.flatnonzero((codes != codes_before).any(axis=1))
    assert set(changed.tolist()) <= set(rows.tolist()) and len(changed) >= 2
    np.testing.assert_array_equal(codes[rows], bank.faiss_index.sa_encode(_unit(new)))
    assert bank.search(new, k=1).indices[:, 0].tolist() == rows.tolist()


@pytest.mark.parametrize("string_factory, attribute, default", [
    ("IVF32,Flat", "nprobe", 2), ("HNSW8,Flat", "efSearch", knowledge_base.DEFAULT_EF_SEARCH)])
def test_search_breadth_is_settable_saved_and_loaded(tmp_path, data, string_factory, attribute, default):
    X, Q = data
    bank = SilentVideoBank.from_embeddings(X[:1000], _ids(1000), string_factory=string_factory)

    def breadth(b):
        index = b.faiss_index
        owner = faiss.extract_index_ivf(index) if attribute == "nprobe" else faiss.downcast_index(index).hnsw
        return getattr(owner, attribute)

    assert bank.nprobe is None and breadth(bank) == default
    bank.nprobe = 32
    assert breadth(bank) == 32
    bank.save(tmp_path / "bank")
    loaded = SilentVideoBank.load(tmp_path / "bank")
    assert loaded.nprobe == 32 and breadth(loaded) == 32
    for a, b in zip(bank.search(Q, k=K), loaded.search(Q, k=K)):
        assert torch.equal(a, b)
    bank.rebuild()  # kept across a rebuild
    assert breadth(bank) == 32
    with pytest.raises(ValueError, match="`nprobe` must be an integer >= 1"):
        bank.nprobe = 0


@pytest.mark.parametrize("string_factory", ["IVF16,SQ8", "HNSW8,Flat", "SQ8"])
def test_approximate_banks_round_trip(tmp_path, data, string_factory):
    X, Q = data
    bank = SilentVideoBank.from_embeddings(X[:1000], _ids(1000), string_factory=string_factory)
    bank.update([3, 4], X[1000:1002])
    bank.save(tmp_path / "bank")
    loaded = SilentVideoBank.load(tmp_path / "bank")
    assert loaded.string_factory == string_factory and not loaded.is_exact
    assert torch.equal(loaded.embeddings, bank.embeddings)
    for a, b in zip(bank.search(Q, k=K), loaded.search(Q, k=K)):
        assert torch.equal(a, b)
    loaded.update([5], X[1002:1003])  # a loaded bank refreshes like a built one
    assert loaded.search(X[1002:1003], k=1).indices.item() == 5


# -- the trainer's option ------------------------------------------------------------------------------------------


def test_trainer_option_validation():
    from ophclip_train.config import parse_config

    base = ["--data_path", "x", "--model_config", "tiny"]
    config = parse_config(base + ["--bank_index", "IVF1024,Flat", "--bank_index_nprobe", "8"])
    assert config.objectives.bank_index_kwargs() == {"string_factory": "IVF1024,Flat", "nprobe": 8}
    assert parse_config(base).objectives.bank_index_kwargs() == {"string_factory": None, "nprobe": None}
    for extra, match in ((["--bank_index", " "], "--bank_index must be 'Flat' or a faiss"),
                         (["--bank_index_nprobe", "-1"], "--bank_index_nprobe must be >= 0"),
                         (["--bank_index_nprobe", "8"], "the exact 'Flat' index has none")):
        with pytest.raises(ValueError, match=match):
            parse_config(base + extra)


def test_trainer_builds_saves_and_resumes_an_approximate_bank(tmp_path_factory, tmp_path):
    from test_train_accelerate import base_args, train_in_process, without

    from datasets_ophvl import generate_ophvl_mini
    from ophclip_testing import OphCLIPModelTester, tiny_tokenizer

    root = tmp_path_factory.mktemp("bank_train")
    generate_ophvl_mini(root / "ophvl", size="tiny", progress=False)
    OphCLIPModelTester().get_config().to_json_file(root / "tiny_config.json")
    tiny_tokenizer().save_pretrained(root / "tokenizer")
    out = tmp_path / "run"
    args = base_args(root, out, "--max_steps", "2", "--save_steps", "2", "--bank_index", "IVF2,Flat",
                     "--bank_index_nprobe", "2")
    train_in_process(args)
    bank = SilentVideoBank.load(out / "checkpoints" / "step-2" / "bank")
    assert bank.string_factory == "IVF2,Flat" and bank.nprobe == 2 and not bank.is_exact
    assert faiss.extract_index_ivf(bank.faiss_index).nprobe == 2
    # every row was encoded by the model (no placeholder left) and searching a row finds it
    assert bank.search(bank.embeddings[:3], k=1).indices[:, 0].tolist() == [0, 1, 2]

    resume = [*without(args, "--max_steps"), "--max_steps", "3", "--resume", "latest"]
    with pytest.raises(ValueError, match=r"--resume: the memory bank of .*step-2 has the index 'IVF2,Flat', this run "
                                         r"asks for --bank_index 'Flat'"):
        train_in_process(without(resume, "--bank_index", "--bank_index_nprobe"))
    train_in_process(resume)
    assert (out / "final").is_dir()


def test_scale_sweep_runs_and_measures_recall(tmp_path):
    """The benchmark's sweep at a tiny size: probing every list makes IVF exact (recall 1), probing one is not."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "bench_knowledge_base.py"), "--sweep", "--sizes", "3000,900000",
         "--max-rows", "3000", "--dim", "32", "--queries", "16", "--indexes", "IVF16,Flat", "--nprobes", "16,1",
         "--sweep-repeats", "1", "--faiss-threads", "1"],
        cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| 3,000 | IVF16")]
    assert len(rows) == 2 and "900,000" not in result.stdout  # --max-rows drops the larger size
    recall = {row[1].strip(): float(row[6]) for row in rows}
    assert recall["IVF16,Flat, nprobe 16"] == 1.0 and recall["IVF16,Flat, nprobe 1"] < 1.0
