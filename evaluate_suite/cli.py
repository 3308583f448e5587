"""Command line of the evaluation suite: `python -m evaluate_suite <command> --help`.

```
python -m evaluate_suite benchmarks [--real]
python -m evaluate_suite card ophnet-phase                     # what is scored and ignored (or --all --out DIR)
python -m evaluate_suite zero-shot-phase --model CKPT --benchmark ophvl-mini-phase --root mini/benchmark \
    --smooth-window 5 --plots plots/
python -m evaluate_suite zero-shot-instruments --model CKPT --benchmark ophvl-mini-instruments --root mini/benchmark
python -m evaluate_suite linear-probe --model CKPT --benchmark ophvl-mini-phase --root mini/benchmark \
    --fractions 0.01 0.1 1 --seeds 0 1 2
python -m evaluate_suite retrieval --model CKPT --root mini --max-clips 500
python -m evaluate_suite leaderboard --results results.jsonl --out leaderboard/
python -m evaluate_suite table --models CKPT openai/clip-vit-base-patch16 --root DATA_ROOT --out table/ \
    --linear-probe
```

Split names are one vocabulary (`train`, `validation`, `test`) for every benchmark; a dataset's own spelling (OphNet's
`val`) is accepted too. Zero-shot commands use the benchmark's default prompts (`--prompts`: one sentence per class on
real datasets, the ensemble on OphVL-mini) and frame sampling (`--sampling`: 1 fps, or the labelled frames of sparse
datasets); `--unlabelled` changes which labels are read as unlabelled (OphNet's fillers by default).

Each protocol prints its metrics and skipped videos as JSON and appends one record per result to `--results`. Units:
every rate (accuracy, F1, mAP, FPR, R@K) is a fraction in [0, 1] in the JSON and the results file; MedR/MnR are
ranks; only the rendered tables (leaderboard, `table`) show percent. Progress bars go to stderr when it is a terminal
(`--quiet`: none). Errors in the input (unknown benchmark, missing folder, a path that is not a model, a class without
prompts, ...) print one line and exit 2.
"""

import argparse
import json
import math
import re
import sys
import textwrap

from .protocols.defaults import (
    DEFAULT_FRACTIONS,
    DEFAULT_MAX_CLIPS,
    DEFAULT_RESULTS_FILE,
    DEFAULT_SEEDS,
    INSTRUMENT_RULES,
    NEGATIVE_TEMPLATES,
    SAMPLINGS,
)
from .spec import PROMPT_MODES


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _add_model_options(parser: argparse.ArgumentParser):
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=True,
                       help="checkpoint folder or Hub id; OphCLIP and CLIP checkpoints are recognised by model_type")
    group.add_argument("--model-name", default=None,
                       help="model id written to the results (default: the value of --model)")
    group.add_argument("--trust-remote-code", action="store_true",
                       help="load an OphCLIP checkpoint with its own code (transformers' trust_remote_code)")
    group.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    group.add_argument("--results", default=DEFAULT_RESULTS_FILE,
                       help="JSON-lines file the result records are appended to (default: %(default)s)")
    _add_quiet_option(group)


def _add_quiet_option(parser):
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (they are shown on stderr only when it is a terminal)")


def _add_loader_options(parser: argparse.ArgumentParser, batch_size: int):
    group = parser.add_argument_group("decoding")
    group.add_argument("--batch-size", type=_positive_int, default=batch_size,
                       help="frames (clips for retrieval) per model forward (default: %(default)s)")
    group.add_argument("--num-workers", type=_non_negative_int, default=2,
                       help="DataLoader worker processes decoding and preprocessing while the model runs; 0 decodes "
                            "in the main process (default: %(default)s)")


def _add_benchmark_options(parser: argparse.ArgumentParser, split: bool = True, prompts: bool = True):
    group = parser.add_argument_group("benchmark")
    group.add_argument("--benchmark", required=True,
                       help="registered benchmark name (list them with `python -m evaluate_suite benchmarks`)")
    group.add_argument("--root", required=True, help="local copy of the benchmark dataset, in its native layout")
    if split:
        group.add_argument("--split", default="test",
                           help="split to evaluate: train, validation or test (or the dataset's own name, e.g. "
                                "OphNet's val) (default: %(default)s)")
    group.add_argument("--fps", type=_positive_float, default=1.0,
                       help="frames sampled per second of video, from each video's own frame rate "
                            "(default: %(default)s, the SurgVLP/OphCLIP protocol)")
    group.add_argument("--sampling", choices=SAMPLINGS, default=None,
                       help="fps: sample at --fps; labelled: exactly the labelled frames (default: the benchmark's, "
                            "labelled for sparse-label datasets such as CaDIS, else fps)")
    group.add_argument("--unlabelled", nargs="*", default=None, metavar="LABEL",
                       help="labels read as unlabelled (neither prompted nor scored) instead of the benchmark's "
                            "default (OphNet: 'Step Interval', 'Non-functional Segment', 'Others'); give the option "
                            "with no label to score every label; results go under <benchmark>-all-labels or "
                            "<benchmark>-custom-labels")
    if prompts:
        group.add_argument("--prompts", choices=PROMPT_MODES, default=None,
                           help="sentence: one sentence per class (SurgVLP/HecVL/PeskaVLP, comparable with their "
                                "numbers); ensemble: sentences and templates averaged (default: the benchmark's, "
                                "sentence on real datasets, ensemble on OphVL-mini)")


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="python -m evaluate_suite",
        description="Evaluate OphCLIP (or CLIP) checkpoints on surgical video benchmarks: zero-shot phase and "
                    "instrument recognition, linear probing, text-video retrieval, and the leaderboard.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub = commands.add_parser("benchmarks", help="list the registered benchmarks",
                              description="List the registered benchmarks with their task, classes, default prompt "
                                          "mode and data sub-folder, and the first sentence of each description "
                                          "(`card NAME` prints all of it).")
    group = sub.add_mutually_exclusive_group()
    group.add_argument("--real", action="store_true", help="only the real (published) datasets")
    group.add_argument("--synthetic", action="store_true", help="only the synthetic OphVL-mini benchmarks")
    sub.set_defaults(run=_run_benchmarks)

    sub = commands.add_parser("card", help="print or write benchmark cards (what is scored and what is ignored)",
                              description="The markdown card of a benchmark: task, what is scored and left out, "
                                          "splits, classes, layout and sources.")
    sub.add_argument("names", nargs="*", metavar="NAME", help="registered benchmark names")
    sub.add_argument("--all", action="store_true", help="every registered benchmark")
    sub.add_argument("--out", default=None, metavar="DIR", help="write <DIR>/<name>.md instead of printing")
    sub.set_defaults(run=_run_card)

    sub = commands.add_parser(
        "zero-shot-phase", help="zero-shot phase recognition (per-video accuracy and macro-F1)",
        description="Zero-shot phase recognition: frames at --fps, argmax of softmax(logit_scale * cos(frame, class "
                    "prompt embedding)); accuracy and macro-F1 per video, averaged over videos.")
    _add_model_options(sub)
    _add_benchmark_options(sub)
    _add_loader_options(sub, 32)
    sub.add_argument("--smooth-window", type=_non_negative_int, default=0,
                     help="also report metrics after a centred moving mean of the class probabilities over this many "
                          "sampled frames (reported separately as *_smoothed; 0 or 1: off; default: %(default)s)")
    sub.add_argument("--plots", default=None, metavar="DIR",
                     help="write a phase-timeline PNG per video and a confusion-matrix PNG into DIR")
    sub.set_defaults(run=_run_zero_shot_phase)

    sub = commands.add_parser(
        "zero-shot-instruments", help="zero-shot multi-instrument recognition (mAP and FPR)",
        description="Zero-shot multi-instrument recognition: an independent presence probability per instrument and "
                    "frame; mAP over instruments and the false-positive rate at --threshold.")
    _add_model_options(sub)
    _add_benchmark_options(sub)
    _add_loader_options(sub, 32)
    sub.add_argument("--rule", choices=INSTRUMENT_RULES, default="prompt-pair",
                     help="prompt-pair: p = sigmoid(logit_scale * (cos(frame, class) - cos(frame, negative prompt))), "
                          "a calibrated present-vs-absent probability; sigmoid: p = sigmoid(cos(frame, class)), the "
                          "PeskaVLP rule, uncalibrated (default: %(default)s)")
    sub.add_argument("--negative-template", action="append", default=None, metavar="TEMPLATE",
                     help="'absent' prompt template with {} for the instrument name; repeat for several "
                          f"(default: {' | '.join(NEGATIVE_TEMPLATES)})")
    sub.add_argument("--threshold", type=float, default=0.5,
                     help="presence threshold on the probabilities for the FPR (default: %(default)s)")
    sub.set_defaults(run=_run_zero_shot_instruments)

    sub = commands.add_parser(
        "linear-probe", help="logistic-regression probes on frozen features at 1%%/10%%/100%% of the training videos",
        description="Linear probing: frozen frame features at --fps, StandardScaler + LogisticRegression trained on a "
                    "fraction of the training videos (chosen by video, fixed seeds), scored on the test split.")
    _add_model_options(sub)
    _add_benchmark_options(sub, split=False, prompts=False)
    _add_loader_options(sub, 32)
    sub.add_argument("--train-split", default="train", help="split the probe is trained on (default: %(default)s)")
    sub.add_argument("--test-split", default="test", help="split the probe is scored on (default: %(default)s)")
    sub.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULT_FRACTIONS),
                     help="fractions of the training videos, each in (0, 1] (default: %(default)s)")
    sub.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                     help="seeds of the video draws; metrics are averaged over them (default: %(default)s)")
    sub.add_argument("--C", type=_positive_float, default=1.0, dest="C",
                     help="inverse regularisation strength of the logistic regression (default: %(default)s)")
    sub.add_argument("--max-iter", type=_positive_int, default=1000,
                     help="lbfgs iterations of the logistic regression (default: %(default)s)")
    sub.set_defaults(run=_run_linear_probe)

    sub = commands.add_parser(
        "retrieval", help="text <-> video retrieval on OphVL clips (R@1/5/10, MedR)",
        description="Text <-> video retrieval over the samples of an OphVL folder's tar shards: video embedding from "
                    "--num-frames uniformly sampled frames, cosine similarity to every text, R@1/5/10 and median rank "
                    "in both directions. Point --shards at clips the model was not trained on.")
    _add_model_options(sub)
    group = sub.add_argument_group("data")
    group.add_argument("--root", required=True, help="OphVL folder (laid out like the Hub repo: data/<subset>/*.tar)")
    group.add_argument("--subset", choices=("clips", "videos"), default="clips",
                       help="clips: clip vs narration; videos: whole video vs title summary (default: %(default)s)")
    group.add_argument("--shards", default=None, metavar="GLOB",
                       help="shards to read, a glob relative to --root (default: data/<subset>/*.tar)")
    group.add_argument("--max-clips", type=_positive_int, default=DEFAULT_MAX_CLIPS,
                       help="use at most this many samples, in shard order (default: %(default)s)")
    group.add_argument("--num-frames", type=_positive_int, default=8,
                       help="frames per video, at the centres of equal segments (default: %(default)s)")
    group.add_argument("--name", default=None,
                       help="benchmark name in the results (default: ophvl-<subset>:<folder name>)")
    _add_loader_options(sub, 8)
    sub.set_defaults(run=_run_retrieval)

    sub = commands.add_parser(
        "leaderboard", help="render the leaderboard of a results file",
        description="Render the results file as a markdown leaderboard (and the files `render_leaderboard` writes).")
    sub.add_argument("--results", default=DEFAULT_RESULTS_FILE, help="results file (default: %(default)s)")
    sub.add_argument("--out", default=None, metavar="DIR", help="folder for the rendered files (default: print only)")
    sub.add_argument("--model-id", default=None, help="only this model's results")
    sub.set_defaults(run=_run_leaderboard)

    sub = commands.add_parser(
        "table", help="the paper's Table 1: every benchmark found under the roots, for every model",
        description="Run zero-shot phase (acc, F1) and instrument (mAP, FPR) recognition, and with --linear-probe the "
                    "1/10/100%% probes, for every model on every registered benchmark whose sub-folder exists under "
                    "a --root; render a paper-style table (markdown + CSV), the leaderboard and each model's "
                    "model-index / .eval_results. Resumable: results already in --results are reused. The paper's "
                    "published OphCLIP numbers are shown as a quoted reference row.")
    sub.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                     help="checkpoint folders or Hub ids (OphCLIP or a vanilla transformers CLIPModel)")
    sub.add_argument("--model-names", nargs="+", default=None, metavar="NAME",
                     help="row names of the models, in order (default: the --models values)")
    sub.add_argument("--root", nargs="+", required=True, metavar="DATA_ROOT",
                     help="folders holding one sub-folder per dataset, named as the registry's folder (see "
                          "`evaluate_suite card NAME`); an OphVL-mini output folder is a root too")
    sub.add_argument("--benchmarks", nargs="+", default=None, metavar="NAME",
                     help="only these benchmarks (default: every registered one that is found)")
    sub.add_argument("--split", default="test", help="split scored (default: %(default)s)")
    sub.add_argument("--linear-probe", action="store_true",
                     help="also the 1%%/10%%/100%% linear probes (benchmarks with an official train/test split)")
    sub.add_argument("--prompts", choices=PROMPT_MODES, default=None,
                     help="prompt mode for every benchmark (default: each benchmark's own)")
    sub.add_argument("--results", default=DEFAULT_RESULTS_FILE,
                     help="results file: read to skip results already there, appended to (default: %(default)s)")
    sub.add_argument("--out", default=None, metavar="DIR",
                     help="write table.md, table.csv, leaderboard/ and models/<model>/ into DIR")
    sub.add_argument("--no-reference", action="store_true", help="leave out the paper's quoted OphCLIP row")
    sub.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    sub.add_argument("--trust-remote-code", action="store_true",
                     help="load OphCLIP checkpoints with their own code (transformers' trust_remote_code)")
    _add_quiet_option(sub)
    _add_loader_options(sub, 32)
    sub.set_defaults(run=_run_table)
    return parser


# -- commands -------------------------------------------------------------------------------------------------------


def _encoder(args):
    from .models import load_encoder

    encoder = load_encoder(args.model, trust_remote_code=args.trust_remote_code, device=args.device)
    if args.model_name:
        encoder.model_id = args.model_name
    return encoder


def _check_benchmark(args, task: str | None):
    """Fail on a wrong benchmark, task, split, folder or prompt file before spending time on loading the model;
    returns the spec (with `--unlabelled` applied)."""
    from pathlib import Path

    from .protocols import resolve_benchmark

    spec = resolve_benchmark(args.benchmark, task)
    if getattr(args, "unlabelled", None) is not None:
        spec = spec.with_unlabelled(args.unlabelled)
    for split in (getattr(args, "split", None), getattr(args, "train_split", None), getattr(args, "test_split", None)):
        if split is not None:
            spec.canonical_split(split)
    if not Path(args.root).is_dir():
        raise FileNotFoundError(f"benchmark {spec.name!r}: dataset folder {str(args.root)!r} does not exist")
    spec.class_texts(getattr(args, "prompts", None))
    return spec


def _run_benchmarks(args) -> dict:
    from .registry import get_benchmark, list_benchmarks

    rows = {}
    for name in list_benchmarks(real=True if args.real else False if args.synthetic else None):
        spec = get_benchmark(name)
        rows[name] = {"task": spec.task, "classes": list(spec.classes), "real": spec.real,
                      "prompt_mode": spec.prompt_mode, "folder": spec.folder, "unlabelled": list(spec.unlabelled),
                      "sparse_labels": spec.sparse_labels, "description": spec.description}
        kind = "real" if spec.real else "synthetic"
        print(f"{name:32s} {spec.task:12s} {len(spec.classes):3d} classes  {kind:9s} {spec.prompt_mode:8s} "
              f"{spec.folder + '/'}")
        # The description's first sentence under the row, wrapped and shortened at word boundaries (a fixed cut
        # split words); `card NAME` prints the whole text.
        for line in textwrap.wrap(_first_sentence(spec.description), width=_text_width() - 4, max_lines=2,
                                  placeholder=" ...", break_long_words=False, break_on_hyphens=False):
            print(f"    {line}")
    return rows


def _first_sentence(text: str | None) -> str:
    text = " ".join((text or "").split())
    end = re.search(r"\.(\s+[A-Z`]|$)", text)
    return text[: end.start() + 1] if end else text


def _text_width() -> int:
    """The terminal's width (80 when output is not a terminal), at most 120."""
    import shutil

    return max(40, min(120, shutil.get_terminal_size((80, 24)).columns))


def _run_card(args) -> dict:
    from .cards import benchmark_card, write_cards
    from .registry import get_benchmark, list_benchmarks

    names = list_benchmarks() if args.all else args.names
    if not names:
        raise ValueError("name at least one benchmark, or pass --all")
    specs = [get_benchmark(name) for name in names]
    if args.out:
        paths = write_cards(args.out, specs)
        for path in paths:
            print(f"wrote {path}")
        return {"files": [str(p) for p in paths]}
    print("\n\n".join(benchmark_card(spec) for spec in specs))
    return {"cards": names}


def _run_table(args) -> dict:
    from .table import run_table

    result = run_table(args.models, args.root, out_dir=args.out, results_file=args.results,
                       benchmarks=args.benchmarks, linear_probe=args.linear_probe, split=args.split,
                       model_names=args.model_names, prompts=args.prompts, device=args.device,
                       batch_size=args.batch_size, num_workers=args.num_workers,
                       trust_remote_code=args.trust_remote_code, reference=not args.no_reference)
    print(result["markdown"])
    for path in result["files"]:
        print(f"wrote {path}")
    return result


def _run_zero_shot_phase(args) -> dict:
    from .protocols import zero_shot_phase

    spec = _check_benchmark(args, "phase")
    result = zero_shot_phase(_encoder(args), spec, args.root, args.split, fps=args.fps,
                             batch_size=args.batch_size, num_workers=args.num_workers,
                             smooth_window=args.smooth_window, plots_dir=args.plots, results_file=args.results,
                             prompts=args.prompts, sampling=args.sampling)
    return _report(result, plots=result["plots"])


def _run_zero_shot_instruments(args) -> dict:
    from .protocols import zero_shot_instruments

    spec = _check_benchmark(args, "instruments")
    result = zero_shot_instruments(_encoder(args), spec, args.root, args.split, fps=args.fps,
                                   rule=args.rule, negative_templates=args.negative_template or NEGATIVE_TEMPLATES,
                                   threshold=args.threshold, batch_size=args.batch_size,
                                   num_workers=args.num_workers, results_file=args.results,
                                   prompts=args.prompts, sampling=args.sampling)
    return _report(result)


def _run_linear_probe(args) -> dict:
    from .protocols import linear_probe

    spec = _check_benchmark(args, None)
    result = linear_probe(_encoder(args), spec, args.root, train_split=args.train_split,
                          test_split=args.test_split, fractions=args.fractions, seeds=args.seeds, fps=args.fps,
                          C=args.C, max_iter=args.max_iter, batch_size=args.batch_size,
                          num_workers=args.num_workers, results_file=args.results, sampling=args.sampling)
    summary = {label: values["metrics"] for label, values in result["results"].items()}
    report = {"benchmark": result["benchmark"], "protocol": "linear-probe", "model_id": result["model_id"],
              "metrics": summary, "skipped": result["skipped"]}
    if result.get("warnings"):
        report["warnings"] = result["warnings"]
    return _print(report)


def _run_retrieval(args) -> dict:
    from .protocols import video_text_retrieval
    from .protocols.retrieval import find_shards

    find_shards(args.root, args.subset, args.shards)
    result = video_text_retrieval(_encoder(args), args.root, subset=args.subset, shards=args.shards,
                                  max_clips=args.max_clips, num_frames=args.num_frames, batch_size=args.batch_size,
                                  num_workers=args.num_workers, name=args.name, results_file=args.results)
    return _report(result)


def _run_leaderboard(args):
    from .leaderboard import render_leaderboard

    rendered = render_leaderboard(args.results, out_dir=args.out, model_id=args.model_id)
    print(rendered["table"])
    written = [rendered[k] for k in ("leaderboard_md", "model_index_yaml", "readme") if k in rendered]
    written += rendered.get("eval_results_files", [])
    for path in written:
        print(f"wrote {path}")
    return rendered


def _report(result: dict, **more) -> dict:
    summary = {key: result[key] for key in ("benchmark", "protocol", "model_id", "metrics", "skipped")}
    for key in ("prompt_mode", "load_notes"):
        if result.get(key):
            summary[key] = result[key]
    return _print({**summary, **more})


def _print(summary: dict) -> dict:
    print(json.dumps(summary, indent=2, default=_json_default))
    return summary


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def main(argv=None) -> int:
    """Run one command; returns the exit status (0 on success, 2 on an input error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .progress import progress_setting, set_progress

    quiet, previous = getattr(args, "quiet", False), progress_setting()
    if quiet:
        set_progress(False)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{parser.prog} {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        set_progress(previous)  # main() may be called again in the same process (tests, notebooks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
