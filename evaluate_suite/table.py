"""The paper's Table 1 in one command: every registered benchmark found under one or more data roots, for every
model, rendered as a paper-style table (`python -m evaluate_suite table --models M1 M2 ... --root DATA_ROOT`).

- Benchmarks: a benchmark is run when `<root>/<spec.folder>` exists under one of the roots (each dataset in its own
  sub-folder, named by the registry's `folder`; several benchmarks of one dataset share it, e.g. `ophnet/`). The
  OphVL-mini output folder is a root too: its benchmarks live in `benchmark/` and `benchmark-shifted/`.
- Protocols: zero-shot phase recognition (accuracy, macro-F1) on phase benchmarks, zero-shot multi-instrument
  recognition (mAP, FPR) on instrument benchmarks, each with the benchmark's default prompt mode and frame sampling
  (see the benchmark cards); with `linear_probe=True` also the 1 % / 10 % / 100 % linear probes, on benchmarks with an
  official train/test split (the others are listed as skipped).
- Resumable: every result is appended to one results file (JSON lines, the leaderboard's records); a (model, weights,
  benchmark, protocol, split) result already there is not computed again. A model is only loaded when one of its
  results is missing.
- Output (`out_dir`): `table.md` (paper-style: one row per model, one column per benchmark with "acc / F1" or
  "mAP / FPR", and a linear-probe table), `table.csv` (one line per model, benchmark, protocol and metric, with a
  `source` column: `ours` or `quoted`), `leaderboard/leaderboard.md` and, per model, `models/<model>/` with the
  `model_index.yaml`, model-card `README.md` and `.eval_results/*.yaml` of `render_leaderboard`.
- Reference row: the OphCLIP numbers the paper publishes (`PAPER_REFERENCE`), shown as `OphCLIP (paper; quoted)`,
  never mixed with our results (they are not in the results file).

A vanilla `transformers.CLIPModel` checkpoint is a model like any other (`load_encoder` picks the CLIP adapter from its
`model_type`): the paper's CLIP baseline row.
"""

import csv
import io
import math
import sys
import time
from pathlib import Path

from .leaderboard import latest_records, model_label, read_records, render_leaderboard
from .protocols.common import protocol_name
from .protocols.defaults import DEFAULT_FRACTIONS
from .registry import get_benchmark, list_benchmarks


# The paper's published OphCLIP numbers (project page; see shared/reference/ophclip-paper.md §6), in percent:
# {(benchmark, protocol): {metric: value}}. Quoted, never ours.
PAPER_REFERENCE = {
    ("cataract-1k-phase", "zero-shot"): {"accuracy": 62.8, "f1": 48.5},
    ("cataract-21-phase", "zero-shot"): {"accuracy": 41.4, "f1": 28.8},
    ("cataract-21-phase", "linear-probe-100%"): {"accuracy": 72.1},
}
REFERENCE_LABEL = "OphCLIP (paper; quoted)"
ZERO_SHOT_METRICS = {"phase": ("accuracy", "f1"), "instruments": ("mAP", "FPR")}
SHORT = {"accuracy": "acc", "f1": "F1", "mAP": "mAP", "FPR": "FPR"}


def has_official_split(spec) -> bool:
    """Whether train and test are different videos: registered splits, a split column, split folders or a meta file."""
    options = spec.loader_options or {}
    return spec.splits is not None or any(options.get(k) for k in ("split_column", "split_folders",
                                                                    "meta_split_file"))


def find_benchmarks(roots, names=None) -> tuple[dict, list]:
    """`({benchmark: dataset folder}, [benchmarks not found])` for the registered (or the `names`) benchmarks: the
    first root holding the benchmark's `folder`."""
    names = list(names) if names else list_benchmarks()
    found, missing = {}, []
    for name in names:
        spec = get_benchmark(name)
        folder = next((Path(root) / spec.folder for root in roots
                       if spec.folder and (Path(root) / spec.folder).is_dir()), None)
        if folder is None:
            missing.append(name)
        else:
            found[name] = folder
    return found, missing


def planned_protocols(spec, linear_probe: bool, prompts: str | None = None) -> list[str]:
    """The protocols (record names) a benchmark gets in the table."""
    mode = prompts or spec.prompt_mode
    base = "zero-shot"
    planned = [protocol_name(base, spec, mode)]
    if linear_probe and has_official_split(spec):
        planned += [f"linear-probe-{_percent(f)}" for f in DEFAULT_FRACTIONS]
    return planned


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.4g}%"


def run_table(models, roots, out_dir=None, results_file="results.jsonl", benchmarks=None, linear_probe=False,
              split="test", model_names=None, prompts=None, device=None, batch_size=32, num_workers=0,
              trust_remote_code=False, reference=True, log=None) -> dict:
    """Evaluate every model on every benchmark found under `roots` (see the module docstring) and render the table.

    Returns `{"markdown", "csv", "found", "missing", "computed", "reused", "failed", "files"}`; `failed` maps
    `"<model> / <benchmark> / <protocol>"` to the error of a result that could not be computed (the run goes on).
    `log` receives progress lines (default: standard error).
    """
    from .models import load_encoder
    from .protocols import linear_probe as run_linear_probe
    from .protocols import zero_shot_instruments, zero_shot_phase

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    models = [str(m) for m in models]
    names = list(model_names) if model_names else models
    if len(names) != len(models):
        raise ValueError(f"--model-names gives {len(names)} names for {len(models)} models")
    if not roots:
        raise ValueError("give at least one data root")
    for root in roots:
        if not Path(root).is_dir():
            raise FileNotFoundError(f"data root {str(root)!r} does not exist")
    found, missing = find_benchmarks(roots, benchmarks)
    if not found:
        raise FileNotFoundError(f"no benchmark folder under {[str(r) for r in roots]}; expected sub-folders named "
                                f"{sorted({get_benchmark(n).folder for n in (benchmarks or list_benchmarks())})}")
    log(f"benchmarks found: {', '.join(found)}" + (f"; not found: {', '.join(missing)}" if missing else ""))

    plan = {name: planned_protocols(get_benchmark(name), linear_probe, prompts) for name in found}
    skipped_probes = [name for name in found if linear_probe and not has_official_split(get_benchmark(name))]
    total = len(models) * sum(len(p) for p in plan.values())
    done = 0
    computed, reused, failed, rows = [], [], {}, []
    for model, name in zip(models, names):
        existing = _existing(results_file, name)
        encoder = None
        for benchmark, protocols in plan.items():
            spec = get_benchmark(benchmark)
            wanted = [p for p in protocols if not _has(existing, encoder, benchmark, p, split)]
            if wanted and encoder is None:
                log(f"loading {model}")
                encoder = load_encoder(model, trust_remote_code=trust_remote_code, device=device)
                encoder.model_id = name
                wanted = [p for p in protocols if not _has(existing, encoder, benchmark, p, split)]
            reused += [f"{name} / {benchmark} / {p}" for p in protocols if p not in wanted]
            done += len(protocols) - len(wanted)
            if not wanted:
                continue
            zero_shot = [p for p in wanted if p.startswith("zero-shot")]
            probes = [p for p in wanted if p.startswith("linear-probe")]
            common = {"batch_size": batch_size, "num_workers": num_workers, "results_file": results_file}
            for protocol in zero_shot:
                began = time.perf_counter()
                run = zero_shot_phase if spec.task == "phase" else zero_shot_instruments
                key = f"{name} / {benchmark} / {protocol}"
                try:
                    run(encoder, spec, found[benchmark], split, prompts=prompts, **common)
                    computed.append(key)
                except (ValueError, FileNotFoundError) as error:
                    failed[key] = str(error)
                done += 1
                log(f"[{done}/{total}] {key}: " + ("failed: " + failed[key][:160] if key in failed
                                                   else f"done in {time.perf_counter() - began:.1f} s"))
            if probes:
                began = time.perf_counter()
                key = f"{name} / {benchmark} / linear-probe"
                try:
                    fractions = [f for f in DEFAULT_FRACTIONS if f"linear-probe-{_percent(f)}" in probes]
                    run_linear_probe(encoder, spec, found[benchmark], test_split=split, fractions=fractions,
                                     **common)
                    computed += [f"{name} / {benchmark} / {p}" for p in probes]
                except (ValueError, FileNotFoundError, ImportError) as error:
                    for p in probes:
                        failed[f"{name} / {benchmark} / {p}"] = str(error)
                done += len(probes)
                log(f"[{done}/{total}] {key} (1/10/100 %): " + (
                    "failed: " + str(failed.get(f"{name} / {benchmark} / {probes[0]}", ""))[:160]
                    if f"{name} / {benchmark} / {probes[0]}" in failed
                    else f"done in {time.perf_counter() - began:.1f} s"))
        rows.append(name)

    records = latest_records(read_records(results_file)) if Path(results_file).is_file() else []
    markdown, csv_text = render_table(records, names, list(found), linear_probe=linear_probe, prompts=prompts,
                                      split=split, reference=reference)
    if skipped_probes:
        markdown += ("\n\nLinear probes not run (no official train/test split): "
                     + ", ".join(skipped_probes) + ".")
    if failed:
        grouped = {}
        for key, error in failed.items():
            model_bench, protocol = key.rsplit(" / ", 1)
            group = f"{model_bench} / {'linear-probe' if protocol.startswith('linear-probe') else protocol}"
            grouped.setdefault(group, error)
        markdown += "\n\nNot computed:\n" + "\n".join(f"- {k}: {v[:240]}" for k, v in grouped.items())
    files = []
    if out_dir is not None:
        files = _write_outputs(Path(out_dir), markdown, csv_text, results_file, names)
    return {"markdown": markdown, "csv": csv_text, "found": {k: str(v) for k, v in found.items()},
            "missing": missing, "computed": computed, "reused": reused, "failed": failed, "files": files}


def _existing(results_file, model_id: str) -> list:
    if not Path(results_file).is_file():
        return []
    return [r for r in latest_records(read_records(results_file)) if r.model_id == model_id]


def _has(existing, encoder, benchmark: str, protocol: str, split: str) -> bool:
    """Whether a result of this model (of the loaded weights, once the encoder is loaded) is already recorded."""
    for record in existing:
        if record.benchmark != benchmark or record.protocol != protocol:
            continue
        if (record.extra or {}).get("split", (record.extra or {}).get("test_split")) not in (split, None):
            continue
        if encoder is not None and record.weights_hash != encoder.weights_hash:
            continue
        return True
    return False


def _cell(values, metrics) -> str:
    shown = []
    for metric in metrics:
        value = values.get(metric) if values else None
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            shown.append("–")
        else:
            shown.append(f"{value:.1f}")
    return " / ".join(shown)


def render_table(records, models, benchmarks, linear_probe=False, prompts=None, split="test",
                 reference=True) -> tuple[str, str]:
    """`(markdown, csv)` of the paper-style tables for `models` (model ids, in row order) on `benchmarks`."""
    by_key = {}
    for record in records:
        if (record.extra or {}).get("split", (record.extra or {}).get("test_split", split)) != split:
            continue
        by_key[(record.model_id, record.benchmark, record.protocol)] = record
    rows = []  # (label, source, {(benchmark, protocol): {metric: percent}})
    for model in models:
        cells, label = {}, model
        for (model_id, benchmark, protocol), record in by_key.items():
            if model_id == model:
                cells[(benchmark, protocol)] = {k: 100 * v for k, v in record.metrics.items()
                                                if k in ("accuracy", "f1", "mAP", "FPR") and v is not None}
                label = model_label(model_id, record.weights_hash)
        rows.append((label, "ours", cells))
    if reference:
        rows.append((REFERENCE_LABEL, "quoted", dict(PAPER_REFERENCE)))

    specs = [get_benchmark(b) for b in benchmarks]
    header = ["model"] + [f"{s.name} ({' / '.join(SHORT[m] for m in ZERO_SHOT_METRICS[s.task])})" for s in specs]
    lines = ["### Zero-shot", "", _md_row(header), "|" + "|".join(["---"] + ["---:"] * len(specs)) + "|"]
    for label, source, cells in rows:
        keys = [(s.name, protocol_name("zero-shot", s, prompts or s.prompt_mode)) for s in specs]
        if source == "quoted" and not any(k in cells for k in keys):
            continue  # no quoted number for these benchmarks
        values = [_cell(cells.get(k), ZERO_SHOT_METRICS[s.task]) for k, s in zip(keys, specs)]
        lines.append(_md_row([label] + values))
    probed = [s for s in specs if linear_probe and has_official_split(s)]
    if probed:
        header = ["model"] + [f"{s.name} ({'acc' if s.task == 'phase' else 'mAP'}, 1% / 10% / 100%)" for s in probed]
        lines += ["", "### Linear probe", "", _md_row(header),
                  "|" + "|".join(["---"] + ["---:"] * len(probed)) + "|"]
        for label, source, cells in rows:
            if source == "quoted" and not any((s.name, f"linear-probe-{_percent(f)}") in cells
                                              for s in probed for f in DEFAULT_FRACTIONS):
                continue
            values = []
            for s in probed:
                metric = "accuracy" if s.task == "phase" else "mAP"
                parts = [_cell(cells.get((s.name, f"linear-probe-{_percent(f)}")), (metric,))
                         for f in DEFAULT_FRACTIONS]
                values.append(" / ".join(parts))
            lines.append(_md_row([label] + values))
    lines += ["", "Percent. Zero-shot: the benchmark's default prompts (one sentence per class on real datasets, the "
                  "ensemble on OphVL-mini) and frame sampling (1 fps; the labelled frames on sparse datasets). "
                  f"Split: {split}. `–`: not evaluated or undefined."]
    if reference:
        lines += [f"`{REFERENCE_LABEL}`: numbers published by the OphCLIP paper (project page), quoted for "
                  "reference; not produced by this code."]

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "source", "benchmark", "protocol", "metric", "value_percent"])
    for label, source, cells in rows:
        for (benchmark, protocol), values in sorted(cells.items()):
            if benchmark not in benchmarks:
                continue
            for metric, value in values.items():
                writer.writerow([label, source, benchmark, protocol, metric, f"{value:.2f}"])
    return "\n".join(lines), buffer.getvalue()


def _md_row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name)).strip("._") or "model"


def _write_outputs(out: Path, markdown: str, csv_text: str, results_file, models) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(f"# Benchmarks\n\n{markdown}\n", encoding="utf-8")
    (out / "table.csv").write_text(csv_text, encoding="utf-8")
    files = [str(out / "table.md"), str(out / "table.csv")]
    if Path(results_file).is_file():
        rendered = render_leaderboard(results_file, out_dir=out / "leaderboard")
        files.append(rendered["leaderboard_md"])
        known = {r.model_id for r in read_records(results_file)}
        for model in models:
            if model not in known:
                continue
            rendered = render_leaderboard(results_file, out_dir=out / "models" / _safe(model), model_id=model)
            files += [rendered["model_index_yaml"], rendered["readme"], *rendered["eval_results_files"]]
    return files


__all__ = ["PAPER_REFERENCE", "find_benchmarks", "has_official_split", "planned_protocols", "render_table",
           "run_table"]
