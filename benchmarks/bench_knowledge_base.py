"""Cost of the silent-video memory bank relative to a training step, measured in one run on this machine.

Times, on a bank of OphVL's size (30,636 silent videos × 768-d, random unit vectors):

- `SilentVideoBank.search`: top-16 of 256 queries (a batch of title embeddings);
- `SilentVideoBank.update`: in-place refresh of 512 rows (validation and normalisation included);

and reports each in milliseconds and as a fraction of one video-level training step of the default model,
`OphCLIPModel(OphCLIPConfig())` (ResNet-50 + BERT-base, random init): forward + backward of
`model(input_ids (B, 64), pixel_values_videos (B, T, 3, 224, 224), return_loss=True)`. The exact Flat index is the
default; an IVF index is timed for comparison. Re-encoding the refreshed rows is the trainer's real refresh cost, so
a no-grad video encoding is timed too and extrapolated to 512 videos.

    python benchmarks/bench_knowledge_base.py            # B=2, T=4
    python benchmarks/bench_knowledge_base.py --batch-size 4 --frames 8
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

from datasets_ophvl.knowledge_base import SilentVideoBank  # noqa: E402
from modeling_ophclip import OphCLIPConfig, OphCLIPModel  # noqa: E402


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
    args = parser.parse_args()

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
