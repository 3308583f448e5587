"""The retrieval-augmentation ablation: does learning from silent videos help, and is it the retrieval that helps?

```bash
python benchmarks/ablation_retrieval.py --output-dir ablation-retrieval            # 4 arms x 3 seeds, ~30-40 min on 2 cores
python benchmarks/ablation_retrieval.py --output-dir ab --seeds 42 --max-steps 60   # a quick look
```

On the demo recipe (`ophclip_train.demo.TRAINING_OPTIONS`, the same OphVL-mini and tokenizer for every run), one
pretraining run per arm and seed:

- **(a) no silent data**: `--retrieval false` (no bank, no silent video ever seen);
- **(b) random pairing**: the encoded form with `--retrieval_pairing random`: every title gets K silent videos drawn
  at random, encoded with gradients as its positives (the same silent data and compute as (c), no retrieval);
- **(c) MIPS retrieval**: the encoded form (the default): the title retrieves its top-K silent videos from the bank;
- **(c') detached**: `--retrieval_form detached`: the same retrieval, the silent videos enter as bank vectors only.

OphVL-mini's silent videos come from clinic B, a visual domain (microscope, instruments, pace) that no narrated clip
or titled video shows. Each model is scored zero-shot on the held-out benchmark of clinic A (the narrated domain)
and of clinic B (`--split`, default `test`; use `validation` for any choice of hyperparameters). The table gives
mean ± standard deviation over seeds of phase accuracy / macro-F1 and instrument mAP per clinic, retrieval
precision@K for cataract type (first and last logging window of the run, and the chance level) from the hidden
ground truth, where retrieval stands at the end (`diagnose`: with the final model, precision@K of cataract type when
each title queries the other narrated videos of clinic A, and when it queries the silent videos of clinic B), and the
wall time of pretraining per run.

Every finished run is recorded in `OUTPUT/runs.jsonl` (one JSON line, written when the run and its evaluation are
done); a rerun with the same folder skips the recorded runs, so an interrupted ablation resumes. `OUTPUT/table.md`
holds the last table printed.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ophclip_train import demo  # noqa: E402


ARMS = {
    "a": ("(a) no silent data", {"retrieval": False}),
    "b": ("(b) random pairing", {"retrieval": True, "retrieval_pairing": "random", "retrieval_form": "encoded"}),
    "c": ("(c) MIPS retrieval", {"retrieval": True, "retrieval_pairing": "mips", "retrieval_form": "encoded"}),
    "c'": ("(c') detached form", {"retrieval": True, "retrieval_pairing": "mips", "retrieval_form": "detached"}),
}
CLINICS = tuple(demo.BENCHMARKS)


def prepare(out: Path, videos: int, silent: int, data_seed: int) -> tuple[Path, Path]:
    """OphVL-mini and its tokenizer, made once and reused by every run (kept when the folder is reused)."""
    from datasets_ophvl.mini import generate_ophvl_mini
    from ophclip_train.tokenizer import ophvl_texts, train_wordpiece_tokenizer

    data, tokenizer = out / "ophvl-mini", out / "tokenizer"
    settings = {"videos": videos, "silent": silent, "data_seed": data_seed}
    recorded = out / "data.json"
    if recorded.is_file() and json.loads(recorded.read_text()) != settings:
        raise SystemExit(f"error: {out} holds an ablation of other data settings ({recorded.read_text().strip()}); "
                         "use another --output-dir")
    if not (data / "README.md").is_file():
        generate_ophvl_mini(data, seed=data_seed, videos=videos, silent=silent, overwrite=True)
    if not (tokenizer / "tokenizer_config.json").is_file():
        train_wordpiece_tokenizer(ophvl_texts(data), vocab_size=2000).save_pretrained(tokenizer)
    _write_atomic(recorded, json.dumps(settings) + "\n")
    return data, tokenizer


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _run_dir(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / f"{arm.replace(chr(39), 'p')}-seed{seed}"


def run_arm(out: Path, data: Path, tokenizer: Path, arm: str, seed: int, max_steps: int, split: str) -> dict:
    """Pretrain one arm with one seed, evaluate it on both clinics, return its record."""
    run_dir = _run_dir(out, arm, seed)
    began = time.perf_counter()
    if run_dir.exists():  # a half-finished run of an interrupted ablation starts again, with the same seed
        shutil.rmtree(run_dir)
    final = demo.pretrain(run_dir, data, tokenizer, max_steps, seed=seed, save_steps=0, **ARMS[arm][1])
    seconds = time.perf_counter() - began
    scores = demo.evaluate(final, f"ablation-{arm}-seed{seed}", data, results=None, split=split)
    precision = [r for r in demo.run_metrics(run_dir) if "video/retrieval_precision_cataract" in r]
    record = {"arm": arm, "seed": seed, "max_steps": max_steps, "split": split, "pretrain_seconds": round(seconds, 1)}
    for clinic, s in scores.items():
        record[clinic] = {"phase_accuracy": s["phase"]["accuracy"], "phase_f1": s["phase"]["f1"],
                          "instrument_map": s["instruments"]["mAP"]}
    if precision:
        record["precision_first"] = precision[0]["video/retrieval_precision_cataract"]
        record["precision_last"] = precision[-1]["video/retrieval_precision_cataract"]
        record["precision_chance"] = precision[-1]["video/retrieval_chance_cataract"]
        record["precision_phases_last"] = precision[-1]["video/retrieval_precision_phases"]
    record["diagnosis"] = diagnose(final, data, demo.TRAINING_OPTIONS["retrieval_k"])
    return record


def diagnose(final: Path, data: Path, k: int) -> dict:
    """Where retrieval stands at the end of a run: with the final model, each narrated video's title summary queries
    (a) the other narrated videos (clinic A) and (b) the silent videos (clinic B) by inner product; precision@K of the
    cataract type against the hidden ground truth, with chance levels. (a) asks whether the model ties titles to
    cataract looks at all; (b) whether that survives the domain shift that retrieval has to cross."""
    import torch

    from datasets_ophvl import load_ophvl
    from datasets_ophvl.mini import read_ground_truth
    from evaluate_suite.models import OphCLIPEncoder
    from ophclip_train.objectives import retrieval_precision

    encoder = OphCLIPEncoder.from_pretrained(final, device="cpu")
    encoder.max_text_length = demo.TRAINING_OPTIONS["max_text_length"]  # as trained: the whole title summary
    truth = read_ground_truth(data)
    num_frames = demo.TRAINING_OPTIONS["num_frames"]

    def embed(subset):
        ids, texts, videos = [], [], []
        for example in load_ophvl(data, subset, num_frames=num_frames):
            ids.append(example["video_id"])
            texts.append(example["text"])
            videos.append(encoder.preprocess(example["frames"]))
        with torch.no_grad():
            return ids, texts, encoder.encode_videos(torch.stack(videos))

    narrated_ids, titles, narrated = embed("videos")
    silent_ids, _, silent = embed("silent")
    queries = encoder.encode_texts(titles)
    result = {}
    for name, ids, bank, own in (("narrated", narrated_ids, narrated, True), ("silent", silent_ids, silent, False)):
        scores = queries @ bank.t()
        if own:
            scores.fill_diagonal_(-float("inf"))  # a title finding its own video says nothing about cataract types
        top = scores.topk(k, dim=1).indices.tolist()
        quality = retrieval_precision([truth[v] for v in narrated_ids], [[truth[ids[j]] for j in row] for row in top],
                                      [truth[v] for v in ids], fields=("cataract",))["cataract"]
        result[name] = {"precision": quality["precision"], "chance": quality["chance"]}
    return result


def _mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def render_table(records: list[dict], arms: list[str]) -> str:
    """The markdown table: one row per arm, mean ± std over its seeds."""
    header = ["arm", "seeds"]
    for clinic in CLINICS:
        header += [f"{clinic} phase acc", f"{clinic} phase F1", f"{clinic} instr. mAP"]
    header += ["precision@K cataract (first → last)", "chance", "end: title→narrated A", "end: title→silent B",
               "pretrain s/run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in arms:
        rows = [r for r in records if r["arm"] == arm]
        if not rows:
            continue
        cells = [ARMS[arm][0], ", ".join(str(r["seed"]) for r in rows)]
        for clinic in CLINICS:
            for metric in ("phase_accuracy", "phase_f1", "instrument_map"):
                cells.append(_mean_std([r[clinic][metric] for r in rows]))
        with_precision = [r for r in rows if "precision_last" in r]
        if with_precision:
            cells.append(f"{_mean_std([r['precision_first'] for r in with_precision], 1, 2)} → "
                         f"{_mean_std([r['precision_last'] for r in with_precision], 1, 2)}")
            cells.append(f"{statistics.fmean(r['precision_chance'] for r in with_precision):.2f}")
        else:
            cells += ["-", "-"]
        diagnosed = [r["diagnosis"] for r in rows if "diagnosis" in r]
        for name in ("narrated", "silent"):
            cells.append(f"{_mean_std([d[name]['precision'] for d in diagnosed], 1, 2)} "
                         f"(chance {statistics.fmean(d[name]['chance'] for d in diagnosed):.2f})" if diagnosed else "-")
        cells.append(f"{statistics.fmean(r['pretrain_seconds'] for r in rows):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="ablation-retrieval")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 1, 2])
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--videos", type=int, default=40, help="narrated OphVL-mini procedures")
    parser.add_argument("--silent", type=int, default=40, help="silent videos (clinic B)")
    parser.add_argument("--data-seed", type=int, default=0, help="OphVL-mini seed (the same data for every run)")
    parser.add_argument("--split", default="test", choices=["validation", "test"],
                        help="benchmark split scored (choose hyperparameters on validation, report test)")
    args = parser.parse_args(argv)
    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data, tokenizer = prepare(out, args.videos, args.silent, args.data_seed)
    log = out / "runs.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    done = {(r["arm"], r["seed"], r["max_steps"], r["split"]) for r in records}
    for seed in args.seeds:  # seeds outermost: a partial ablation already compares every arm
        for arm in args.arms:
            if (arm, seed, args.max_steps, args.split) in done:
                continue
            print(f"== {ARMS[arm][0]}, seed {seed} ==", flush=True)
            record = run_arm(out, data, tokenizer, arm, seed, args.max_steps, args.split)
            records.append(record)
            with open(log, "a") as f:
                f.write(json.dumps(record) + "\n")
    # Records of an older version of this script lack the end-of-run diagnosis: add it from their saved models.
    missing = [r for r in records if "diagnosis" not in r and _run_dir(out, r["arm"], r["seed"]).joinpath("final").is_dir()]
    for record in missing:
        print(f"== diagnosis of {ARMS[record['arm']][0]}, seed {record['seed']} ==", flush=True)
        record["diagnosis"] = diagnose(_run_dir(out, record["arm"], record["seed"]) / "final", data,
                                       demo.TRAINING_OPTIONS["retrieval_k"])
    if missing:
        _write_atomic(log, "".join(json.dumps(r) + "\n" for r in records))
    chosen = [r for r in records if r["max_steps"] == args.max_steps and r["split"] == args.split
              and r["seed"] in args.seeds]
    table = render_table(chosen, args.arms)
    title = (f"Retrieval ablation: {args.max_steps} steps, seeds {' '.join(map(str, args.seeds))}, zero-shot on the "
             f"{args.split} split, mean ± std over seeds (%; precision@K as a fraction)")
    _write_atomic(out / "table.md", title + "\n\n" + table + "\n")
    print(title)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
