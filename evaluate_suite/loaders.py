"""Loaders for the published annotation layouts of surgical video benchmarks.

Every loader has the signature `(root, split, spec, **options) -> (list[VideoAnnotation], LoadReport)`. A missing or
malformed annotation file is an error that names the file and line; a problem confined to one video (no video file,
labels that disagree with its frame count) skips that video and records why in the `LoadReport`.
"""

import csv
import json
from pathlib import Path

import numpy as np

from .registry import IGNORE_INDEX, LoadReport, VideoAnnotation


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and line."""


def read_table(path: Path, delimiter: str, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    """Rows of a delimited text file as `(line number, {column: value})`, checking the header has `required`."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {str(path)!r} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise AnnotationError(
                f"{path}:1: header {header} lacks column(s) {missing}; expected {delimiter!r}-separated {list(required)}"
            )
        reader.fieldnames = header
        rows = []
        for row in reader:
            if None in row or any(row.get(c) in (None, "") for c in required):
                raise AnnotationError(f"{path}:{reader.line_num}: expected {len(header)} {delimiter!r}-separated fields")
            rows.append((reader.line_num, {k: v.strip() for k, v in row.items()}))
    return rows


def _int(path: Path, line: int, value: str, what: str) -> int:
    try:
        return int(float(value)) if float(value).is_integer() else _bad(path, line, value, what)
    except ValueError:
        return _bad(path, line, value, what)


def _bad(path, line, value, what):
    raise AnnotationError(f"{path}:{line}: {what} must be an integer, got {value!r}")


def class_index(spec, name: str, path: Path, line: int) -> int:
    try:
        return spec.classes.index(name)
    except ValueError:
        raise AnnotationError(
            f"{path}:{line}: class {name!r} is not a class of benchmark {spec.name!r} (no prompt for it); "
            f"known classes: {list(spec.classes)}"
        ) from None


def _split_filter(root: Path, split: str, spec, meta_split_file: str | None) -> set[str] | None:
    ids = spec.split_ids(split)
    if ids is None and meta_split_file:
        path = root / meta_split_file
        if path.is_file():
            splits = json.loads(path.read_text()).get("split", {})
            if split not in splits:
                raise ValueError(f"{path}: no split {split!r}; it has {sorted(splits)}")
            ids = [str(v) for v in splits[split]]
    return None if ids is None else set(ids)


def phase_starts_layout(root: Path, split: str, spec, annotations: str = "annotations.csv",
                        videos: str = "videos.csv", phase_names: str = "phases.csv", delimiter: str = ";",
                        video_path: str = "videos/case_{id}.mp4", frame_base: int = 0,
                        meta_split_file: str | None = None):
    """The Cataract-101 layout: `annotations.csv` rows `VideoID;FrameNo;Phase` mark the frame where each phase
    starts (a phase lasts until the next start; frames before the first start are unlabelled), `videos.csv` rows
    `VideoID;Frames;FPS;...` give each video's length, and `phases.csv` rows `Phase;Meaning` name the phase ids."""
    names_path = root / phase_names
    id_to_class = {
        row["Phase"]: class_index(spec, row["Meaning"], names_path, line)
        for line, row in read_table(names_path, delimiter, ("Phase", "Meaning"))
    }
    videos_path = root / videos
    info = {
        row["VideoID"]: (line, _int(videos_path, line, row["Frames"], "Frames"), float(row["FPS"]))
        for line, row in read_table(videos_path, delimiter, ("VideoID", "Frames", "FPS"))
    }
    annotations_path = root / annotations
    starts: dict[str, list[tuple[int, int]]] = {}
    for line, row in read_table(annotations_path, delimiter, ("VideoID", "FrameNo", "Phase")):
        if row["Phase"] not in id_to_class:
            raise AnnotationError(f"{annotations_path}:{line}: phase id {row['Phase']!r} is not in {names_path.name}")
        frame = _int(annotations_path, line, row["FrameNo"], "FrameNo") - frame_base
        starts.setdefault(row["VideoID"], []).append((frame, id_to_class[row["Phase"]]))

    wanted = _split_filter(root, split, spec, meta_split_file)
    report, result = LoadReport(), []
    for video_id in sorted(set(starts) | set(info), key=_natural):
        if wanted is not None and video_id not in wanted:
            continue
        if video_id not in info:
            report.skip(video_id, f"listed in {annotations} but not in {videos}")
            continue
        if video_id not in starts:
            report.skip(video_id, f"no phase annotations in {annotations}")
            continue
        _, num_frames, fps = info[video_id]
        path = root / video_path.format(id=video_id)
        if not path.is_file():
            report.skip(video_id, f"video file {path} is missing")
            continue
        events = sorted(starts[video_id])
        if num_frames <= 0 or events[-1][0] >= num_frames or events[0][0] < 0:
            report.skip(video_id, f"phase starts {[e[0] for e in events]} fall outside its {num_frames} frames")
            continue
        phases = np.full(num_frames, IGNORE_INDEX, dtype=np.int64)
        for (start, label), (end, _) in zip(events, events[1:] + [(num_frames, None)]):
            phases[start:end] = label
        result.append(VideoAnnotation(video_id, path, fps, num_frames, phases=phases))
    if wanted is not None:
        for video_id in sorted(wanted - {v.video_id for v in result} - set(report.skipped)):
            report.skip(video_id, "in the split but not in the annotations")
    return result, report


def tool_presence_layout(root: Path, split: str, spec, labels_dir: str = "tool_annotations",
                         file_pattern: str = "{id}.csv", video_path: str = "videos/{id}.mp4", delimiter: str = ",",
                         frame_column: str = "Frame", frame_base: int = 1, fps: float | None = None,
                         videos: str | None = None, id_prefix: str = "", meta_split_file: str | None = None):
    """The CATARACTS tool-presence layout: one CSV per video with a frame column and one column per tool holding 1
    (visible), 0 (not visible) or 0.5 (ambiguous — stored as NaN and left out of scoring)."""
    frame_rates = {}
    if videos:
        videos_path = root / videos
        frame_rates = {row["VideoID"]: float(row["FPS"])
                       for _, row in read_table(videos_path, ";", ("VideoID", "Frames", "FPS"))}
    folder = root / labels_dir
    if not folder.is_dir():
        raise FileNotFoundError(f"annotation folder {str(folder)!r} does not exist")
    wanted = _split_filter(root, split, spec, meta_split_file)
    prefix, suffix = file_pattern.split("{id}")
    report, result = LoadReport(), []
    files = sorted(folder.glob(prefix + "*" + suffix), key=lambda p: _natural(p.name))
    for file in files:
        video_id = file.name[len(prefix) : len(file.name) - len(suffix)]
        if id_prefix and video_id.startswith(id_prefix):
            video_id = video_id[len(id_prefix):]
        if wanted is not None and video_id not in wanted:
            continue
        rows = read_table(file, delimiter, (frame_column, *spec.classes))
        if not rows:
            report.skip(video_id, f"{file.name} has no rows")
            continue
        frames = [_int(file, line, row[frame_column], frame_column) - frame_base for line, row in rows]
        if frames != list(range(len(frames))):
            report.skip(video_id, f"{file.name}: frame numbers are not consecutive from {frame_base}")
            continue
        labels = np.empty((len(rows), len(spec.classes)), dtype=np.float32)
        for i, (line, row) in enumerate(rows):
            for c, name in enumerate(spec.classes):
                value = row[name]
                if value not in ("0", "1", "0.5", "0.0", "1.0"):
                    raise AnnotationError(f"{file}:{line}: {name} must be 0, 0.5 or 1, got {value!r}")
                labels[i, c] = np.nan if value == "0.5" else float(value)
        path = root / video_path.format(id=id_prefix + video_id)
        if not path.is_file():
            report.skip(video_id, f"video file {path} is missing")
            continue
        rate = frame_rates.get(video_id, fps)
        if rate is None:
            raise ValueError(f"benchmark {spec.name!r}: no frame rate for video {video_id} (pass fps or videos)")
        result.append(VideoAnnotation(video_id, path, rate, len(rows), instruments=labels))
    return result, report


def _natural(text: str):
    """Sort key that orders `case_2` before `case_10`."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]
