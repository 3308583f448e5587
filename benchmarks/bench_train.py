#!/usr/bin/env python
"""Overhead of the OphCLIP pretraining loop over the bare training computation, side by side in one run.

For each batch size (per level, one process) a fresh worker process builds the real `Pretrainer` of
`train_accelerate.py` on OphVL-mini at the default architecture (`OphCLIPConfig()`: ResNet-50 + BERT-base, random
init), 4 frames at 224 px, both levels in alternation (`--schedule cv`) with retrieval on (the memory bank is built
before timing). Then it alternates, step after step:

- **loop**: one iteration of the real loop (`Pretrainer.run_step`): read and decode the next batch from the tar
  shards, collate (resize, normalise, tokenize), embed through the training module, gather, retrieve from the bank,
  the video- or clip-level loss, backward, gradient clipping, AdamW + scheduler step, logit-scale clamp, metric
  reduction and the JSON-lines log;
- **bare**: forward + loss + backward + AdamW step of the same module on pre-made tensors (one real batch of each level,
  collated once before timing), alternating levels the same way, no retrieval term.

Timings are medians over the timed steps of each kind, in wall-clock and in process CPU time (steadier when other
work shares the cores); the side-by-side overhead is `loop / bare - 1`. On a shared machine single steps vary by
tens of percent, so each loop step is also split from the inside: the model's share (forward + loss + backward inside
`CachedFeatureAccumulator.accumulate_step`, and the AdamW step) is timed, and the rest of the step is the loop's own
work: the **in-step overhead** `(step - model) / model`, measured under the same machine conditions as the model
work it is compared with. The `data` column is the share of it spent reading, decoding and collating the batch. The
target is an overhead <= 10% on CPU (judged on the in-step number). The optimiser step counts as model work in
both measurements; gradient clipping, the scheduler, the metric reduction and the JSON-lines log count as loop
overhead. Memory-bank refreshes are
extra model work chosen by policy (`--bank_refresh_rows_per_step`), not loop overhead: they are off while timing,
and the cost of re-encoding silent videos is measured and printed separately. Peak memory is the worker's peak RSS
(`resource.getrusage`) after the bare warm-up step and after the whole run.

The tokenizer is a word-level BERT vocabulary built from OphVL-mini's own texts (the Hub is not reachable here), so
texts are about as long in tokens as they are in words; the text tower is BERT-base with that vocabulary size.

Usage:
    python benchmarks/bench_train.py            # batch sizes 8/16/32 (only clip steps at 32); ~8-9 min on 2 cores
    python benchmarks/bench_train.py --quick    # batch size 8, one timed step per level and kind; ~2-3 min
    python benchmarks/bench_train.py --data ophvl-mini --batch_sizes 8,16
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

OVERHEAD_TARGET = 0.10
RESULT_PREFIX = "BENCH_RESULT "


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# -- data and tokenizer -------------------------------------------------------------------------------------------


def word_tokenizer(data: Path, out: Path) -> Path:
    """A word-level BERT tokenizer over every word of OphVL-mini's narrations and title summaries."""
    from transformers import BertTokenizer

    from datasets_ophvl.format import record_text
    from datasets_ophvl.shards import iter_tar_samples

    words = set()
    for subset in ("clips", "videos", "silent"):
        for shard in sorted((data / "data" / subset).glob("train-*.tar")):
            for _, sample in iter_tar_samples(shard):
                if "json" in sample:
                    text = record_text(subset, json.loads(sample["json"]))
                    words.update(re.findall(r"\w+|[^\w\s]", text.lower()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(out / "vocab.txt"), model_max_length=128).save_pretrained(out)
    return out


# -- worker: one batch size ---------------------------------------------------------------------------------------


def worker(args) -> dict:
    import torch

    from ophclip_train.config import parse_config
    from ophclip_train.objectives import clip_level_loss, video_level_loss
    from ophclip_train.trainer import Pretrainer

    batch = args.worker
    out = Path(args.tmp) / f"run-{batch}"
    config = parse_config([
        "--model_config", "default", "--tokenizer_name_or_path", str(args.tokenizer),
        "--data_path", str(args.data), "--image_size", "224", "--num_frames", str(args.num_frames),
        "--clip_batch_size", str(batch), "--video_batch_size", str(batch), "--bank_batch_size", "16",
        # a clip-only measurement trains clip steps only (no video stream, no bank)
        "--schedule", "cv" if "video" in args.levels else "c", "--retrieval", "true", "--retrieval_k", "4",
        "--bank_refresh_rows_per_step", "0", "--bank_full_refresh_every", "0",
        "--max_steps", "1000", "--save_steps", "0", "--logging_steps", "1", "--report_to", "jsonl",
        "--learning_rate", "1e-5", "--output_dir", str(out), "--seed", "0",
    ])
    trainer = Pretrainer(config)
    began = time.perf_counter()
    trainer.setup()
    setup_seconds = time.perf_counter() - began

    module, optimizer = trainer.module, trainer.optimizer
    logit_scale = trainer.unwrapped.model.logit_scale
    keys = ("input_ids", "attention_mask", "token_type_ids", "pixel_values_videos", "frame_mask")
    premade = {level: {k: v.clone() for k, v in next(trainer.streams[level]).items() if k in keys}
               for level in args.levels.split(",")}

    def bare_step(level: str) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        module.train()
        out_ = module(**premade[level])
        if level == "clip":
            loss = clip_level_loss(out_["text_embeds"], out_["video_embeds"], logit_scale)["loss"]
        else:
            loss = video_level_loss(out_["text_embeds"], out_["video_embeds"], logit_scale=logit_scale)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - wall, time.process_time() - cpu

    # Inside each loop step, time the model's share (forward + loss + backward in the accumulator, the optimiser
    # step) and the data's: what is left is the loop's own work, measured within the same step (robust to a busy
    # machine, unlike the side-by-side comparison).
    from ophclip_train import objectives

    parts = {"data": 0.0, "model": 0.0}

    class TimedStream:
        def __init__(self, stream):
            self.stream = stream

        def __next__(self):
            start = time.perf_counter()
            batch_ = next(self.stream)
            parts["data"] += time.perf_counter() - start
            return batch_

        def __getattr__(self, name):
            return getattr(self.stream, name)

    for level in list(trainer.streams):
        trainer.streams[level] = TimedStream(trainer.streams[level])
    accumulate = objectives.CachedFeatureAccumulator.accumulate_step
    optimizer_step = optimizer.step

    def timed_accumulate(self, *a, **k):
        start = time.perf_counter()
        try:
            return accumulate(self, *a, **k)
        finally:
            parts["model"] += time.perf_counter() - start

    def timed_optimizer_step(*a, **k):
        start = time.perf_counter()
        try:
            return optimizer_step(*a, **k)
        finally:
            parts["model"] += time.perf_counter() - start

    objectives.CachedFeatureAccumulator.accumulate_step = timed_accumulate
    optimizer.step = timed_optimizer_step  # the bare steps go through it too; only loop steps read `parts`

    step = 0

    def loop_step(level: str) -> tuple[float, float, float, float]:
        nonlocal step
        while trainer.pattern[step % len(trainer.pattern)] != level:  # skip to a step of that level (untimed)
            trainer.run_step(step)
            step += 1
        parts.update(data=0.0, model=0.0)
        wall, cpu = time.perf_counter(), time.process_time()
        trainer.run_step(step)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        step += 1
        return wall, cpu, parts["data"], parts["model"]

    levels = args.levels.split(",")
    # Warm-up (first-time allocations): a bare step of each level, then the peak memory of the bare computation;
    # then, as the plan says, a loop step of the first level (stream start, first decode).
    for level in levels:
        bare_step(level)
    rss_bare = peak_rss_mib()
    if args.loop_warmup:
        loop_step(levels[0])
    loop = {level: [] for level in levels}
    bare = {level: [] for level in levels}
    for i in range(args.steps):
        for level in levels:
            # alternate which kind goes first, so a slow spell of the machine hits both alike
            if i % 2 == 0:
                loop[level].append(loop_step(level))
                bare[level].append(bare_step(level))
            else:
                bare[level].append(bare_step(level))
                loop[level].append(loop_step(level))
    rss_loop = peak_rss_mib()

    # Memory-bank refresh cost (policy-dependent extra work): re-encode 8 silent videos.
    refresh_per_row = None
    if trainer.use_bank:
        rows = min(8, len(trainer.bank))
        start = time.perf_counter()
        trainer._refresh(torch.arange(rows))
        refresh_per_row = (time.perf_counter() - start) / rows
    return {
        "batch_size": batch,
        "steps": args.steps,
        "setup_seconds": setup_seconds,
        "loop": {level: statistics.median(x[0] for x in v) for level, v in loop.items()},
        "bare": {level: statistics.median(x[0] for x in v) for level, v in bare.items()},
        "loop_cpu": {level: statistics.median(x[1] for x in v) for level, v in loop.items()},
        "bare_cpu": {level: statistics.median(x[1] for x in v) for level, v in bare.items()},
        # the loop's own share of its step: (step - model) / model, and the data's share of that
        "direct": {level: statistics.median((x[0] - x[3]) / x[3] for x in v) for level, v in loop.items()},
        "data_share": {level: statistics.median(x[2] / x[3] for x in v) for level, v in loop.items()},
        "loop_all": loop,
        "bare_all": bare,
        "rss_bare_mib": rss_bare,
        "rss_loop_mib": rss_loop,
        "bank_rows": len(trainer.bank) if trainer.use_bank else 0,
        "refresh_seconds_per_row": refresh_per_row,
        "threads": torch.get_num_threads(),
    }


# -- driver -------------------------------------------------------------------------------------------------------


# Timed steps per level and kind, and the levels timed, per batch size (a step at 32 takes tens of seconds here).
# At 16 and 32 the bare warm-up in the same process has already made the first-time allocations of the loop's
# shapes, and a loop warm-up step would cost tens of seconds.
PLAN = {8: (2, "clip,video", True), 16: (1, "clip,video", False), 32: (1, "clip", False)}
QUICK_PLAN = {8: (1, "clip,video", True)}


def run_worker(batch: int, steps: int, levels: str, loop_warmup: bool, args, tmp: Path, tokenizer: Path,
               data: Path) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", str(batch), "--steps", str(steps),
               "--levels", levels, "--num_frames", str(args.num_frames), "--tmp", str(tmp),
               "--tokenizer", str(tokenizer), "--data", str(data)] + (["--loop_warmup"] if loop_warmup else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in result.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"worker for batch size {batch} failed:\n{result.stderr[-3000:]}")


def _ratio(loop: dict, bare: dict) -> float:
    return sum(loop.values()) / sum(bare.values()) - 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="batch size 8 only, one timed step of each level and kind (~2-3 min)")
    parser.add_argument("--batch_sizes", default=None,
                        help="per-level batch sizes to measure (default 8,16,32; with --quick 8)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps of each level and kind (default: 2 at 8, 1 at 16 and 32, 1 with --quick)")
    parser.add_argument("--num_frames", type=int, default=4)
    parser.add_argument("--data", default=None, help="an OphVL-mini folder (default: generate one, ~20 s)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--levels", default="clip,video", help=argparse.SUPPRESS)
    parser.add_argument("--loop_warmup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        import logging

        logging.disable(logging.WARNING)
        result = worker(args)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    from datasets_ophvl import generate_ophvl_mini

    plan = QUICK_PLAN if args.quick else PLAN
    sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else list(plan)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp = Path(tmp)
        data = Path(args.data) if args.data else tmp / "ophvl-mini"
        if not args.data:
            print("generating OphVL-mini (default size) ...", flush=True)
            generate_ophvl_mini(data, size="default", progress=False)
        tokenizer = word_tokenizer(data, tmp / "tokenizer")
        print(f"default architecture (ResNet-50 + BERT-base, random init), {args.num_frames} frames at 224 px, "
              f"clip and video steps alternating, retrieval on, 1 process, {os.cpu_count()} CPU cores; "
              "medians per step, wall clock and process CPU time\n", flush=True)
        print(f"{'batch':>5} {'level':>5} {'n':>2} | {'loop s':>7} {'bare s':>7} {'overhead':>8} | {'loop cpu':>8} "
              f"{'bare cpu':>8} {'overhead':>8} | {'in-step':>8} {'data':>6} | {'peak RSS bare':>13} "
              f"{'peak RSS loop':>13}", flush=True)
        rows = []
        for batch in sizes:
            steps, levels, loop_warmup = plan.get(batch, (1, "clip,video", True))
            steps = args.steps or steps
            result = run_worker(batch, steps, levels, loop_warmup, args, tmp, tokenizer, data)
            rows.append(result)
            for level in result["loop"]:
                loop, bare = result["loop"][level], result["bare"][level]
                loop_cpu, bare_cpu = result["loop_cpu"][level], result["bare_cpu"][level]
                print(f"{batch:>5} {level:>5} {steps:>2} | {loop:>7.2f} {bare:>7.2f} {loop / bare - 1:>+8.1%} | "
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
        print()
        for result in rows:
            steps_text = "; ".join(
                f"{kind} {level}: " + " ".join(f"{x[0]:.1f}" for x in result[f"{kind}_all"][level])
                for kind in ("loop", "bare") for level in result["loop_all"])
            print(f"batch {result['batch_size']} step times (s, wall): {steps_text}")
        for result in (r for r in rows if r["refresh_seconds_per_row"] is not None):
            print(f"batch {result['batch_size']}: re-encoding one bank row (a silent video, {args.num_frames} frames) "
                  f"costs {result['refresh_seconds_per_row']:.2f}s, so --bank_refresh_rows_per_step 4 adds about "
                  f"{4 * result['refresh_seconds_per_row']:.1f}s per step (off while timing)")
        skipped = [str(r["batch_size"]) for r in rows if len(r["loop"]) < 2]
        if skipped:
            print(f"note: only clip steps are timed at batch size {', '.join(skipped)}, and with few timed steps per "
                  "level the medians are noisy: a step there takes tens of seconds on 2 cores")
        print(f"\ntotal {time.perf_counter() - began:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
