#!/usr/bin/env python
"""Overhead of the OphCLIP pretraining loop over the bare training computation, side by side in one run, with the
throughput and model FLOP utilisation it implies.

For each batch size (per level, one process) a fresh worker process builds the real `Pretrainer` of
`train_accelerate.py` on OphVL-mini at the default architecture (`OphCLIPConfig()`: ResNet-50 + BERT-base, random
init), 4 frames at 224 px, both levels in alternation (`--schedule cv`) with retrieval on (the memory bank is built
before timing), on the device accelerate picks (`--cpu` forces the CPU) and at `--mixed_precision`. Then it times:

- **loop**: one iteration of the real loop (`Pretrainer.run_step`): read and decode the next batch from the tar
  shards, collate (resize, normalise, tokenize), embed through the training module, gather, retrieve from the bank,
  the video- or clip-level loss, backward, gradient clipping, AdamW + scheduler step, logit-scale clamp, metric
  reduction and the JSON-lines log;
- **bare**: forward + loss + backward + AdamW step of the same module on pre-made tensors (one real batch of each level,
  collated once before timing), alternating levels the same way, no retrieval term. It calls the same prepared
  module as the loop, whose forward accelerate runs under the run's autocast (`Accelerator.prepare` wraps it; the
  losses are float32 outside it in both), and backs up through `accelerator.backward` as the loop does, so a bf16 or
  fp16 bare step does the same arithmetic as the loop's.

Timings are medians over the timed steps of each kind, in wall-clock and in process CPU time (steadier when other
work shares the cores); the side-by-side overhead is `loop / bare - 1`. On CUDA every clock read (step start and end,
the in-step timers) waits for the GPU first (`torch.cuda.synchronize`), so a time is the work's, not its launch's. On a
shared machine single steps vary by tens of percent, so each loop step is also split from the inside, by the
trainer's timing hooks (`Pretrainer.add_timing_hook`): the model's share (forward + loss + backward of the
accumulator, and the AdamW step) is timed, and the rest of the step is the loop's own work: the **in-step
overhead** `(step - model) / model`, measured under the same machine conditions as the model work it is compared
with. The `data` column is the share of it spent reading,
decoding and collating the batch (and copying it to the device). The target is an overhead <= 10% on CPU (judged on
the in-step number). The optimiser step counts as model work in both measurements; gradient clipping, the scheduler,
the metric reduction and the JSON-lines log count as loop overhead. Memory-bank refreshes are extra model work chosen
by policy (`--bank_refresh_rows_per_step`), not loop overhead: they are off while timing, and the cost of re-encoding
silent videos is measured and printed separately. Peak memory is the worker's peak RSS (`resource.getrusage`) after
the bare warm-up steps and after the whole run, and on CUDA also `torch.cuda.max_memory_allocated`.

**Throughput and MFU.** Per level, samples/s (clips/s, videos/s) = level batch / median loop step, and the same for
the bare steps; `sustained` is the level's samples over the summed time of its timed loop steps (it keeps the slow
steps the median drops, e.g. a DataLoader restarting its workers at an epoch end of this small dataset). The model
FLOPs of one training step are counted once per level with `torch.utils.flop_counter.FlopCounterMode` around the first
bare warm-up step's forward + loss + backward (not the optimiser; matrix products and convolutions, as MFU counts
them); they depend on the shapes only, not on the device. MFU = FLOPs per step / median step / peak FLOP/s, for the
loop and for the bare steps. The peak is `--peak_tflops`, or on CUDA under bf16 the datasheet's dense bf16 figure for
the device name (`peak_tflops_for`); elsewhere MFU is n/a.

**Plans.** `cpu` (the default) and `quick` alternate loop and bare steps step by step, with no DataLoader workers by
default: made for 2 busy cores. `gpu` is one batch size, 128, at `--bank_batch_size 64`: 6 untimed loop steps (3 of
each level: first allocations, cuDNN's first choices, the DataLoader's first batches) and 2 bare warm-ups per level,
then 20 loop steps per level back to back, then 10 bare steps per level. Back to back, because alternating with bare
steps would give the DataLoader workers the bare steps' time to refill their queues and hide a data-bound loop. Use it
with `--dataloader_num_workers 8`: decoding 128 clips on one core takes seconds. The DataLoader forms each batch inside
one reader (a worker, or the main process with 0 workers) from the shards datasets gives that reader (round robin),
and drops the reader's last partial batch, so a level's batch can be no larger than the fewest samples a reader gets
(`samples_per_reader`): the driver lowers it to that and says so. The `gpu` plan therefore generates OphVL-mini with
more and shorter clips in 16 shards (`DATA_OVERRIDES["gpu"]`: about 1,130 clips, about 140 per reader with 8 workers:
batch 128 holds, one batch per reader and epoch). The video level cannot reach 128: OphVL-mini's 40 videos in 4 shards
give each of the 4 readers 10 videos, so it is measured at batch 10 there, and said so (128 would need 512 videos with
4 readers, over 100 MB of shards: more than a device call carries). `benchmarks/device_check.sh` runs the `gpu` plan
on a lent GPU machine.

The tokenizer is the project's WordPiece trainer (`ophclip_train.tokenizer`) run on OphVL-mini's own texts (the Hub is
not reachable here) with a 30,000-token cap that the small corpus does not reach (about 800 tokens): every word seen
twice stays whole, so texts are about as long in tokens as they are in words; the text tower is BERT-base with that
vocabulary size.

Usage:
    python benchmarks/bench_train.py            # batch sizes 8/16/32 (only clip steps at 32); ~8-9 min on 2 cores
    python benchmarks/bench_train.py --quick    # batch size 8, one timed step per level and kind; ~3-4 min
    python benchmarks/bench_train.py --data ophvl-mini --batch_sizes 8,16
    python benchmarks/bench_train.py --quick --peak_tflops 1          # MFU against a given peak (here 1 TFLOP/s)
    python benchmarks/bench_train.py --plan gpu --mixed_precision bf16 --dataloader_num_workers 8   # on a GPU
    python benchmarks/bench_train.py --plan gpu --make_data DIR       # only write the gpu plan's OphVL-mini to DIR
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import NamedTuple


REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

OVERHEAD_TARGET = 0.10
RESULT_PREFIX = "BENCH_RESULT "
LEVEL_SUBSETS = {"clip": "clips", "video": "videos"}  # as ophclip_train.data.TEXT_LEVELS
TOKENIZER_VOCAB_SIZE = 30000

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' datasheets, by a pattern of the CUDA device
# name. The H100 and H200 figure is the SXM part's (`nvidia-smi` names it plainly, e.g. 'NVIDIA H200'); the PCIe and
# NVL parts run at lower clocks and power and have lower peaks, so they are not matched (pass --peak_tflops).
PEAK_BF16_TFLOPS = ((r"\bH200\b", 989.5), (r"\bH100\b", 989.5), (r"\bA100\b", 312.0), (r"\bL4\b", 121.0))
LOWER_PEAK_VARIANTS = r"PCIe|NVL"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# -- FLOP utilisation ---------------------------------------------------------------------------------------------


def peak_tflops_for(device_name: str | None, mixed_precision: str) -> float | None:
    """The datasheet's dense bf16 peak (TFLOP/s) of a CUDA device, by its name; None when it is not known.

    Only for `mixed_precision == "bf16"`: the matrix work then runs in bf16, and the table holds bf16 peaks. Without
    autocast the work is float32 (TF32 or plain fp32 by the matmul precision setting), whose peaks are several times
    lower, and fp16 is left to `--peak_tflops` as well, so no run is measured against a peak it cannot reach.

    Args:
        device_name: `torch.cuda.get_device_name()`, or None for a CPU run (no peak is looked up).
        mixed_precision: the run's `--mixed_precision` ('no', 'bf16' or 'fp16').
    """
    if device_name is None or mixed_precision != "bf16" or re.search(LOWER_PEAK_VARIANTS, device_name):
        return None
    for pattern, peak in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return peak
    return None


def model_flops_utilisation(flops_per_step: float | None, step_seconds: float | None,
                            peak_tflops: float | None) -> float | None:
    """Model FLOP utilisation: the fraction of the device's peak that the model's own arithmetic fills.

    `flops_per_step / step_seconds / (peak_tflops * 1e12)`; None when any of them is missing or zero (no peak known:
    MFU is n/a rather than a guess).

    Args:
        flops_per_step: the model FLOPs of one training step (forward + loss + backward, counted by
            `FlopCounterMode`; matrix products and convolutions, 2 FLOPs per multiply-add).
        step_seconds: the time of one step (e.g. the median loop step).
        peak_tflops: the device's peak in TFLOP/s at the precision the step runs in.
    """
    if not flops_per_step or not step_seconds or not peak_tflops:
        return None
    return flops_per_step / step_seconds / (peak_tflops * 1e12)


# -- data and tokenizer -------------------------------------------------------------------------------------------

# OphVL-mini settings per plan (`generate_ophvl_mini` overrides). The gpu plan's batch of 128 clips must fit in each of
# 8 DataLoader readers: 4 clips per phase instead of 2 (shorter clips, about 1,130 in all; the generator's time and the
# shards' size stay about the default's, ~30 s and ~13 MB) in 16 shards, 2 per reader.
DATA_OVERRIDES = {
    "cpu": {},
    "quick": {},
    "gpu": {"clips_per_phase": 4, "shards": {"clips": 16, "videos": 4, "silent": 4}},
}


def make_data(out: Path, plan: str) -> dict:
    """Generate the plan's OphVL-mini (seed 0) into `out`; returns the generator's summary."""
    from datasets_ophvl import generate_ophvl_mini

    return generate_ophvl_mini(out, size="default", progress=False, **DATA_OVERRIDES[plan])


def make_tokenizer(data: Path, out: Path) -> Path:
    """The project's WordPiece tokenizer trained on every narration, title summary and title of OphVL-mini.

    The cap is large so that words stay mostly whole, as real vocabularies keep the words of their domain (OphVL-mini's
    small corpus gives about 800 tokens, below it)."""
    from ophclip_train.tokenizer import ophvl_texts, train_wordpiece_tokenizer

    train_wordpiece_tokenizer(ophvl_texts(str(data)), vocab_size=TOKENIZER_VOCAB_SIZE).save_pretrained(out)
    return out


def shard_sample_counts(data: Path, subset: str) -> list[int]:
    """The number of samples (json members) in each `train-*.tar` shard of a subset."""
    counts = []
    for shard in sorted((data / "data" / subset).glob("train-*.tar")):
        with tarfile.open(shard) as tar:
            counts.append(sum(1 for member in tar if member.name.endswith(".json")))
    return counts


def samples_per_reader(counts: list[int], workers: int) -> int:
    """The fewest samples that one DataLoader reader of a process can get in an epoch.

    Each reader (a DataLoader worker, or the main process with 0 workers) batches its own shards, which datasets deals
    out round robin after the epoch's shard shuffle (extra workers get none and stop), and the stream drops a reader's
    last partial batch. So a reader gets at least the floor(shards / readers) smallest shards, and a batch larger than
    that gives it no full batch (`LevelStream`: "gave no full batch").

    Args:
        counts: samples per shard (`shard_sample_counts`).
        workers: `--dataloader_num_workers`.
    """
    if not counts:
        return 0
    readers = max(1, min(workers, len(counts)))
    return sum(sorted(counts)[: len(counts) // readers])


# -- worker: one batch size ---------------------------------------------------------------------------------------


def worker(args) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ophclip_train.config import parse_config
    from ophclip_train.objectives import clip_level_loss, video_level_loss
    from ophclip_train.trainer import Pretrainer

    batch = args.worker
    video_batch = args.video_batch or batch
    out = Path(args.tmp) / f"run-{batch}"
    config = parse_config([
        "--model_config", "default", "--tokenizer_name_or_path", str(args.tokenizer),
        "--data_path", str(args.data), "--image_size", "224", "--num_frames", str(args.num_frames),
        "--clip_batch_size", str(batch), "--video_batch_size", str(video_batch),
        "--bank_batch_size", str(args.bank_batch_size),
        "--dataloader_num_workers", str(args.dataloader_num_workers), "--mixed_precision", args.mixed_precision,
        # a clip-only measurement trains clip steps only (no video stream, no bank)
        "--schedule", "cv" if "video" in args.levels else "c", "--retrieval", "true", "--retrieval_k", "4",
        "--bank_refresh_rows_per_step", "0", "--bank_full_refresh_every", "0",
        "--max_steps", "1000", "--save_steps", "0", "--logging_steps", "1", "--report_to", "jsonl",
        "--learning_rate", "1e-5", "--output_dir", str(out), "--seed", "0",
    ] + (["--cpu", "true"] if args.cpu else []))
    trainer = Pretrainer(config)
    began = time.perf_counter()
    trainer.setup()
    setup_seconds = time.perf_counter() - began

    device = trainer.accelerator.device
    on_cuda = device.type == "cuda"

    def clock() -> tuple[float, float]:
        """(wall, process CPU) time once the device has finished the work queued so far: CUDA kernels run
        asynchronously, so without the wait a timer would measure their launch."""
        if on_cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter(), time.process_time()

    def cuda_peak_gib() -> float | None:
        return torch.cuda.max_memory_allocated(device) / 2**30 if on_cuda else None

    module, optimizer = trainer.module, trainer.optimizer
    logit_scale = trainer.unwrapped.model.logit_scale
    keys = ("input_ids", "attention_mask", "token_type_ids", "pixel_values_videos", "frame_mask")
    levels = args.levels.split(",")
    premade = {level: {k: v.clone() for k, v in next(trainer.streams[level]).items() if k in keys}
               for level in levels}
    level_batch = {level: len(premade[level]["input_ids"]) for level in levels}

    def forward_backward(level: str) -> None:
        # The prepared module: its forward runs under the run's autocast, as in the loop's embed_fn.
        module.train()
        out_ = module(**premade[level])
        if level == "clip":
            loss = clip_level_loss(out_["text_embeds"], out_["video_embeds"], logit_scale)["loss"]
        else:
            loss = video_level_loss(out_["text_embeds"], out_["video_embeds"], logit_scale=logit_scale)["loss"]
        trainer.accelerator.backward(loss)  # as the loop's accumulator does (the loss scaler under fp16)

    def bare_step(level: str) -> tuple[float, float]:
        wall, cpu = clock()
        forward_backward(level)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        end_wall, end_cpu = clock()
        return end_wall - wall, end_cpu - cpu

    def counted_bare_step(level: str) -> int:
        """A bare step whose forward + loss + backward FLOPs are counted (the optimiser's are not model FLOPs)."""
        counter = FlopCounterMode(display=False)
        with counter:
            forward_backward(level)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return int(counter.get_total_flops())

    # Inside each loop step, time the model's share (forward + loss + backward in the accumulator, the optimiser
    # step) and the data's with the trainer's timing hooks: what is left is the loop's own work, measured within the
    # same step (robust to a busy machine, unlike the side-by-side comparison). The hooks wait for the device on CUDA,
    # as `clock` does.
    parts = {"data": 0.0, "model": 0.0}
    part_of_phase = {"data": "data", "forward_backward": "model", "optimizer_step": "model"}

    def add_phase_time(phase: str, seconds: float) -> None:
        parts[part_of_phase[phase]] += seconds

    trainer.add_timing_hook(add_phase_time)

    step = 0

    def loop_step(level: str) -> tuple[float, float, float, float]:
        nonlocal step
        while trainer.pattern[step % len(trainer.pattern)] != level:  # skip to a step of that level (untimed)
            trainer.run_step(step)
            step += 1
        parts.update(data=0.0, model=0.0)
        wall, cpu = clock()
        trainer.run_step(step)
        end_wall, end_cpu = clock()
        step += 1
        return end_wall - wall, end_cpu - cpu, parts["data"], parts["model"]

    # Warm-up (first-time allocations, cuDNN's first algorithm choices): bare steps of each level, the first one
    # counting the FLOPs, then the peak memory of the bare computation; then, as the plan says, untimed loop steps in
    # schedule order (stream start, first decode).
    flops = {level: counted_bare_step(level) for level in levels}
    for _ in range(args.bare_warmup - 1):
        for level in levels:
            bare_step(level)
    rss_bare, cuda_bare = peak_rss_mib(), cuda_peak_gib()
    for _ in range(args.loop_warmup):
        trainer.run_step(step)
        step += 1
    loop = {level: [] for level in levels}
    bare = {level: [] for level in levels}
    bare_steps = args.bare_steps or args.steps
    if args.consecutive:
        # Loop steps back to back, then bare steps: the DataLoader gets no free time to refill between loop steps.
        for _ in range(args.steps):
            for level in levels:
                loop[level].append(loop_step(level))
        for _ in range(bare_steps):
            for level in levels:
                bare[level].append(bare_step(level))
    else:
        for i in range(args.steps):
            for level in levels:
                # alternate which kind goes first, so a slow spell of the machine hits both alike
                if i % 2 == 0:
                    loop[level].append(loop_step(level))
                    bare[level].append(bare_step(level))
                else:
                    bare[level].append(bare_step(level))
                    loop[level].append(loop_step(level))
    rss_loop, cuda_loop = peak_rss_mib(), cuda_peak_gib()

    # Memory-bank refresh cost (policy-dependent extra work): re-encode 8 silent videos.
    refresh_per_row = None
    if trainer.use_bank:
        rows = min(8, len(trainer.bank))
        start = clock()[0]
        trainer._refresh(torch.arange(rows))
        refresh_per_row = (clock()[0] - start) / rows
    return {
        "batch_size": batch,
        "level_batch": level_batch,
        "steps": args.steps,
        "bare_steps": bare_steps,
        "setup_seconds": setup_seconds,
        "loop": {level: statistics.median(x[0] for x in v) for level, v in loop.items()},
        "bare": {level: statistics.median(x[0] for x in v) for level, v in bare.items()},
        "loop_sum": {level: sum(x[0] for x in v) for level, v in loop.items()},
        "loop_cpu": {level: statistics.median(x[1] for x in v) for level, v in loop.items()},
        "bare_cpu": {level: statistics.median(x[1] for x in v) for level, v in bare.items()},
        # the loop's own share of its step: (step - model) / model, and the data's share of that
        "direct": {level: statistics.median((x[0] - x[3]) / x[3] for x in v) for level, v in loop.items()},
        "data_share": {level: statistics.median(x[2] / x[3] for x in v) for level, v in loop.items()},
        "flops": flops,
        "loop_all": loop,
        "bare_all": bare,
        "rss_bare_mib": rss_bare,
        "rss_loop_mib": rss_loop,
        "cuda_peak_bare_gib": cuda_bare,
        "cuda_peak_loop_gib": cuda_loop,
        "device_type": device.type,
        "device_name": torch.cuda.get_device_name(device) if on_cuda else None,
        "mixed_precision": trainer.accelerator.mixed_precision,
        "bank_rows": len(trainer.bank) if trainer.use_bank else 0,
        "refresh_seconds_per_row": refresh_per_row,
        "threads": torch.get_num_threads(),
    }


# -- driver -------------------------------------------------------------------------------------------------------


class Plan(NamedTuple):
    """How one batch size is measured."""

    steps: int  # timed loop steps of each level (and bare steps, unless bare_steps says otherwise)
    levels: str  # the levels timed
    loop_warmup: int  # untimed loop steps before timing, in schedule order (1: one clip step)
    bare_warmup: int = 1  # untimed bare steps of each level (the first counts the FLOPs)
    bare_steps: int | None = None
    consecutive: bool = False  # loop steps back to back, then bare steps (else alternating step by step)
    bank_batch_size: int = 16


# Timed steps per level and kind, and the levels timed, per batch size (a step at 32 takes tens of seconds here).
# At 16 and 32 the bare warm-up in the same process has already made the first-time allocations of the loop's
# shapes, and a loop warm-up step would cost tens of seconds. On a GPU steps take a fraction of a second: more of
# them, back to back (see the module docstring).
PLANS = {
    "cpu": {8: Plan(2, "clip,video", 1), 16: Plan(1, "clip,video", 0), 32: Plan(1, "clip", 0)},
    "quick": {8: Plan(1, "clip,video", 1)},
    "gpu": {128: Plan(20, "clip,video", 6, bare_warmup=2, bare_steps=10, consecutive=True, bank_batch_size=64)},
}


def run_worker(batch: int, video_batch: int, plan: Plan, steps: int, args, tmp: Path, tokenizer: Path,
               data: Path) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", str(batch), "--video_batch", str(video_batch),
               "--steps", str(steps), "--levels", plan.levels, "--num_frames", str(args.num_frames),
               "--tmp", str(tmp), "--tokenizer", str(tokenizer), "--data", str(data),
               "--loop_warmup", str(plan.loop_warmup), "--bare_warmup", str(plan.bare_warmup),
               "--bare_steps", str(plan.bare_steps or steps), "--bank_batch_size", str(plan.bank_batch_size),
               "--mixed_precision", args.mixed_precision,
               "--dataloader_num_workers", str(args.dataloader_num_workers)]
    command += (["--consecutive"] if plan.consecutive else []) + (["--cpu"] if args.cpu else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in result.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"worker for batch size {batch} failed:\n{result.stderr[-3000:]}")


def _ratio(loop: dict, bare: dict) -> float:
    return sum(loop.values()) / sum(bare.values()) - 1


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _device_line(args) -> str:
    """Where the workers will run, as accelerate decides it (`--cpu`, else CUDA when there is a GPU)."""
    import torch

    if not args.cpu and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), {os.cpu_count()} CPU cores"
    return f"CPU, {os.cpu_count()} cores"


def print_throughput(rows: list[dict], args) -> None:
    """Samples/s, FLOPs per step and MFU per batch size and level, and peak GPU memory."""
    print(f"\n{'batch':>5} {'level':>5} | {'loop /s':>8} {'sustained':>9} {'bare /s':>8} | {'GFLOP/step':>10} | "
          f"{'MFU loop':>8} {'MFU bare':>8} | {'GPU peak bare':>13} {'GPU peak loop':>13}")
    peaks = set()
    for result in rows:
        peak = args.peak_tflops or peak_tflops_for(result["device_name"], result["mixed_precision"])
        peaks.add((peak, result["device_name"]))
        for level in result["loop"]:
            n = result["level_batch"][level]
            loop, bare, flops = result["loop"][level], result["bare"][level], result["flops"][level]
            sustained = n * len(result["loop_all"][level]) / result["loop_sum"][level]
            mfu_loop, mfu_bare = (model_flops_utilisation(flops, seconds, peak) for seconds in (loop, bare))
            gpu = [f"{result[key]:>9.1f} GiB" if result[key] is not None else f"{'n/a':>13}"
                   for key in ("cuda_peak_bare_gib", "cuda_peak_loop_gib")]
            print(f"{n:>5} {level:>5} | {n / loop:>8.1f} {sustained:>9.1f} {n / bare:>8.1f} | {flops / 1e9:>10.1f} | "
                  f"{_fmt(mfu_loop, '>8.1%'):>8} {_fmt(mfu_bare, '>8.1%'):>8} | {gpu[0]} {gpu[1]}")
    for peak, name in sorted(peaks, key=str):
        if args.peak_tflops:
            print(f"MFU against --peak_tflops {args.peak_tflops:g} TFLOP/s")
        elif peak:
            print(f"MFU against {peak:g} TFLOP/s, the datasheet's dense bf16 peak of the {name}")
        else:
            print("MFU n/a: no peak known for this device and precision (the table has dense bf16 peaks of some "
                  "NVIDIA GPUs, used under --mixed_precision bf16); pass --peak_tflops")
    print("samples/s: clips/s at the clip level, videos/s at the video level; per step medians, 'sustained' over the "
          "summed timed loop steps")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="batch size 8 only, one timed step of each level and kind (~3-4 min); = --plan quick")
    parser.add_argument("--plan", choices=tuple(PLANS), default="cpu",
                        help="cpu: batch sizes 8/16/32 (default); quick: batch size 8; gpu: batch size 128, more "
                             "steps, back to back, and a bigger OphVL-mini (see the module docstring)")
    parser.add_argument("--batch_sizes", default=None,
                        help="per-level batch sizes to measure (default: the plan's: 8,16,32; 8 with --quick; 128 "
                             "with --plan gpu)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps of each level and kind (default: the plan's: 2 at 8, 1 at 16 and 32, 1 with "
                             "--quick; 20 loop and 10 bare steps with --plan gpu)")
    parser.add_argument("--num_frames", type=int, default=4)
    parser.add_argument("--data", default=None, help="an OphVL-mini folder (default: generate the plan's, ~30 s)")
    parser.add_argument("--make_data", default=None, metavar="DIR",
                        help="only generate the plan's OphVL-mini into DIR (for a machine without PyAV) and exit")
    parser.add_argument("--mixed_precision", choices=("no", "bf16", "fp16"), default="no",
                        help="the trainer's --mixed_precision (autocast of the model's forward; default no)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is there (--cpu true)")
    parser.add_argument("--dataloader_num_workers", type=int, default=0,
                        help="DataLoader workers per stream (default 0; a level's batch is lowered to what each "
                             "reader's shards hold, see samples_per_reader)")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="peak TFLOP/s that MFU is measured against (default: the datasheet's dense bf16 peak "
                             "by CUDA device name under --mixed_precision bf16, else MFU is n/a)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--video_batch", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--levels", default="clip,video", help=argparse.SUPPRESS)
    parser.add_argument("--loop_warmup", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--bare_warmup", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--bare_steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bank_batch_size", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--consecutive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        import logging

        logging.disable(logging.WARNING)
        result = worker(args)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    plan_name = "quick" if args.quick else args.plan
    if args.make_data:
        summary = make_data(Path(args.make_data), plan_name)
        print(f"OphVL-mini for the {plan_name} plan in {args.make_data}: " + ", ".join(
            f"{summary[s]['samples']} {s} in {summary[s]['shards']} shards" for s in ("clips", "videos", "silent")))
        return 0
    plan = PLANS[plan_name]
    sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else list(plan)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp = Path(tmp)
        data = Path(args.data) if args.data else tmp / "ophvl-mini"
        if not args.data:
            print(f"generating OphVL-mini ({plan_name} plan) ...", flush=True)
            make_data(data, plan_name)
        tokenizer = make_tokenizer(data, tmp / "tokenizer")
        counts = {level: shard_sample_counts(data, subset) for level, subset in LEVEL_SUBSETS.items()}
        per_reader = {level: samples_per_reader(counts[level], args.dataloader_num_workers) for level in counts}
        print(f"default architecture (ResNet-50 + BERT-base, random init), {args.num_frames} frames at 224 px, "
              f"clip and video steps alternating, retrieval on, 1 process on {_device_line(args)}; mixed precision "
              f"{args.mixed_precision}, {args.dataloader_num_workers} DataLoader workers per stream; medians per "
              "step, wall clock and process CPU time\n", flush=True)
        print(f"{'batch':>5} {'level':>5} {'n':>2} | {'loop s':>7} {'bare s':>7} {'overhead':>8} | {'loop cpu':>8} "
              f"{'bare cpu':>8} {'overhead':>8} | {'in-step':>8} {'data':>6} | {'peak RSS bare':>13} "
              f"{'peak RSS loop':>13}", flush=True)
        rows, notes = [], []
        for batch in sizes:
            size_plan = plan.get(batch, Plan(1, "clip,video", 1))
            steps = args.steps or size_plan.steps
            if args.steps and size_plan.bare_steps:
                size_plan = size_plan._replace(bare_steps=args.steps)
            # A batch no reader can fill would stop the stream ("gave no full batch"): lower it, and say so.
            level_batch = {level: min(batch, per_reader[level]) for level in LEVEL_SUBSETS}
            for level in size_plan.levels.split(","):
                if level_batch[level] < batch:
                    readers = max(1, min(args.dataloader_num_workers, len(counts[level])))
                    notes.append(f"note: the {level} level is measured at batch {level_batch[level]}, not {batch}: "
                                 f"{len(counts[level])} {LEVEL_SUBSETS[level]} shards dealt out to {readers} "
                                 f"DataLoader readers give each at least {per_reader[level]} samples per epoch")
            result = run_worker(level_batch["clip"], level_batch["video"], size_plan, steps, args, tmp, tokenizer,
                                data)
            result["batch_size"] = batch
            rows.append(result)
            for level in result["loop"]:
                loop, bare = result["loop"][level], result["bare"][level]
                loop_cpu, bare_cpu = result["loop_cpu"][level], result["bare_cpu"][level]
                n = result["level_batch"][level]
                print(f"{n:>5} {level:>5} {steps:>2} | {loop:>7.2f} {bare:>7.2f} {loop / bare - 1:>+8.1%} | "
                      f"{loop_cpu:>8.2f} {bare_cpu:>8.2f} {loop_cpu / bare_cpu - 1:>+8.1%} | "
                      f"{result['direct'][level]:>+8.1%} {result['data_share'][level]:>+6.1%} | "
                      f"{result['rss_bare_mib']:>9.0f} MiB {result['rss_loop_mib']:>9.0f} MiB", flush=True)
            wall, cpu = _ratio(result["loop"], result["bare"]), _ratio(result["loop_cpu"], result["bare_cpu"])
            direct = statistics.mean(result["direct"].values())
            rate = len(result["loop"]) / sum(result["loop"].values())
            bare_rate = len(result["bare"]) / sum(result["bare"].values())
            verdict = "meets" if direct <= OVERHEAD_TARGET else "misses"
            print(f"{batch:>5} {'all':>5} {'':>2} | loop {rate:.3f} steps/s, bare {bare_rate:.3f} steps/s: overhead "
                  f"{wall:+.1%} wall, {cpu:+.1%} CPU side by side, {direct:+.1%} within the loop's steps "
                  f"({verdict} the {OVERHEAD_TARGET:.0%} target); setup "
                  f"{result['setup_seconds']:.0f}s" + (f" incl. a bank of {result['bank_rows']} silent videos"
                                                           if result["bank_rows"] else ""), flush=True)
        print_throughput(rows, args)
        print()
        for result in rows:
            steps_text = "; ".join(
                f"{kind} {level}: " + " ".join(f"{x[0]:.3g}" for x in result[f"{kind}_all"][level])
                for kind in ("loop", "bare") for level in result["loop_all"])
            print(f"batch {result['batch_size']} step times (s, wall): {steps_text}")
        for result in (r for r in rows if r["refresh_seconds_per_row"] is not None):
            print(f"batch {result['batch_size']}: re-encoding one bank row (a silent video, {args.num_frames} frames) "
                  f"costs {result['refresh_seconds_per_row']:.3f}s, so --bank_refresh_rows_per_step 4 adds about "
                  f"{4 * result['refresh_seconds_per_row']:.2f}s per step (off while timing)")
        skipped = [str(r["batch_size"]) for r in rows if len(r["loop"]) < 2]
        if skipped:
            print(f"note: only clip steps are timed at batch size {', '.join(skipped)}, and with few timed steps per "
                  "level the medians are noisy: a step there takes tens of seconds on 2 cores")
        for note in notes:
            print(note)
        print(f"\ntotal {time.perf_counter() - began:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
