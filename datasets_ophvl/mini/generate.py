"""The generator: `generate_ophvl_mini` plans every procedure, renders and encodes the subsets into shards, writes
both benchmarks, the hidden ground truth and the dataset card, and returns a summary."""

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from ..card import write_dataset_card
from ..format import make_key
from ..media import encode_video
from ..shards import ShardWriter, atomic_write_bytes
from .benchmark import BENCHMARKS, write_benchmark
from .ground_truth import GROUND_TRUTH, ground_truth_record, write_ground_truth
from .render import _frame_times, render
from .scene import _INSTR, _PHASE, CLINICS, INSTRUMENT_NAMES, PHASE_NAMES, Procedure, _plan_procedure, _rng
from .settings import _STREAM, GENERATOR_VERSION, MARKER, SHARD_MULTIPLE, SIZES, _progress
from .text import _plan_clips, make_title, make_title_summary


# What an OphVL-mini folder holds: `--overwrite` replaces a folder with the marker and nothing else.
OUTPUT_ENTRIES = frozenset({"README.md", "data", "hidden", MARKER} | {b["folder"] for b in BENCHMARKS.values()})


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty `out`; with `overwrite`, empty it, but only when OphVL-mini wrote it (its marker file)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite (overwrite=True) to replace it")
    foreign = [e for e in entries if e not in OUTPUT_ENTRIES]
    if MARKER not in entries or foreign:
        what = ", ".join(foreign[:5]) if foreign else f"no {MARKER} marker"
        raise FileExistsError(f"refusing to overwrite {out}: OphVL-mini did not write it ({what})")
    for entry in entries:
        path = out / entry
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _samples_per_part(count: int, shards: int) -> int:
    return max(1, math.ceil(count / shards))


def silent_clinic(index: int, cfg: dict) -> str:
    """The clinic of silent video `index`: B for the first `round(silent_clinic_b * silent)` of them, else A."""
    return "B" if index < round(cfg["silent_clinic_b"] * cfg["silent"]) else "A"


def generate_ophvl_mini(out_dir, seed: int = 0, size: str = "default", *, overwrite: bool = False,
                        progress: bool = True, **overrides) -> dict:
    """Generate OphVL-mini under `out_dir` and return a summary.

    Narrated clips and titled videos are recorded in clinic A; silent videos in clinic B (the fraction
    `silent_clinic_b`, default all of them); `benchmark/` is clinic A and `benchmark-shifted/` clinic B.

    Args:
        out_dir: the folder to create; an existing non-empty one is refused unless `overwrite`, and even then unless
            it is a previous OphVL-mini output (its `.ophvl-mini.json` marker, nothing else besides `README.md`,
            `data/`, `benchmark/`, `benchmark-shifted/` and `hidden/`).
        seed: the random seed; the same seed gives byte-identical files.
        size: `"default"` (about 620 clips, 40 videos, 40 silent videos, 12 + 12 benchmark videos; ~18 s on one
            core) or `"tiny"` (about 26 clips, 4 + 4 videos, 3 + 3 benchmark videos; ~1.5 s, for tests).
        progress: show tqdm progress bars.
        **overrides: replace entries of `SIZES[size]` (e.g. `videos=10`, `frame_size=96`, `silent_clinic_b=0.5`).

    Returns:
        `{"out_dir", "seed", "size", "clips"|"videos"|"silent": {"samples", "shards"}, "silent_clinic_b": the number
        of clinic-B silent videos, "benchmark"|"benchmark_shifted": {"videos", "frames", "annotated_frames", "fps",
        "clinic"}, "ground_truth": the hidden file's path, "seconds"}`.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {tuple(SIZES)}")
    unknown = set(overrides) - set(SIZES[size])
    if unknown:
        raise TypeError(f"unknown OphVL-mini settings: {sorted(unknown)}")
    cfg = {**SIZES[size], **overrides}
    if cfg["frame_size"] % 2 or cfg["frame_size"] < 16:
        raise ValueError(f"frame_size must be even and >= 16, got {cfg['frame_size']}")
    if not 0 <= cfg["silent_clinic_b"] <= 1:
        raise ValueError(f"silent_clinic_b must be a fraction in [0, 1], got {cfg['silent_clinic_b']}")
    began = time.perf_counter()
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    marker = {"generator": "datasets_ophvl.mini", "version": GENERATOR_VERSION, "seed": seed, "size": size}
    atomic_write_bytes(out / MARKER, (json.dumps(marker) + "\n").encode())
    S = cfg["frame_size"]

    # Plan everything first (cheap), so shard sizes are known before writing.
    procedures = [_plan_procedure(_rng(seed, _STREAM["videos"], i), cfg, f"ophvl-mini-{i:04d}")
                  for i in range(cfg["videos"])]
    text_rngs = [_rng(seed, _STREAM["videos"], i, 1) for i in range(cfg["videos"])]
    clip_plans = [_plan_clips(proc, cfg, r) for proc, r in zip(procedures, text_rngs)]
    n_clips = sum(len(plan) for plan in clip_plans)
    silent = [_plan_procedure(_rng(seed, _STREAM["silent"], i), cfg, f"ophvl-mini-silent-{i:04d}",
                              clinic=silent_clinic(i, cfg)) for i in range(cfg["silent"])]
    stats = {}

    writer = ShardWriter(out, "clips", _samples_per_part(n_clips, cfg["shards"]["clips"]))
    items = [(i, j, clip) for i, plan in enumerate(clip_plans) for j, clip in enumerate(plan)]
    for i, j, clip in _progress(items, progress, desc="clips", unit="clip"):
        proc = procedures[i]
        frames = render(proc, _frame_times(clip["start"], cfg["clip_fps"], clip["n_frames"]), S,
                        _rng(seed, _STREAM["clip_render"], i, j))
        record = {
            "video_id": proc.video_id, "start": clip["start"], "end": clip["end"], "narration": clip["narration"],
            "sentence_ids": clip["sentence_ids"], "phase": _PHASE[clip["phase"]]["name"], "phase_id": clip["phase"],
            "instruments": [_INSTR[k]["name"] for k in clip["instruments"]],
        }
        writer.write(make_key(proc.video_id, j), encode_video(frames, cfg["clip_fps"]), record)
    stats["clips"] = {"samples": n_clips, "shards": len(writer.finalize(SHARD_MULTIPLE))}

    writer = ShardWriter(out, "videos", _samples_per_part(len(procedures), cfg["shards"]["videos"]))
    for i, proc in enumerate(_progress(procedures, progress, desc="videos", unit="video")):
        frames, duration = _render_whole(proc, cfg["video_fps"], S, _rng(seed, _STREAM["video_render"], i))
        title_rng = _rng(seed, _STREAM["videos"], i, 2)
        record = {"video_id": proc.video_id, "duration": duration, "title": make_title(proc, title_rng),
                  "title_summary": make_title_summary(proc, title_rng)}
        writer.write(make_key(proc.video_id), encode_video(frames, cfg["video_fps"]), record)
    stats["videos"] = {"samples": len(procedures), "shards": len(writer.finalize(SHARD_MULTIPLE))}

    writer = ShardWriter(out, "silent", _samples_per_part(cfg["silent"], cfg["shards"]["silent"]))
    for i, proc in enumerate(_progress(silent, progress, desc="silent", unit="video")):
        frames, duration = _render_whole(proc, cfg["video_fps"], S, _rng(seed, _STREAM["silent_render"], i))
        # Only what a scraped silent video has: no narration, no phases; the clinic is in the hidden ground truth.
        record = {"video_id": proc.video_id, "duration": duration,
                  "title": make_title(proc, _rng(seed, _STREAM["silent"], i, 2), silent=True, number=i + 1)}
        writer.write(make_key(proc.video_id), encode_video(frames, cfg["video_fps"]), record)
    stats["silent"] = {"samples": cfg["silent"], "shards": len(writer.finalize(SHARD_MULTIPLE))}
    n_silent_b = sum(proc.clinic == "B" for proc in silent)

    truth = write_ground_truth(out / GROUND_TRUTH, [ground_truth_record(proc, "videos") for proc in procedures]
                               + [ground_truth_record(proc, "silent") for proc in silent])

    benches = {clinic: write_benchmark(out / spec["folder"], seed, cfg, progress=progress, clinic=clinic)
               for clinic, spec in BENCHMARKS.items()}

    write_dataset_card(
        out,
        pretty_name="OphVL-mini (synthetic)",
        stats=stats,
        build={
            "generator": "datasets_ophvl.mini", "version": GENERATOR_VERSION, "seed": seed, "size": size,
            "settings": cfg, "phases": list(PHASE_NAMES), "instruments": list(INSTRUMENT_NAMES),
            "clinics": {
                "A": CLINICS["A"].description, "B": CLINICS["B"].description,
                "recorded": f"clips and videos: clinic A; silent: {n_silent_b} of {cfg['silent']} videos clinic B "
                            f"(silent_clinic_b = {cfg['silent_clinic_b']}), the others clinic A",
            },
            "benchmark": f"benchmark/: {benches['A']['videos']} held-out clinic-A videos, Cataract-101 phase layout "
                         "and CATARACTS tool-presence layout, train/validation/test split (see benchmark/README.md)",
            "benchmark_shifted": f"benchmark-shifted/: {benches['B']['videos']} held-out clinic-B videos in the same "
                                 "layouts and splits (see benchmark-shifted/README.md)",
            "hidden": f"{GROUND_TRUTH}: per titled and silent video its clinic, cataract type, phases in order "
                      "(repeats kept) and instruments in order of first appearance (video_id, subset, clinic, "
                      "cataract, phases, instruments); for measuring what was learned, never read by training",
        },
        license="apache-2.0",
        privacy="Synthetic: every frame is drawn by a program and every text comes from templates. No patient, "
                "surgeon or hospital data is involved.",
    )
    return {"out_dir": str(out), "seed": seed, "size": size, **stats, "silent_clinic_b": n_silent_b,
            "benchmark": benches["A"], "benchmark_shifted": benches["B"], "ground_truth": str(truth),
            "seconds": round(time.perf_counter() - began, 2)}


def _render_whole(proc: Procedure, fps: float, size: int, rng) -> tuple[np.ndarray, float]:
    n = max(1, int(math.ceil(proc.duration * fps)))  # cover the whole procedure, so every clip lies inside
    return render(proc, _frame_times(0.0, fps, n), size, rng), round(n / fps, 3)
