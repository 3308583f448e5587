#!/usr/bin/env python
"""Speed of zero-shot evaluation end to end against the model forward alone, measured in one run.

- end to end: `evaluate_suite.protocols.extract_frame_features`, the frame stage of every frame-level protocol:
  sampling at 1 fps, decoding with decord and preprocessing (resize, crop, normalise) in DataLoader workers
  (`--num-workers`, default 2), and the model's `encode_frames` on each chunk, over every video of the benchmark.
- model alone: `encode_frames` on pre-made tensors of the same shapes, in the same chunks (same batch sizes).

The ratio end-to-end frames/s / model-alone frames/s is the fraction of the model's speed the evaluation keeps; the
target is >= 0.8, i.e. decoding and preprocessing overlap the model instead of adding to it. Shared machines are
noisy, so the videos are split into groups of `--group` videos and each group is timed both ways back to back (the
order alternating from group to group); the reported ratio is the median of the per-group ratios, next to the
overall frames/s of each variant. Every end-to-end group starts its own DataLoader, so worker start-up is paid once
per group: the ratio is, if anything, pessimistic.

Model: the default `OphCLIPConfig()` (ResNet-50 vision tower at 224 x 224, BERT-base text tower), random weights, on
CPU with torch's default thread count. Data: the OphVL-mini benchmark of the default size (8 procedures of 40-60 s,
5 fps, H.264), rendered at `--frame-size` px (default 256, resized to 224 and centre-cropped by the processor, like
real video) in a temporary folder; only the benchmark part of OphVL-mini is generated.

    python benchmarks/bench_eval.py                 # about 1.5 min on 2 idle cores
    python benchmarks/bench_eval.py --quick         # smoke run: ResNet-18, 3 videos
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


try:
    import evaluate_suite  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from datasets_ophvl.mini import SIZES, write_benchmark  # noqa: E402
from evaluate_suite.models import OphCLIPEncoder  # noqa: E402
from evaluate_suite.protocols import extract_frame_features, sample_frame_indices  # noqa: E402
from evaluate_suite.protocols.common import load_split, resolve_benchmark  # noqa: E402
from modeling_ophclip import OphCLIPConfig, OphCLIPModel, OphCLIPProcessor, OphCLIPVideoProcessor  # noqa: E402


RATIO_TARGET = 0.8


def build_encoder(resnet_depth: int) -> OphCLIPEncoder:
    """Random OphCLIP with the default config (ResNet-50), or a ResNet-18 tower for a quick run."""
    from transformers import BertTokenizer, ResNetConfig

    config = OphCLIPConfig() if resnet_depth == 50 else OphCLIPConfig(vision_config=ResNetConfig(
        layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512]))
    torch.manual_seed(0)
    model = OphCLIPModel(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        vocab = Path(folder) / "vocab.txt"
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "phase", "of", "a"]) + "\n")
        tokenizer = BertTokenizer(str(vocab), model_max_length=77)
    processor = OphCLIPProcessor(OphCLIPVideoProcessor(size=224, crop_size=224), tokenizer)
    return OphCLIPEncoder(model, processor, model_id=f"random-ophclip-resnet{resnet_depth}")


def chunk_shapes(annotations, fps: float, batch_size: int) -> list[int]:
    """The chunk sizes the end-to-end pipeline feeds the model (per video, `batch_size` sampled frames at a time)."""
    sizes = []
    for a in annotations:
        n = len(sample_frame_indices(a.num_frames, a.fps, fps))
        sizes += [min(batch_size, n - start) for start in range(0, n, batch_size)]
    return sizes


def time_model_alone(encoder, sizes: list[int], crop: int) -> tuple[float, int]:
    tensors = {size: torch.randn(size, 3, crop, crop) for size in set(sizes)}
    began = time.perf_counter()
    for size in sizes:
        encoder.encode_frames(tensors[size])
    return time.perf_counter() - began, sum(sizes)


def time_end_to_end(encoder, annotations, fps: float, batch_size: int, num_workers: int) -> tuple[float, int]:
    began = time.perf_counter()
    result = extract_frame_features(encoder, annotations, fps=fps, batch_size=batch_size, num_workers=num_workers)
    seconds = time.perf_counter() - began
    if result.skipped:
        raise RuntimeError(f"videos were skipped: {result.skipped}")
    return seconds, result.frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=SIZES["default"]["benchmark"],
                        help="benchmark videos to generate (default: %(default)s, OphVL-mini's default size)")
    parser.add_argument("--frame-size", type=int, default=256, help="rendered frame side in px (default: %(default)s)")
    parser.add_argument("--resnet", type=int, choices=(18, 50), default=50,
                        help="depth of the random ResNet vision tower (default: %(default)s, OphCLIPConfig())")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per forward (default: %(default)s)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=1.0, help="sampled frames per second (default: %(default)s)")
    parser.add_argument("--group", type=int, default=2, help="videos per timed pair (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="passes over all groups (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: ResNet-18, 3 videos")
    args = parser.parse_args(argv)
    if args.quick:
        args.videos, args.resnet, args.group = 3, 18, 1

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "benchmark"
        cfg = {**SIZES["default"], "benchmark": args.videos, "frame_size": args.frame_size}
        summary = write_benchmark(root, seed=0, cfg=cfg)
        generated = time.perf_counter() - began
        spec = resolve_benchmark("ophvl-mini-phase")
        annotations = []
        for split in ("train", "test"):
            annotations += load_split(spec, root, split)[0]
        encoder = build_encoder(args.resnet)
        crop = encoder.video_processor.crop_size["height"]
        sizes = chunk_shapes(annotations, args.fps, args.batch_size)

        print(f"benchmark: {summary['videos']} videos, {summary['frames']} frames at {summary['fps']} fps, "
              f"{args.frame_size}x{args.frame_size} px H.264 (generated in {generated:.1f} s)")
        print(f"model: {encoder.model_id} at {crop}x{crop}, torch threads {torch.get_num_threads()}, "
              f"cpus {os.cpu_count()}, batch {args.batch_size}, {args.num_workers} DataLoader workers, "
              f"{sum(sizes)} frames at {args.fps:g} fps in {len(sizes)} chunks")

        encoder.encode_frames(torch.randn(args.batch_size, 3, crop, crop))  # warm-up
        groups = [annotations[i : i + args.group] for i in range(0, len(annotations), args.group)]
        totals = {"model": [0.0, 0], "e2e": [0.0, 0]}
        ratios = []
        for repeat in range(args.repeats):
            for g, group in enumerate(groups):
                fps = {}
                order = ("model", "e2e") if (g + repeat) % 2 == 0 else ("e2e", "model")
                for variant in order:
                    if variant == "model":
                        seconds, frames = time_model_alone(encoder, chunk_shapes(group, args.fps, args.batch_size),
                                                           crop)
                    else:
                        seconds, frames = time_end_to_end(encoder, group, args.fps, args.batch_size,
                                                          args.num_workers)
                    fps[variant] = frames / seconds
                    totals[variant][0] += seconds
                    totals[variant][1] += frames
                ratios.append(fps["e2e"] / fps["model"])
                print(f"  pass {repeat + 1} group {g + 1}: {frames:4d} frames, model alone {fps['model']:6.2f} "
                      f"frames/s, end to end {fps['e2e']:6.2f} frames/s, ratio {ratios[-1]:.3f}")

    model_fps = totals["model"][1] / totals["model"][0]
    e2e_fps = totals["e2e"][1] / totals["e2e"][0]
    ratio = statistics.median(ratios)
    print(f"model forward alone (pre-made tensors): {model_fps:7.2f} frames/s")
    print(f"zero-shot end to end (decode + preprocess + model, {args.num_workers} workers): {e2e_fps:7.2f} frames/s")
    verdict = "PASS" if ratio >= RATIO_TARGET else "FAIL"
    print(f"ratio end-to-end / model alone: median over {len(ratios)} pairs {ratio:.3f}, overall "
          f"{e2e_fps / model_fps:.3f} (target >= {RATIO_TARGET}) {verdict}")
    print(f"total {time.perf_counter() - began:.1f} s")
    return 0 if ratio >= RATIO_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
