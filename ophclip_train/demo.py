"""The project's main job on its embedded default, in one command: OphVL-mini -> tokenizer -> pretraining with the
full hierarchical retrieval-augmented objective and its ablation -> zero-shot evaluation -> model folder, model card,
leaderboard, phase timelines and attention maps, all in one output folder.

```bash
make demo                                                    # a fresh machine: venv, install, then this
python -m ophclip_train.demo --output-dir ophclip-demo       # or `ophclip-demo --output-dir ...` once installed
```

Steps (each prints what it does; training shows a progress bar):

1. generate OphVL-mini (`datasets_ophvl.mini`): narrated clips, titled videos, silent videos, a labelled benchmark;
2. train a WordPiece tokenizer on its narrations, title summaries and titles (`ophclip_train.tokenizer`);
3. pretrain a small OphCLIP (the `tiny` preset: a two-stage ResNet and a four-layer BERT) with `train_accelerate.py`:
   clip-level and video-level InfoNCE in alternation with silent-video retrieval augmentation and memory-bank refresh;
4. the ablation: the same run with `--retrieval false` (`--skip-ablation` leaves it and its evaluation out);
5. zero-shot phase recognition and zero-shot instrument recognition of both on the two held-out benchmarks,
   clinic A (the narrated data's domain) and clinic B (the domain only the silent videos show) (`evaluate_suite`),
   written to `results.jsonl`, `leaderboard.md` and phase-timeline / confusion-matrix plots;
6. the model folder `model/` (weights, processor, remote code, `.eval_results/`, and the model card with the
   evaluation table), loadable with `AutoModel.from_pretrained("model", trust_remote_code=True)`;
7. text-conditioned Grad-CAM maps of the model for one frame of each phase (`ophclip attention`).

The output folder (`summary.json` lists every file) is refused when it exists and is not empty, unless `--overwrite`,
and even then only when this command wrote it. On 2 CPU cores the default run takes about 4-6 minutes.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


MARKER = ".ophclip-demo.json"
MODEL_ID = "ophclip-demo"
ABLATION_ID = "ophclip-demo-no-retrieval"
PHASE_BENCHMARK = "ophvl-mini-phase"
INSTRUMENT_BENCHMARK = "ophvl-mini-instruments"
# The two held-out benchmarks of OphVL-mini: clinic A (the narrated data's domain) and clinic B (the domain only the
# silent videos show): name -> (folder under the dataset, phase benchmark, instrument benchmark).
BENCHMARKS = {
    "clinic A": ("benchmark", PHASE_BENCHMARK, INSTRUMENT_BENCHMARK),
    "clinic B": ("benchmark-shifted", "ophvl-mini-shifted-phase", "ophvl-mini-shifted-instruments"),
}
SPLIT = "test"

# The pretraining recipe of the demo; every key is an option of `train_accelerate.py --help`.
TRAINING_OPTIONS = {
    "model_config": "tiny",
    "image_size": 64,
    "num_frames": 4,
    "max_text_length": 160,  # a title summary is up to ~130 tokens; its disease cause comes after ~80
    "clip_batch_size": 32,
    "video_batch_size": 8,
    "bank_batch_size": 20,
    "schedule": "clip:3,video:1",
    "retrieval_k": 4,
    "retrieval_weight": 0.5,
    "bank_refresh_rows_per_step": 4,
    "learning_rate": 1e-3,
    "warmup_ratio": 0.05,
    "weight_decay": 0.1,
    "seed": 42,
    "save_steps": 100,
    "save_total_limit": 1,
    "logging_steps": 10,
    "report_to": "jsonl",
}


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why."""


def _say(text: str) -> None:
    print(text, flush=True)


def _check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty folder; with `overwrite`, empty it, but only if the demo wrote it."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DemoError(f"{out} exists and is not a folder")
    entries = list(out.iterdir())
    if not entries:
        return
    if not overwrite:
        raise DemoError(f"output folder {out} exists and is not empty; pass --overwrite to replace a previous demo")
    if not (out / MARKER).is_file():
        raise DemoError(f"refusing to overwrite {out}: the demo did not write it (no {MARKER})")
    for path in entries:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _options(values: dict) -> list[str]:
    args = []
    for name, value in values.items():
        args += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return args


def pretrain(out_dir: Path, data: Path, tokenizer: Path, max_steps: int, **options) -> Path:
    """Run `train_accelerate.py` with the demo recipe (`TRAINING_OPTIONS`, overridden by `options`, e.g.
    `retrieval=False`) in a child process (its own Accelerate state; its progress bar on this terminal) and return its
    final model folder. Retrieval precision is logged against OphVL-mini's hidden ground truth when it is there."""
    truth = data / "hidden" / "ground_truth.jsonl"
    options = {**TRAINING_OPTIONS, "data_path": data, "tokenizer_name_or_path": tokenizer, "output_dir": out_dir,
               "max_steps": max_steps, **({"retrieval_ground_truth": truth} if truth.is_file() else {}), **options}
    command = [sys.executable, "-m", "train_accelerate", *_options(options)]
    completed = subprocess.run(command)
    if completed.returncode != 0:
        raise DemoError(f"pretraining failed (exit code {completed.returncode}); the command was: "
                        + " ".join(command))
    return out_dir / "final"


def run_metrics(run_dir: Path) -> list[dict]:
    """The logged records of a pretraining run (one per logging window), in order."""
    from .tracking import read_metrics

    return read_metrics(run_dir / "logs" / "pretrain" / "metrics.jsonl")


def clip_losses(run_dir: Path) -> list[float]:
    """The logged clip-level losses of a run (one per logging window), in order."""
    return [r["clip/loss"] for r in run_metrics(run_dir) if "clip/loss" in r]


def evaluate(model_dir: Path, model_id: str, data: Path, results, plots: Path | None = None,
             split: str = SPLIT) -> dict:
    """Zero-shot phase and instrument recognition on both OphVL-mini benchmarks (`BENCHMARKS`); returns
    `{clinic: {"phase": metrics, "instruments": metrics, "plots": [...]}}`. Phase timelines of clinic A go to `plots`.
    """
    from evaluate_suite.models import OphCLIPEncoder
    from evaluate_suite.protocols import zero_shot_instruments, zero_shot_phase

    encoder = OphCLIPEncoder.from_pretrained(model_dir, device="cpu")
    encoder.model_id = model_id
    scores = {}
    for clinic, (folder, phase_benchmark, instrument_benchmark) in BENCHMARKS.items():
        root = data / folder
        phase = zero_shot_phase(encoder, phase_benchmark, root, split, smooth_window=5,
                                plots_dir=plots if clinic == "clinic A" else None, results_file=results)
        instruments = zero_shot_instruments(encoder, instrument_benchmark, root, split, results_file=results)
        scores[clinic] = {"phase": phase["metrics"], "instruments": instruments["metrics"], "plots": phase["plots"]}
    return scores


def phase_frames(benchmark_root: Path, out: Path) -> list[tuple[str, Path]]:
    """One PNG per phase: the middle frame of its first occurrence in the first test video."""
    import decord
    import matplotlib.image
    import numpy as np

    from evaluate_suite.registry import get_benchmark

    spec = get_benchmark(PHASE_BENCHMARK)
    annotations, _ = spec.load(benchmark_root, SPLIT)
    video = annotations[0]
    reader = decord.VideoReader(str(video.path))
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for index, name in enumerate(spec.classes):
        where = np.flatnonzero(video.phases == index)
        if not len(where):
            continue
        breaks = np.flatnonzero(np.diff(where) != 1)
        first_run = where[: breaks[0] + 1] if len(breaks) else where
        frame = reader[int(first_run[len(first_run) // 2])].asnumpy()
        path = out / f"{index + 1}-{name.lower().replace(' ', '-')}.png"
        matplotlib.image.imsave(path, frame)
        frames.append((name, path))
    return frames


def attention_maps(model_dir: Path, benchmark_root: Path, out: Path) -> list[Path]:
    """Grad-CAM of the model for each phase's prompt sentence on a frame of that phase (`ophclip attention`)."""
    from evaluate_suite.registry import get_benchmark

    texts = get_benchmark(PHASE_BENCHMARK).class_texts()
    written = []
    for name, frame in phase_frames(benchmark_root, out / "frames"):
        target = out / frame.stem
        # The command, as a user runs it (the demo sits on the libraries; the command sits above them).
        command = [sys.executable, "-m", "ophclip_cli", "attention", str(frame), "--model", str(model_dir), "--text",
                   texts[name][0], "--output-dir", str(target), "--device", "cpu"]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            raise DemoError(f"ophclip attention failed for {frame}: {completed.stderr.strip()[-500:]}")
        written += sorted(target.glob("*.png"))
    return written + [tile_images(written, out / "overview.png")]


def tile_images(paths: list[Path], out: Path, columns: int = 2) -> Path:
    """One PNG with the images of `paths` in a grid (the attention overlays, for the README)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image
    import matplotlib.pyplot as plt

    images = [matplotlib.image.imread(path) for path in paths]
    rows = -(-len(images) // columns)
    height, width = images[0].shape[:2]
    figure, axes = plt.subplots(rows, columns, figsize=(columns * width / 100, rows * height / 100), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image in zip(axes.flat, images):
        ax.imshow(image)
    figure.subplots_adjust(left=0, right=1, top=1, bottom=0, wspace=0, hspace=0)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def portable_options(options: dict, root: Path) -> dict:
    """The run's options with paths inside the demo folder made relative to it: a card is read elsewhere."""
    prefix = str(root).rstrip("/") + "/"
    return {name: value[len(prefix):] if isinstance(value, str) and value.startswith(prefix) else value
            for name, value in options.items()}


def write_model_card(model_dir: Path, records, data_stats: dict, root: Path) -> None:
    """The model card of the demo model, with its evaluation table, and its `.eval_results/`; paths under `root`
    (the demo folder) are written relative to it."""
    from evaluate_suite.leaderboard import published_metrics
    from model_cards import build_model_card, model_index, write_eval_results

    rows = published_metrics(records, MODEL_ID)
    options = json.loads((model_dir / "pretraining_config.json").read_text())
    card = build_model_card(
        model_dir, model_id=MODEL_ID, eval_results=model_index(rows), data_stats=data_stats,
        training_args=portable_options(options, root),
        model_summary=(f"`{MODEL_ID}` is a small OphCLIP (two-stage ResNet + four-layer BERT) pretrained from scratch "
                       "on the synthetic OphVL-mini by the project's demo (`make demo`), with the full hierarchical "
                       "retrieval-augmented objective. It shows the method end to end; it is not a model of real "
                       "surgery."),
        limitations=["Trained only on OphVL-mini, a synthetic dataset of drawn cataract-surgery-like scenes and "
                     "templated narration: it recognises those drawings, not real surgical video.",
                     "Its vocabulary is a WordPiece tokenizer trained on OphVL-mini's text (about 800 tokens)."],
        tags=["synthetic-data", "demo"],
    )
    card.save(model_dir / "README.md")
    write_eval_results(model_dir, rows)


def _percent(value: float) -> str:
    return f"{100 * value:5.1f}%"


def run_demo(output_dir, *, max_steps: int = 300, videos: int = 40, silent: int = 40, seed: int = 0,
             overwrite: bool = False, ablation: bool = True) -> dict:
    """Run the whole demo into `output_dir`; returns the summary that is also written to `summary.json`. With
    `ablation=False` the second pretraining run (retrieval off) and its evaluation are left out."""
    from datasets_ophvl.mini import generate_ophvl_mini
    from evaluate_suite.leaderboard import latest_records, read_records, render_leaderboard

    from .tokenizer import ophvl_texts, train_wordpiece_tokenizer

    began = time.perf_counter()
    out = Path(output_dir).resolve()
    _check_output_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"command": "ophclip_train.demo"}) + "\n")
    steps = 7

    _say(f"[1/{steps}] generating OphVL-mini ({videos} narrated procedures, {silent} silent videos) ...")
    data = out / "ophvl-mini"
    mini = generate_ophvl_mini(data, seed=seed, videos=videos, silent=silent)

    _say(f"[2/{steps}] training a WordPiece tokenizer on OphVL-mini's text ...")
    tokenizer = train_wordpiece_tokenizer(ophvl_texts(data), vocab_size=2000)
    tokenizer.save_pretrained(out / "tokenizer")
    _say(f"      {len(tokenizer)} tokens -> {out / 'tokenizer'}")

    _say(f"[3/{steps}] pretraining OphCLIP with the full objective (clip + video level, retrieval), "
         f"{max_steps} steps ...")
    full = pretrain(out / "runs" / "full", data, out / "tokenizer", max_steps, retrieval=True)
    if ablation:
        _say(f"[4/{steps}] the ablation: the same run without retrieval augmentation ...")
        ablation_dir = pretrain(out / "runs" / "no-retrieval", data, out / "tokenizer", max_steps, retrieval=False)
    else:
        _say(f"[4/{steps}] the ablation: skipped (--skip-ablation)")
        ablation_dir = None

    _say(f"[5/{steps}] zero-shot evaluation on the held-out benchmarks of clinic A and clinic B ({SPLIT} split) ...")
    model_dir = out / "model"
    shutil.copytree(full, model_dir)
    results = out / "results.jsonl"
    scores = {MODEL_ID: evaluate(model_dir, MODEL_ID, data, results, out / "plots" / "full")}
    if ablation_dir is not None:
        scores[ABLATION_ID] = evaluate(ablation_dir, ABLATION_ID, data, results, out / "plots" / "no-retrieval")
    render_leaderboard(results, out)

    _say(f"[6/{steps}] writing the model folder and its model card ...")
    records = latest_records(read_records(results))
    data_stats = {subset: mini[subset] for subset in ("clips", "videos", "silent")}
    write_model_card(model_dir, records, data_stats, out)

    _say(f"[7/{steps}] attention maps (Grad-CAM for each phase's prompt) ...")
    attention = attention_maps(model_dir, data / "benchmark", out / "attention")

    chance = 1 / 6
    accuracy = scores[MODEL_ID]["clinic A"]["phase"]["accuracy"]
    losses = clip_losses(out / "runs" / "full")
    precision = [(r["step"], r["video/retrieval_precision_cataract"], r["video/retrieval_chance_cataract"])
                 for r in run_metrics(out / "runs" / "full") if "video/retrieval_precision_cataract" in r]
    summary = {
        "output_dir": str(out),
        "seconds": round(time.perf_counter() - began, 1),
        "chance_accuracy": chance,
        "times_chance": accuracy / chance,
        "scores": {name: {clinic: {"phase": s["phase"], "instruments": s["instruments"]} for clinic, s in by.items()}
                   for name, by in scores.items()},
        "clip_loss_first": losses[0] if losses else None,
        "clip_loss_last": losses[-1] if losses else None,
        "retrieval_precision_cataract": {"first": precision[0][1], "last": precision[-1][1],
                                         "chance": precision[-1][2]} if precision else None,
        "files": {
            "model": str(model_dir), "model_card": str(model_dir / "README.md"), "leaderboard": str(out / "leaderboard.md"),
            "results": str(results), "timelines": scores[MODEL_ID]["clinic A"]["plots"],
            "attention": [str(p) for p in attention], "data": str(data), "tokenizer": str(out / "tokenizer"),
            "ablation_model": str(ablation_dir) if ablation_dir is not None else None,
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary)
    return summary


def _print_summary(summary: dict) -> None:
    minutes, seconds = divmod(int(summary["seconds"]), 60)
    scores, files = summary["scores"], summary["files"]
    _say("")
    _say(f"OphCLIP demo finished in {minutes} min {seconds:02d} s.")
    _say(f"Zero-shot on the OphVL-mini benchmarks ({SPLIT} split; phase chance {_percent(summary['chance_accuracy'])}); "
         "clinic A is the narrated data's domain, clinic B the domain only the silent videos show:")
    _say(f"  {'model':32s} {'clinic':8s} {'phase acc':>9s} {'phase F1':>9s} {'instr. mAP':>10s}")
    for name, label in ((MODEL_ID, "full objective (retrieval on)"), (ABLATION_ID, "ablation (retrieval off)")):
        if name not in scores:
            continue  # --skip-ablation
        for clinic in BENCHMARKS:
            s = scores[name][clinic]
            _say(f"  {label:32s} {clinic[-1]:8s} {_percent(s['phase']['accuracy']):>9s} "
                 f"{_percent(s['phase']['f1']):>9s} {_percent(s['instruments']['mAP']):>10s}")
    _say(f"  phase accuracy of the full model on clinic A: {summary['times_chance']:.1f}x chance")
    if summary["clip_loss_first"] is not None:
        _say(f"  clip-level loss: {summary['clip_loss_first']:.3f} (first 10 steps) -> "
             f"{summary['clip_loss_last']:.3f} (last 10 steps)")
    if summary.get("retrieval_precision_cataract"):
        p = summary["retrieval_precision_cataract"]
        _say(f"  retrieval precision@{TRAINING_OPTIONS['retrieval_k']} (cataract type): {p['first']:.2f} (first "
             f"window) -> {p['last']:.2f} (last window), chance {p['chance']:.2f}")
    _say("  (one seed; benchmarks/ablation_retrieval.py measures the retrieval ablation over seeds)")
    _say("Files:")
    _say(f"  model (trust_remote_code)  {files['model']}")
    _say(f"  model card                 {files['model_card']}")
    _say(f"  leaderboard                {files['leaderboard']}")
    _say(f"  phase timelines            {Path(files['timelines'][0]).parent}")
    _say(f"  attention maps             {files['attention'][-1]}")
    _say(f"Everything is in {summary['output_dir']}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ophclip_train.demo",
        description="Generate OphVL-mini, train a tokenizer, pretrain a small OphCLIP with the hierarchical "
                    "retrieval-augmented objective and without retrieval (the ablation), evaluate both zero-shot, and "
                    "write the model folder, model card, leaderboard, phase timelines and attention maps into one "
                    "folder.")
    p.add_argument("--output-dir", default="ophclip-demo", help="the output folder (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder of a previous demo")
    p.add_argument("--max-steps", type=int, default=300,
                   help="optimiser steps of each pretraining run (default: %(default)s)")
    p.add_argument("--videos", type=int, default=40, help="narrated OphVL-mini procedures (default: %(default)s)")
    p.add_argument("--silent", type=int, default=40, help="silent videos in the memory bank (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="OphVL-mini seed (default: %(default)s)")
    p.add_argument("--skip-ablation", action="store_true",
                   help="leave out the ablation (the second pretraining run, without retrieval) and its evaluation; "
                        "`make demo DEMO_ARGS=--skip-ablation`")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    for name in ("max_steps", "videos", "silent"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    try:
        run_demo(args.output_dir, max_steps=args.max_steps, videos=args.videos, silent=args.silent, seed=args.seed,
                 overwrite=args.overwrite, ablation=not args.skip_ablation)
    except DemoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
