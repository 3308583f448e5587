"""Cost of the silent-video memory bank relative to a training step, measured in one run on this machine.

Times, on a bank of OphVL's size (30,636 silent videos × 768-d, random unit vectors):

- `SilentVideoBank.search`: top-16 of 256 queries (a batch of title embeddings);
- `SilentVideoBank.update`: in-place refresh of 512 rows (validation and normalisation included);

and reports each in milliseconds and as a fraction of one video-level training step of the default model,
`OphCLIPModel(OphCLIPConfig())` (ResNet-50 + BERT-base, random init): forward + backward of
`model(input_ids (B, 64), pixel_values_videos (B, T, 3, 224, 224), return_loss=True)`. The exact Flat index is the
default; an IVF index is timed for comparison. Re-encoding the refreshed rows is the trainer's real refresh cost, so
a no-grad video encoding is timed too and extrapolated to 512 videos.

It also times what retrieval adds to one video-level step of the trainer (`--index` picks the bank's index): the
search of the `B` titles' top-`K` and the choice of the rows to encode ([`retrieve`] + [`rows_to_encode`], the
encoded form's bookkeeping). The queries are the titles' embeddings from the step's own first (no-grad) pass of
`CachedFeatureAccumulator`, so they cost the step nothing; the separate no-grad text forward that made them before is
still timed, on its own line, for comparison. Decoding and encoding the chosen silent videos is training work on
silent footage, not retrieval.

`--sweep` measures the bank at scale instead (no model): for each size (30k, 300k, 1M rows x 768 by default;
`--max-rows` caps them) it builds the exact Flat bank and each approximate index of `--indexes`, and prints side by
side build time, top-16 search time for 256 queries (alternating with exact search), and recall@16 against the
exact search, with the process's peak memory. The vectors are clustered unit vectors of low intrinsic dimension (`clustered_unit_vectors`), because
recall on i.i.d. Gaussian vectors says nothing about real embeddings: in 768 dimensions all their pairwise cosines
are ~0, so "nearest" neighbours are barely nearer than any other row and every approximate index looks bad.

    python benchmarks/bench_knowledge_base.py            # B=2, T=4
    python benchmarks/bench_knowledge_base.py --batch-size 4 --frames 8 --index IVF1024,Flat
    nice python benchmarks/bench_knowledge_base.py --sweep --faiss-threads 1    # peak 13 GiB at 1M rows
    python benchmarks/bench_knowledge_base.py --sweep --max-rows 300000         # smaller machines
"""

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402

import torch.nn.functional as F  # noqa: E402

from datasets_ophvl.knowledge_base import SilentVideoBank  # noqa: E402
from modeling_ophclip import OphCLIPConfig, OphCLIPModel  # noqa: E402
from ophclip_train.objectives import retrieve, rows_to_encode  # noqa: E402


def timed(fn, repeats, warmup=1):
    """`(median, min)` wall time of `fn()` in ms over `repeats` runs, after `warmup` untimed runs.

    The minimum shows what the operation costs on an idle machine; a median far above it means other load.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def clustered_unit_vectors(num_rows, dim, seed, num_clusters=None, latent_dim=64, spread=1.0, noise=0.05):
    """`(num_rows, dim)` float32 unit vectors shaped like learned embeddings: `num_clusters` clusters (default one per
    300 rows: videos of one kind of surgery from one setting) in a `latent_dim`-dimensional subspace, each point its
    cluster centre plus `spread` times a Gaussian in that subspace, mapped into `dim` dimensions by a fixed random
    matrix, plus a small isotropic `noise`, then normalised. Neighbours are therefore meaningful (mostly of the same
    cluster, ranked by their latent offsets), as for a trained encoder whose embeddings have low intrinsic dimension.
    Generated in chunks of 65,536 rows; the same seed gives the same vectors, and vectors drawn with another seed
    (the queries) share the centres and the map (kept per shape by `_space`), i.e. come from the same distribution."""
    space = _space(dim, latent_dim, num_clusters or max(1, num_rows // 300))
    rng = np.random.default_rng(seed)
    out = np.empty((num_rows, dim), dtype=np.float32)
    for start in range(0, num_rows, 65_536):
        n = min(65_536, num_rows - start)
        out[start : start + n] = _chunk(space, rng, n, dim, spread, noise)
    return out


def _chunk(space, rng, n, dim, spread=1.0, noise=0.05):
    """`n` rows of `clustered_unit_vectors`, drawn from `rng`."""
    latent_dim = space["centres"].shape[1]
    cluster = rng.integers(0, len(space["centres"]), size=n)
    latent = space["centres"][cluster] + spread * rng.standard_normal((n, latent_dim), dtype=np.float32)
    chunk = latent @ space["map"] + noise * rng.standard_normal((n, dim), dtype=np.float32)
    return chunk / np.linalg.norm(chunk, axis=1, keepdims=True)


_SPACES = {}


def _space(dim, latent_dim, num_clusters):
    """The cluster centres and the latent-to-embedding map, fixed per shape so that queries share them."""
    key = (dim, latent_dim, num_clusters)
    if key not in _SPACES:
        rng = np.random.default_rng(1234)
        _SPACES[key] = {
            "centres": rng.standard_normal((num_clusters, latent_dim), dtype=np.float32),
            "map": rng.standard_normal((latent_dim, dim), dtype=np.float32) / np.sqrt(latent_dim),
        }
    return _SPACES[key]


def exact_search(vectors, queries, k):
    """Exact top-`k` inner-product search over `vectors`: `faiss.knn`, the brute-force routine the default bank's
    `IndexFlatIP` runs, here over the approximate bank's own float32 copy of the matrix so that no second copy is
    needed (3 GiB at 1M x 768)."""
    return faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)


def peak_rss_gib():
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def recall_at_k(found, truth):
    """Mean over queries of |found ∩ truth| / k (rows `-1` never match)."""
    hits = [len(set(f.tolist()) & set(t.tolist()) - {-1}) for f, t in zip(found, truth)]
    return sum(hits) / (len(truth) * truth.shape[1])


def sweep(args):
    """The scale sweep: exact Flat vs the approximate indexes of `--indexes` at each size, side by side."""
    if args.faiss_threads:
        faiss.omp_set_num_threads(args.faiss_threads)
    sizes = [n for n in args.sizes if n <= args.max_rows]
    if not sizes:
        raise SystemExit(f"--max-rows {args.max_rows} leaves none of --sizes {args.sizes}; lower a size or raise it")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, faiss {faiss.__version__} "
        f"({faiss.omp_get_max_threads()} OpenMP threads), 1-min load average {os.getloadavg()[0]:.2f} before"
    )
    clusters = f"{args.clusters} clusters" if args.clusters else "one cluster per 300 rows"
    print(f"vectors: clustered unit vectors ({args.dim}-d, 64-d latent, {clusters}); "
          f"{args.queries} queries from the same distribution; recall@{args.k} against exact search (faiss.knn, "
          "what the default Flat bank runs); "
          f"search: {args.sweep_repeats} pairs of an exact and an approximate search, alternating (medians; the "
          "speed-up is the median of the pairs' ratios); update: median of 3 refreshes of 512 random rows\n")
    print(f"| rows | index | build s | exact top-{args.k} of {args.queries} queries, ms | approximate, ms | speed-up "
          f"| recall@{args.k} | update 512 rows ms | peak RSS GiB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for num_rows in sizes:
        num_clusters = args.clusters or max(1, num_rows // 300)
        queries = torch.from_numpy(clustered_unit_vectors(args.queries, args.dim, seed=1, num_clusters=num_clusters))
        video_ids = [f"silent-{i:07d}" for i in range(num_rows)]
        new_rows = np.random.default_rng(2).choice(num_rows, size=512, replace=False)
        new_embeddings = torch.from_numpy(clustered_unit_vectors(512, args.dim, seed=3, num_clusters=num_clusters))
        embeddings = clustered_unit_vectors(num_rows, args.dim, seed=0, num_clusters=num_clusters)
        query_matrix = queries.numpy()
        print(f"| {num_rows:,} | (vectors generated) | | | | | | | {peak_rss_gib():.1f} |", flush=True)
        for factory in args.indexes:
            start = time.perf_counter()
            bank = SilentVideoBank.from_embeddings(embeddings, video_ids, string_factory=factory,
                                                   train_size=args.train_size)
            build_s = time.perf_counter() - start
            del embeddings  # the bank holds an exact float32 copy: the exact search runs over it
            matrix = bank.embeddings.numpy()
            truth = exact_search(matrix, query_matrix, args.k)[1]
            original = matrix[new_rows].copy()  # `matrix` is a view of the bank: it changes with `update`
            update_ms, _ = timed(lambda: bank.update(new_rows, new_embeddings), 3)
            bank.update(new_rows, original)  # back to the vectors the exact search saw
            for nprobe in args.nprobes:
                bank.nprobe = nprobe  # one build, several search breadths
                bank.search(queries, k=args.k)  # warm-up
                # Exact and approximate searches alternate, so that both see the same load on a shared machine;
                # the speed-up is the median of the per-pair ratios.
                pairs = []
                for _ in range(args.sweep_repeats):
                    pairs.append((timed(lambda: exact_search(matrix, query_matrix, args.k), 1, warmup=0)[0],
                                  timed(lambda: bank.search(queries, k=args.k), 1, warmup=0)[0]))
                exact_ms = statistics.median(e for e, _ in pairs)
                search_ms = statistics.median(a for _, a in pairs)
                speed_up = statistics.median(e / a for e, a in pairs)
                recall = recall_at_k(bank.search(queries, k=args.k).indices.numpy(), truth)
                print(f"| {num_rows:,} | {factory}, {'efSearch' if 'HNSW' in factory else 'nprobe'} {nprobe} "
                      f"| {build_s:.1f} | {exact_ms:.0f} | {search_ms:.1f} | {speed_up:.1f} | {recall:.3f} "
                      f"| {update_ms:.1f} | {peak_rss_gib():.1f} |", flush=True)
            del bank, matrix
            embeddings = (clustered_unit_vectors(num_rows, args.dim, seed=0, num_clusters=num_clusters)
                          if factory != args.indexes[-1] else None)
    print(f"\n1-min load average after: {os.getloadavg()[0]:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-rows", type=int, default=30_636)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--refresh-rows", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=2, help="B of the training step")
    parser.add_argument("--frames", type=int, default=4, help="T of the training step")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats of the bank operations")
    parser.add_argument("--step-repeats", type=int, default=3, help="timed training steps (after one warm-up)")
    parser.add_argument("--index", default=None,
                        help="faiss index-factory string of the bank whose per-step retrieval is timed (default exact "
                             "Flat), e.g. IVF1024,Flat")
    parser.add_argument("--retrieval-k", type=int, default=4, help="K of the per-step retrieval (the trainer's default)")
    parser.add_argument("--sweep", action="store_true", help="measure the bank at scale instead (see above)")
    parser.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[30_000, 300_000, 1_000_000],
                        help="sweep: bank sizes, comma-separated")
    parser.add_argument("--max-rows", type=int, default=1_000_000,
                        help="sweep: skip sizes above this (1M rows with IVF1024,Flat: 13 GiB peak)")
    parser.add_argument("--indexes", type=lambda v: v.split(";"), default=["IVF1024,Flat"],
                        help="sweep: approximate indexes, ';'-separated faiss index-factory strings")
    parser.add_argument("--nprobes", type=lambda v: [int(x) for x in v.split(",")], default=[8, 16],
                        help="sweep: search breadths tried on each approximate index (IVF nprobe, HNSW efSearch)")
    parser.add_argument("--train-size", type=int, default=None, help="sweep: rows that train an IVF/PQ index")
    parser.add_argument("--clusters", type=int, default=0,
                        help="sweep: clusters of the vectors at every size (0: one per 300 rows, i.e. more kinds of "
                             "video as the bank grows; a fixed number: more videos of the same kinds)")
    parser.add_argument("--faiss-threads", type=int, default=0,
                        help="sweep: faiss OpenMP threads (0: faiss's default, all cores); on a machine that other "
                             "work shares, 1 avoids threads spinning at barriers")
    parser.add_argument("--sweep-repeats", type=int, default=3,
                        help="sweep: timed exact/approximate search pairs per index, breadth and size")
    args = parser.parse_args()
    if args.sweep:
        return sweep(args)

    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((args.num_rows, args.dim), dtype=np.float32)
    video_ids = [f"silent-{i:06d}" for i in range(args.num_rows)]
    queries = torch.from_numpy(rng.standard_normal((args.queries, args.dim), dtype=np.float32))
    new_rows = rng.choice(args.num_rows, size=args.refresh_rows, replace=False)
    new_embeddings = torch.from_numpy(rng.standard_normal((args.refresh_rows, args.dim), dtype=np.float32))

    load_before = os.getloadavg()[0]
    results = []  # (operation, (median ms, min ms))

    # -- the bank: exact Flat (default) ---------------------------------------------------------------------------
    start = time.perf_counter()
    bank = SilentVideoBank.from_embeddings(embeddings, video_ids, titles=[""] * args.num_rows)
    build_ms = (time.perf_counter() - start) * 1e3
    faiss_threads = faiss.omp_get_max_threads()
    results.append(
        (f"Flat (exact): search top-{args.k} of {args.queries} queries ({faiss_threads} faiss threads)",
         timed(lambda: bank.search(queries, k=args.k), args.repeats))
    )
    if faiss_threads > 1:
        # faiss parallelises with OpenMP over all cores; when other processes (DDP ranks, data workers) share the
        # cores, its threads spin at barriers and one thread per process can be much faster.
        faiss.omp_set_num_threads(1)
        results.append(
            (f"Flat (exact): search top-{args.k} of {args.queries} queries (1 faiss thread)",
             timed(lambda: bank.search(queries, k=args.k), args.repeats))
        )
        faiss.omp_set_num_threads(faiss_threads)
    flat_update = timed(lambda: bank.update(new_rows, new_embeddings), args.repeats)
    assert bank.search(new_embeddings[:4], k=1).indices[:, 0].tolist() == new_rows[:4].tolist()
    results.append((f"Flat (exact): update {args.refresh_rows} rows in place", flat_update))

    # -- an approximate IVF index, for comparison -----------------------------------------------------------------
    ivf_bank = SilentVideoBank.from_embeddings(embeddings, video_ids, string_factory="IVF256,Flat")
    nprobe = faiss.extract_index_ivf(ivf_bank.faiss_index).nprobe
    results += [
        (f"IVF256,Flat (nprobe {nprobe}, approximate): search",
         timed(lambda: ivf_bank.search(queries, k=args.k), args.repeats)),
        (f"IVF256,Flat: update {args.refresh_rows} rows (remove + add_with_ids)",
         timed(lambda: ivf_bank.update(new_rows, new_embeddings), args.repeats)),
    ]
    del ivf_bank

    # -- one video-level training step of the default model -------------------------------------------------------
    torch.manual_seed(0)
    model = OphCLIPModel(OphCLIPConfig()).train()
    B, T = args.batch_size, args.frames
    vocab = model.config.text_config.vocab_size
    input_ids = torch.randint(5, vocab, (B, args.tokens))
    input_ids[:, 0] = 2  # [CLS]-like first token; the values do not change the cost
    pixel_values_videos = torch.randn(B, T, 3, 224, 224)

    def train_step():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=input_ids, pixel_values_videos=pixel_values_videos, return_loss=True)
        out.loss.backward()

    step_ms, step_min_ms = timed(train_step, args.step_repeats)

    model.eval()

    def encode():
        with torch.no_grad():
            model.get_video_features(pixel_values_videos)

    per_batch = timed(encode, args.step_repeats)
    results.append(
        (f"re-encode {args.refresh_rows} silent videos (T={T}, no grad; extrapolated from B={B})",
         tuple(ms / B * args.refresh_rows for ms in per_batch))
    )

    # -- what retrieval adds to one video-level step (the trainer's `_retrieve_for_step` + `rows_to_encode`) ---------
    # The queries are the first pass's title embeddings, which the step computes anyway: only the search and the
    # bookkeeping are retrieval's.
    step_bank = bank if args.index is None else SilentVideoBank.from_embeddings(
        embeddings, video_ids, string_factory=args.index)
    index_name = args.index or "Flat"
    generator = torch.Generator().manual_seed(0)

    def title_text_forward():  # a separate no-grad text forward: how the queries were made before
        with torch.no_grad():
            return F.normalize(model.get_text_features(input_ids).pooler_output.float(), dim=-1)

    titles = title_text_forward()  # stands for the first pass's title embeddings

    def retrieval_step():
        _, mask, indices = retrieve(step_bank, titles, args.retrieval_k)
        rows_to_encode(indices, mask, 1, generator)

    per_step = [
        (f"per step: {index_name} search of the {B} titles' top-{args.retrieval_k}",
         timed(lambda: step_bank.search(titles, k=args.retrieval_k), args.repeats)),
        (f"per step: all retrieval (retrieve + rows_to_encode on the first pass's titles), {index_name}",
         timed(retrieval_step, args.repeats)),
        (f"not spent any more: a separate no-grad text forward of the {B} titles (the queries before)",
         timed(title_text_forward, args.repeats)),
    ]
    results += per_step

    # -- report ---------------------------------------------------------------------------------------------------
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), faiss {faiss.__version__} ({faiss.omp_get_max_threads()} OpenMP threads)"
    )
    print(f"bank: {args.num_rows:,} x {args.dim} float32, Flat, from_embeddings (with normalisation) in {build_ms:.0f} ms")
    print(
        f"training step: OphCLIPModel(OphCLIPConfig()) (ResNet-50 + BERT-base), forward + backward with return_loss, "
        f"B={B}, T={T}, {args.tokens} tokens, 224x224: median {step_ms:.0f} ms, min {step_min_ms:.0f} ms "
        f"({args.step_repeats} steps after one warm-up)"
    )
    print(
        f"bank operations: {args.repeats} runs after one warm-up; 1-min load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (this run counts itself; a high value before it means other work shares "
        "the CPUs: trust the min columns)\n"
    )
    print("| operation | median ms | min ms | fraction of a training step (median / median) | (min / min) |")
    print("|---|---:|---:|---:|---:|")
    for name, (median_ms, min_ms) in results:
        print(
            f"| {name} | {median_ms:.2f} | {min_ms:.2f} "
            f"| {median_ms / step_ms:.2e} ({100 * median_ms / step_ms:.3f} %) "
            f"| {min_ms / step_min_ms:.2e} |"
        )


if __name__ == "__main__":
    main()
