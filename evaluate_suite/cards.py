"""Benchmark cards: one markdown page per registered benchmark saying what it is, what is scored and what is left out,
its splits, classes, layout and sources (`python -m evaluate_suite card NAME`, or `card --all --out DIR`).

The text comes from the `BenchmarkSpec` (its `scoring`, `description`, split names, unlabelled labels, prompt mode and
frame sampling), so a card cannot disagree with what the protocols do.
"""

from .spec import SPLITS, BenchmarkSpec


def benchmark_card(spec: BenchmarkSpec) -> str:
    """The markdown card of one benchmark."""
    lines = [f"# {spec.name}", ""]
    kind = "synthetic (OphVL-mini)" if not spec.real else "real dataset"
    task = ("phase recognition (one class per frame; accuracy and macro-F1 per video, averaged over videos)"
            if spec.task == "phase" else
            "multi-instrument recognition (independent presence per instrument; mAP and FPR)")
    lines += [f"{kind.capitalize()}; {task}; {len(spec.classes)} classes."]
    if spec.folder:
        lines += ["", f"Sub-folder under a data root with several datasets (`evaluate_suite table --root`): "
                      f"`{spec.folder}/`."]
    lines += ["", "## Scored", ""]
    if spec.scoring:
        lines += [spec.scoring, ""]
    frames = ("exactly the labelled frames (the labels are sparse; no 1-fps grid)" if spec.sparse_labels
              else "frames sampled at 1 fps from each video's native rate")
    lines += [f"- Frames: {frames}."]
    if spec.unlabelled:
        names = ", ".join(f"'{n}'" for n in spec.unlabelled)
        lines += [f"- Unlabelled labels (neither prompted nor scored): {names}. Score them as classes with "
                  f"`get_benchmark({spec.name!r}).with_unlabelled(())` or `--unlabelled` with no name."]
    else:
        lines += ["- Unlabelled labels: none beyond the dataset's own unannotated frames."]
    prompts = ("one sentence per class (SurgVLP/HecVL/PeskaVLP style; comparable with their published numbers)"
               if spec.prompt_mode == "sentence" else "each class's sentence and templates, averaged (ensemble)")
    other = "ensemble" if spec.prompt_mode == "sentence" else "sentence"
    lines += [f"- Prompts (default `{spec.prompt_mode}`): {prompts}; `--prompts {other}` gives the other mode, "
              f"recorded as protocol `zero-shot-{other}`.", ""]
    lines += ["## Splits", ""]
    names = []
    for split in SPLITS + tuple(spec.extra_splits):
        own = spec.split_names.get(split)
        label = f"`{split}`" + (f" (`{own}` in the dataset's files; either name is accepted)" if own else "")
        if spec.splits is not None:
            if split in spec.splits:
                names.append(f"- {label}: {len(spec.splits[split])} videos")
        else:
            names.append(f"- {label}")
    if spec.splits is None:
        lines += ["Read from the dataset itself (its split column, folders or `meta.json`); a dataset without an "
                  "official split loads every video for every split name:", ""]
    lines += names + ["", "## Classes", ""]
    lines += [f"{i}. {name}" for i, name in enumerate(spec.classes)] + [""]
    lines += ["## Layout and sources", "", spec.description or "(no description)", ""]
    if spec.homepage:
        lines += [f"Homepage: {spec.homepage}", ""]
    if spec.citation:
        lines += [f"Citation: {spec.citation}", ""]
    return "\n".join(lines)


def write_cards(folder, specs) -> list:
    """Write `<folder>/<name>.md` for each spec; returns the paths."""
    from pathlib import Path

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in specs:
        path = out / f"{spec.name}.md"
        path.write_text(benchmark_card(spec), encoding="utf-8")
        paths.append(path)
    return paths


__all__ = ["benchmark_card", "write_cards"]
