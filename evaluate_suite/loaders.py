"""Loaders for the published annotation layouts of surgical video benchmarks.

Every loader has the signature `(root, split, spec, **options) -> (list[VideoAnnotation], LoadReport)`; the options of a
registered benchmark are its `loader_options` (see `benchmarks.py`). A missing or malformed annotation file is an error
that names the file and line (`FileNotFoundError`, `AnnotationError`), and so is a label that is not a class of the
benchmark (it would have no prompt). A problem confined to one video (no video file, labels outside its frames, no
labels at all, a container that cannot be read when the frame rate must come from it) skips that video and records why
in the `LoadReport`.

Seven layout families cover the registered benchmarks:

- `phase_starts_layout`: one table of phase *start* frames (Cataract-101, OphVL-mini).
- `tool_presence_layout`: one CSV per video, one row per frame, one 0/0.5/1 column per tool (CATARACTS, OphVL-mini).
- `frame_labels_layout`: one CSV per video, one row per frame with its label (Cataract-21, CATARACTS 2020 steps).
- `segments_layout`: start/end pairs per labelled interval, in frames or seconds, converted to per-frame labels at the
  video's frame rate (Cataract-1K, OphNet 2024).
- `mask_presence_layout`: instrument presence read from semantic-segmentation masks of sparse frames (CaDIS).
- `frame_sequence_layout`: one text file per video, line i holding the label of frame i (SICS-155).
- `polygon_presence_layout`: instrument presence from per-image polygon annotations (Supervisely JSON) of still frames
  (Cataract-1K's segmentation subset).

Frame rates come from the layout's metadata file when it has one; otherwise from a documented `fps` option holding the
dataset's known rate, or, with `fps=None`, from the video container (`probe_video`).
"""

import csv
import json
import math
import re
from pathlib import Path

import numpy as np

from .spec import IGNORE_INDEX, LoadReport, VideoAnnotation


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and line."""


# -- reading tables ---------------------------------------------------------------------------------------------------


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


def read_rows(path: Path, delimiter: str | None = None) -> list[tuple[int, list[str]]]:
    """Non-blank rows of a delimited text file as `(line number, fields)`; `delimiter=None` picks `,`, `;` or tab from
    the first line."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {str(path)!r} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
        text = f.read()
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    return [(reader.line_num, [v.strip() for v in row]) for row in reader if any(v.strip() for v in row)]


def _int(path: Path, line: int, value: str, what: str) -> int:
    try:
        return int(float(value)) if float(value).is_integer() else _bad(path, line, value, what)
    except ValueError:
        return _bad(path, line, value, what)


def _bad(path, line, value, what):
    raise AnnotationError(f"{path}:{line}: {what} must be an integer, got {value!r}")


def _float(path: Path, line: int, value: str, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise AnnotationError(f"{path}:{line}: {what} must be a number, got {value!r}")
    return number


def class_index(spec, name: str, path: Path, line: int) -> int:
    """The class index of label `name`, `IGNORE_INDEX` for a label the benchmark reads as unlabelled
    (`spec.unlabelled`), else an `AnnotationError` naming the file and line."""
    if name in getattr(spec, "unlabelled", ()):
        return IGNORE_INDEX
    try:
        return spec.classes.index(name)
    except ValueError:
        raise AnnotationError(
            f"{path}:{line}: class {name!r} is not a class of benchmark {spec.name!r} (no prompt for it); "
            f"known classes: {list(spec.classes)}"
        ) from None


class LabelReader:
    """Turns a raw label of an annotation file into a class index (or `IGNORE_INDEX`).

    `kind="name"`: the label is a class name, after `label_map` (raw spelling -> class name, for the dataset's own
    spellings and typos). `kind="index"`: the label is an integer and `value - index_base` indexes the dataset's
    label table (`spec.all_labels()`: the classes, or `label_names` when some labels are not classes). Labels in
    `ignore` (compared as written, after stripping) and labels named in `spec.unlabelled` mark unlabelled frames.
    Anything else is an `AnnotationError` naming the file and line.
    """

    def __init__(self, spec, kind: str = "name", label_map: dict | None = None, index_base: int = 0,
                 ignore=(), loose: bool = False):
        if kind not in ("name", "index"):
            raise ValueError(f"label kind must be 'name' or 'index', got {kind!r}")
        self.spec, self.kind, self.index_base = spec, kind, index_base
        self.label_map = dict(label_map or {})
        self.ignore = {str(v) for v in ignore}
        self.loose = None
        if loose:  # names compared ignoring case and the separators ' ', '_', '-', '/'
            labels = spec.all_labels() if hasattr(spec, "all_labels") else spec.classes
            self.loose = {_loose(name): name for name in labels}
            self.loose.update({_loose(raw): name for raw, name in self.label_map.items()})

    def __call__(self, raw: str, path: Path, line: int) -> int:
        raw = raw.strip()
        if raw in self.ignore:
            return IGNORE_INDEX
        if self.kind == "name":
            name = self.label_map.get(raw, raw)
            if self.loose is not None:
                name = self.loose.get(_loose(name), name)
            return class_index(self.spec, name, path, line)
        value = _int(path, line, raw, "label id")
        if str(value) in self.ignore:
            return IGNORE_INDEX
        index = value - self.index_base
        labels = self.spec.all_labels() if hasattr(self.spec, "all_labels") else self.spec.classes
        if not 0 <= index < len(labels):
            raise AnnotationError(
                f"{path}:{line}: label id {value} is not a class of benchmark {self.spec.name!r} (no prompt for it); "
                f"ids run from {self.index_base} to {self.index_base + len(labels) - 1}"
            )
        return class_index(self.spec, labels[index], path, line)


def _loose(name: str) -> str:
    return " ".join(re.split(r"[\s_\-/]+", name.strip())).casefold()


# -- files, splits, videos --------------------------------------------------------------------------------------------


def _split_names(split: str, spec) -> list[str]:
    """The names `split` may have in a dataset's own files: the canonical one and the dataset's spelling."""
    own = spec.dataset_split(split) if hasattr(spec, "dataset_split") else split
    return [split] + ([own] if own != split else [])


def _split_filter(root: Path, split: str, spec, meta_split_file: str | None) -> set[str] | None:
    ids = spec.split_ids(split)
    if ids is None and meta_split_file:
        path = root / meta_split_file
        if path.is_file():
            splits = json.loads(path.read_text()).get("split", {})
            found = [name for name in _split_names(split, spec) if name in splits]
            if not found:
                raise ValueError(f"{path}: no split {split!r}; it has {sorted(splits)}")
            ids = [str(v) for v in splits[found[0]]]
    return None if ids is None else set(ids)


def find_by_pattern(root: Path, pattern: str, **fields) -> dict[str, Path]:
    """Files under `root` matching `pattern`, keyed by the `{id}` part (which may occur several times, e.g.
    `case_{id}/case_{id}.csv`); other `{name}` placeholders are filled from `fields` first."""
    if "{id}" not in pattern:
        raise ValueError(f"file pattern {pattern!r} must contain '{{id}}'")
    pattern = pattern.replace("{id}", "\0").format(**fields).replace("\0", "{id}")
    regex = re.escape(pattern).replace(re.escape("{id}"), "(?P<id>[^/]+)", 1).replace(re.escape("{id}"), "(?P=id)")
    found = {}
    for path in root.glob(pattern.replace("{id}", "*")):
        match = re.fullmatch(regex, path.relative_to(root).as_posix())
        if match and path.is_file():
            found[match.group("id")] = path
    return dict(sorted(found.items(), key=lambda item: _natural(item[0])))


def probe_video(path: Path) -> tuple[float, int]:
    """`(frame rate, frame count)` read from a video container's first video stream (PyAV); raises `ValueError` when
    the file cannot be read. Used when the layout gives no frame rate or length for a video (or `fps=None`)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            frames = stream.frames
            if not frames:
                frames = sum(1 for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, IndexError, OSError) as error:
        raise ValueError(f"cannot read {path.name}: {error}") from None
    if not rate or not frames:
        raise ValueError(f"{path.name} reports no frame rate or no frames")
    return float(rate), int(frames)


def _video_rate(path: Path, fps: float | None, report, video_id: str) -> tuple[float, int | None] | None:
    """The frame rate to use for a video: `fps` when given (frame count unknown), else the container's rate and frame
    count; None when the file is missing or the container cannot be read, the video skipped in `report` with why."""
    if not path.is_file():
        report.skip(video_id, f"video file {path} is missing")
        return None
    if fps is not None:
        return float(fps), None
    try:
        return probe_video(path)
    except ValueError as error:
        report.skip(video_id, f"no frame rate: {error} (pass the dataset's fps as a loader option)")
        return None


def _split_files(root: Path, labels: str, split: str, spec, split_folders, wanted: set[str] | None):
    """`(video_id, label file, its split folder)` of each video of `split`: the label files found per split folder,
    kept to `wanted` (`_split_filter`: the split's list, when the dataset has one)."""
    for video_id, (file, folder) in _files_per_split_folder(root, labels, split, spec, split_folders).items():
        if wanted is None or video_id in wanted:
            yield video_id, file, folder


def _natural(text: str):
    """Sort key that orders `case_2` before `case_10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


# -- Cataract-101: phase start frames ---------------------------------------------------------------------------------


def phase_starts_layout(root: Path, split: str, spec, annotations: str = "annotations.csv",
                        videos: str = "videos.csv", phase_names: str = "phases.csv", delimiter: str = ";",
                        video_path: str = "videos/case_{id}.mp4", frame_base: int = 0,
                        meta_split_file: str | None = None, label_map: dict | None = None,
                        trailing_repeat_ends: bool = False):
    """The Cataract-101 layout: `annotations.csv` rows `VideoID;FrameNo;Phase` mark the frame where each phase
    starts (a phase lasts until the next start; frames before the first start are unlabelled), `videos.csv` rows
    `VideoID;Frames;FPS;...` give each video's length, and `phases.csv` rows `Phase;Meaning` name the phase ids.
    `label_map` maps a `Meaning` as spelled in the file to a class name (Cataract-101 writes "Phacoemulsificiation").

    `trailing_repeat_ends=True` (Cataract-101): when a video's last row repeats the phase of the row before it, that
    row is not a new start but the end of the annotation (the release closes most videos this way): the phase lasts
    up to and including that frame, and later frames are unlabelled. The marker may sit on the frame just past the
    video's end (`FrameNo == Frames`). Without a trailing repeat the last phase lasts to the video's last frame.
    Assumed (not stated by the release): the marker frame itself still belongs to the phase."""
    names_path = root / phase_names
    label_map = label_map or {}
    id_to_class = {
        row["Phase"]: class_index(spec, label_map.get(row["Meaning"], row["Meaning"]), names_path, line)
        for line, row in read_table(names_path, delimiter, ("Phase", "Meaning"))
    }
    videos_path = root / videos
    info = {
        row["VideoID"]: (line, _int(videos_path, line, row["Frames"], "Frames"),
                         _float(videos_path, line, row["FPS"], "FPS"))
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
        end_of_annotation = num_frames
        if trailing_repeat_ends and len(events) >= 2 and events[-1][1] == events[-2][1]:
            marker = events.pop()[0]
            if 0 <= marker <= num_frames:
                end_of_annotation = min(marker + 1, num_frames)
            else:
                report.skip(video_id, f"its end-of-annotation row (frame {marker}) falls outside its {num_frames} "
                                      f"frames")
                continue
        if num_frames <= 0 or events[-1][0] >= num_frames or events[0][0] < 0:
            report.skip(video_id, f"phase starts {[e[0] for e in events]} fall outside its {num_frames} frames")
            continue
        phases = np.full(num_frames, IGNORE_INDEX, dtype=np.int64)
        for (start, label), (end, _) in zip(events, events[1:] + [(end_of_annotation, None)]):
            phases[start:end] = label
        result.append(VideoAnnotation(video_id, path, fps, num_frames, phases=phases))
    _report_missing(report, wanted, result)
    return result, report


def _report_missing(report: LoadReport, wanted: set[str] | None, result: list[VideoAnnotation]):
    if wanted is not None:
        for video_id in sorted(wanted - {v.video_id for v in result} - set(report.skipped), key=_natural):
            report.skip(video_id, "in the split but not in the annotations")


# -- CATARACTS: tool presence -----------------------------------------------------------------------------------------


def _normalise(name: str) -> str:
    return " ".join(name.split()).casefold()


def tool_presence_layout(root: Path, split: str, spec, labels_dir: str = "tool_annotations",
                         file_pattern: str = "{id}.csv", video_path: str = "videos/{id}.mp4", delimiter: str = ",",
                         frame_column: str = "Frame", frame_base: int = 1, fps: float | None = None,
                         videos: str | None = None, id_prefix: str = "", meta_split_file: str | None = None,
                         case_insensitive: bool = False, extra_columns: tuple = (), eval_column: str | None = None):
    """The CATARACTS tool-presence layout: one CSV per video with a frame column and one column per tool holding 1
    (visible), 0 (not visible) or 0.5 (ambiguous — stored as NaN and left out of scoring).

    The tool columns must be exactly the benchmark's classes (compared ignoring case and repeated spaces when
    `case_insensitive`), plus the frame column and any `extra_columns`; an unknown column is an error at line 1.
    When `eval_column` is present in a file, rows where it is 0 are left out of scoring (NaN). Frame rates come from
    `videos` (a `VideoID;Frames;FPS` table, which also fixes each video's frame count) or the `fps` option; with
    `fps=None` and no table they are read from each video file.
    """
    frame_info = {}
    if videos:
        videos_path = root / videos
        frame_info = {row["VideoID"]: (_int(videos_path, line, row["Frames"], "Frames"),
                                       _float(videos_path, line, row["FPS"], "FPS"))
                      for line, row in read_table(videos_path, ";", ("VideoID", "Frames", "FPS"))}
    folder = root / labels_dir
    if not folder.is_dir():
        raise FileNotFoundError(f"annotation folder {str(folder)!r} does not exist")
    wanted = _split_filter(root, split, spec, meta_split_file)
    prefix, suffix = file_pattern.split("{id}")
    key = _normalise if case_insensitive else (lambda name: name)
    class_keys = {key(name): c for c, name in enumerate(spec.classes)}
    known = {key(name) for name in (frame_column, *extra_columns, *([eval_column] if eval_column else []))}
    report, result = LoadReport(), []
    files = sorted(folder.glob(prefix + "*" + suffix), key=lambda p: _natural(p.name))
    for file in files:
        video_id = file.name[len(prefix) : len(file.name) - len(suffix)]
        if id_prefix and video_id.startswith(id_prefix):
            video_id = video_id[len(id_prefix):]
        if wanted is not None and video_id not in wanted:
            continue
        rows = read_rows(file, delimiter)
        if not rows:
            report.skip(video_id, f"{file.name} is empty")
            continue
        header = [key(h) for h in rows[0][1]]
        unknown = [raw for raw, h in zip(rows[0][1], header) if h not in class_keys and h not in known]
        if unknown:
            raise AnnotationError(f"{file}:1: column(s) {unknown} are not classes of benchmark {spec.name!r} "
                                  f"(no prompt for them); known classes: {list(spec.classes)}")
        missing = [name for name in spec.classes if key(name) not in header] + (
            [frame_column] if key(frame_column) not in header else [])
        if missing:
            raise AnnotationError(f"{file}:1: header {rows[0][1]} lacks column(s) {missing}")
        column = {h: i for i, h in enumerate(header)}
        class_columns = [column[key(name)] for name in spec.classes]
        frame_at, eval_at = column[key(frame_column)], column.get(key(eval_column)) if eval_column else None
        body = rows[1:]
        if not body:
            report.skip(video_id, f"{file.name} has no rows")
            continue
        frames, labels = [], np.empty((len(body), len(spec.classes)), dtype=np.float32)
        for i, (line, fields) in enumerate(body):
            if len(fields) != len(header):
                raise AnnotationError(f"{file}:{line}: expected {len(header)} {delimiter!r}-separated fields, "
                                      f"got {len(fields)}")
            frames.append(_int(file, line, fields[frame_at], frame_column) - frame_base)
            for c, at in enumerate(class_columns):
                value = fields[at]
                if value not in ("0", "1", "0.5", "0.0", "1.0"):
                    raise AnnotationError(f"{file}:{line}: {spec.classes[c]} must be 0, 0.5 or 1, got {value!r}")
                labels[i, c] = np.nan if value == "0.5" else float(value)
            if eval_at is not None and _float(file, line, fields[eval_at], eval_column) == 0:
                labels[i] = np.nan
        if frames != list(range(len(frames))):
            report.skip(video_id, f"{file.name}: frame numbers are not consecutive from {frame_base}")
            continue
        path = root / video_path.format(id=id_prefix + video_id)
        if not path.is_file():
            report.skip(video_id, f"video file {path} is missing")
            continue
        if video_id in frame_info:
            num_frames, rate = frame_info[video_id]
            if num_frames != len(frames):
                report.skip(video_id, f"{file.name} labels {len(frames)} frames, the video has {num_frames}")
                continue
        else:
            resolved = _video_rate(path, fps, report, video_id)
            if resolved is None:
                continue
            rate, num_frames = resolved
            if num_frames is not None and len(frames) > num_frames:
                report.skip(video_id, f"{file.name} labels {len(frames)} frames, the video has {num_frames}")
                continue
            if num_frames is not None and len(frames) < num_frames:
                labels = np.concatenate([labels, np.full((num_frames - len(frames), labels.shape[1]), np.nan,
                                                         dtype=np.float32)])
        result.append(VideoAnnotation(video_id, path, rate, len(labels), instruments=labels))
    _report_missing(report, wanted, result)
    return result, report


# -- Cataract-21 and CATARACTS 2020: one label per frame --------------------------------------------------------------


def _files_per_split_folder(root: Path, labels: str, split: str, spec, split_folders) -> dict:
    """`{video_id: (annotation file, folder)}` for the files matching the pattern `labels` (with `{folder}` filled by
    each of the split's folders when `split_folders` maps split names to folders); an error naming the pattern when
    there is none."""
    if split_folders is not None:
        if split not in split_folders:
            raise ValueError(f"benchmark {spec.name!r} has splits {sorted(split_folders)}, not {split!r}")
        folders = list(split_folders[split])
    else:
        folders = [None]
    found: dict[str, tuple[Path, str | None]] = {}
    for folder in folders:
        fields = {"folder": folder} if folder is not None else {}
        for video_id, path in find_by_pattern(root, labels, **fields).items():
            found[video_id] = (path, folder)
    if not found:
        raise FileNotFoundError(f"no annotation files matching {labels!r} under {str(root)!r}"
                                + (f" (folders {folders})" if folders != [None] else ""))
    return found


def frame_labels_layout(root: Path, split: str, spec, labels: str = "{id}.csv", video_path: str = "{id}.mp4",
                        frame_column: str | int = 0, label_column: str | int = 1, header: bool | None = None,
                        delimiter: str | None = None, frame_base: int = 0, label_kind: str = "name",
                        label_map: dict | None = None, index_base: int = 0, ignore: tuple = (),
                        fps: float | None = None, split_folders: dict | None = None,
                        meta_split_file: str | None = None):
    """One CSV per video with a frame number and a label on each row (Cataract-21 `frame,label`; CATARACTS 2020
    `Frame,Steps`).

    `labels` and `video_path` are patterns with `{id}` (and `{folder}` when the split is given by folders:
    `split_folders` maps a split name to the folders that hold it, as Cataract-21's `training/` and `validation/`).
    Columns are named (`header=True`) or positions (`header=False`); `header=None` treats the first row as a header
    when its frame field is not a number. Rows must have increasing frame numbers; frames without a row, and rows whose
    label is in `ignore`, are unlabelled. Labels are read by `LabelReader(kind=label_kind, ...)`. The frame rate is the
    `fps` option (the frame count is then the last labelled frame + 1) or, with `fps=None`, read from the video file
    (whose frame count must cover the labels).
    """
    read = LabelReader(spec, label_kind, label_map, index_base, ignore)
    wanted = _split_filter(root, split, spec, meta_split_file)
    report, result = LoadReport(), []
    for video_id, file, folder in _split_files(root, labels, split, spec, split_folders, wanted):
        rows = read_rows(file, delimiter)
        use_header = header if header is not None else bool(rows) and not _is_number(
            rows[0][1][frame_column] if isinstance(frame_column, int) and len(rows[0][1]) > frame_column else "")
        frame_at, label_at = frame_column, label_column
        if not use_header and not (isinstance(frame_at, int) and isinstance(label_at, int)):
            raise AnnotationError(f"{file}:1: expected a header naming columns {frame_column!r} and {label_column!r}")
        if use_header and rows:
            names = rows[0][1]
            frame_at, label_at = (_column(file, names, c) for c in (frame_column, label_column))
            rows = rows[1:]
        if not rows:
            report.skip(video_id, f"{file.name} has no labelled frames")
            continue
        frames, values = [], []
        for line, fields in rows:
            if len(fields) <= max(frame_at, label_at):
                raise AnnotationError(f"{file}:{line}: expected a frame and a label, got {fields}")
            frames.append(_int(file, line, fields[frame_at], "frame number") - frame_base)
            values.append(read(fields[label_at], file, line))
        if frames[0] < 0 or any(b <= a for a, b in zip(frames, frames[1:])):
            report.skip(video_id, f"{file.name}: frame numbers are not increasing from {frame_base}")
            continue
        path = root / video_path.format(id=video_id, folder=folder)  # str.format ignores a field it does not use
        resolved = _video_rate(path, fps, report, video_id)
        if resolved is None:
            continue
        rate, num_frames = resolved
        if num_frames is None:
            num_frames = frames[-1] + 1
        elif frames[-1] >= num_frames:
            report.skip(video_id, f"{file.name} labels frame {frames[-1]}, the video has {num_frames} frames")
            continue
        phases = np.full(num_frames, IGNORE_INDEX, dtype=np.int64)
        phases[frames] = values
        if (phases == IGNORE_INDEX).all():
            report.skip(video_id, f"{file.name} labels no frame with a class")
            continue
        result.append(VideoAnnotation(video_id, path, rate, num_frames, phases=phases))
    _report_missing(report, wanted, result)
    return result, report


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _column(path: Path, names: list[str], column: str | int) -> int:
    if isinstance(column, int):
        return column
    if column not in names:
        raise AnnotationError(f"{path}:1: header {names} lacks column {column!r}")
    return names.index(column)


# -- Cataract-1K and OphNet: labelled intervals -----------------------------------------------------------------------


def segments_layout(root: Path, split: str, spec, annotations: str, video_path: str, start_column: str,
                    end_column: str, label_column: str, video_column: str | None = None,
                    split_column: str | None = None, delimiter: str = ",", units: str = "seconds",
                    end_inclusive: bool = False, label_kind: str = "name", label_map: dict | None = None,
                    index_base: int = 0, ignore: tuple = (), info: str | None = None, info_fps_column: str = "fps",
                    info_frames_column: str = "total_frames", fps: float | None = None, tolerance_s: float = 1.0,
                    meta_split_file: str | None = None, start_seconds_column: str | None = None,
                    end_seconds_column: str | None = None, seconds_tolerance_s: float = 0.5,
                    loose_labels: bool = False):
    """Labelled intervals (`start`, `end`, label) converted to per-frame labels at each video's frame rate.

    `annotations` is one table with a `video_column` (OphNet) or a per-video pattern with `{id}` (Cataract-1K).
    `units="seconds"`: frame i (time i / fps) gets the label of the interval with start <= i / fps < end;
    `units="frames"`: frames start..end (`end_inclusive`) or start..end-1. Frames outside every interval are
    unlabelled (`IGNORE_INDEX`), and so are frames that two intervals give different labels. An interval may end up to
    `tolerance_s` after the video's last frame (it is cut there); one that starts after it, or ends later, skips the
    video. With a `split_column`, the split is read from the table (its values are the split names, canonical or the
    dataset's own, see `BenchmarkSpec.split_names`).

    Frame rate and count: from `info` when the layout has a metadata file — a per-video CSV pattern with columns
    `info_fps_column` / `info_frames_column` (Cataract-1K's `case_<id>_video.csv`), or an ActivityNet-style JSON
    `{"database": {id: {"fps", "duration"}}}` (OphNet's temporal-localisation file), read when present — otherwise
    from the video container; `fps` overrides the rate. A video whose rate or count cannot be found is skipped.

    Frames vs seconds (`units="frames"` with `start_seconds_column` / `end_seconds_column`, Cataract-1K's `sec` and
    `endSec`): the frame numbers are cross-checked with the seconds at the video's rate. They agree when every
    boundary is within `seconds_tolerance_s` (or 2 frames) of `seconds * fps`. When they disagree the video is noted in
    the `LoadReport` (`notes`: the rate the frame numbers imply, the largest gap, and which column placed the labels)
    and reconciled: the frame numbers are used when they fit the video, else the seconds (converted at the video's
    rate) when those fit; only when neither fits is the video skipped, with both reasons. A missing or non-numeric
    seconds value leaves that row out of the check. `loose_labels`: label names match ignoring case and the
    separators ' ', '_', '-', '/' (for layouts whose exact spellings are not verified).
    """
    if units not in ("seconds", "frames"):
        raise ValueError(f"units must be 'seconds' or 'frames', got {units!r}")
    if "{id}" not in annotations and not video_column:
        raise ValueError("segments_layout needs a video_column unless annotations is a per-video '{id}' pattern")
    cross_check = units == "frames" and bool(start_seconds_column and end_seconds_column)
    read = LabelReader(spec, label_kind, label_map, index_base, ignore, loose=loose_labels)
    columns = (start_column, end_column, label_column) + tuple(c for c in (video_column, split_column) if c)
    segments: dict[str, list[tuple]] = {}
    splits: dict[str, set[str]] = {}
    if "{id}" in annotations:
        files = find_by_pattern(root, annotations)
        if not files:
            raise FileNotFoundError(f"no annotation files matching {annotations!r} under {str(root)!r}")
        tables = [(video_id, file) for video_id, file in files.items()]
    else:
        tables = [(None, root / annotations)]
    for fixed_id, file in tables:
        for line, row in read_table(file, delimiter, columns):
            video_id = fixed_id if fixed_id is not None else row[video_column]
            start = _float(file, line, row[start_column], start_column)
            end = _float(file, line, row[end_column], end_column)
            if end < start:
                raise AnnotationError(f"{file}:{line}: {end_column} {row[end_column]} is before "
                                      f"{start_column} {row[start_column]}")
            seconds = None
            if cross_check:
                seconds = (_optional_float(row.get(start_seconds_column)), _optional_float(row.get(end_seconds_column)))
            label = read(row[label_column], file, line)
            segments.setdefault(video_id, []).append((start, end, label, file, line, seconds))
            if split_column:
                splits.setdefault(row[split_column], set()).add(video_id)
        if fixed_id is not None:
            segments.setdefault(fixed_id, [])
    wanted = _split_filter(root, split, spec, meta_split_file)
    if split_column:
        names = [name for name in _split_names(split, spec) if name in splits]
        if not names:
            raise ValueError(f"{annotations}: no split {split!r} in column {split_column!r}; it has {sorted(splits)}")
        in_split = set().union(*(splits[name] for name in names))
        wanted = in_split if wanted is None else wanted & in_split
    metadata = _segment_metadata(root, info)
    report, result = LoadReport(), []
    for video_id in sorted(segments, key=_natural):
        if wanted is not None and video_id not in wanted:
            continue
        rows = segments[video_id]
        if not rows:
            report.skip(video_id, "no labelled intervals")
            continue
        path = root / video_path.format(id=video_id)
        if not path.is_file():
            report.skip(video_id, f"video file {path} is missing")
            continue
        resolved = _segment_rate(root, info, metadata, video_id, path, info_fps_column, info_frames_column)
        if isinstance(resolved, str):
            report.skip(video_id, resolved)
            continue
        rate, num_frames = resolved
        rate = float(fps) if fps is not None else rate
        if num_frames <= 0:
            report.skip(video_id, "the video has no frames")
            continue
        tolerance = int(round(tolerance_s * rate))
        spans = _frame_spans(rows, units, rate, end_inclusive)
        problem = _spans_problem(spans, rows, units, num_frames, rate, tolerance)
        if cross_check:
            spans, problem, remark = _reconcile_seconds(spans, problem, rows, rate, num_frames, tolerance,
                                                        end_inclusive, seconds_tolerance_s)
            if remark:
                report.note(video_id, remark)
        if problem:
            report.skip(video_id, problem)
            continue
        phases = np.full(num_frames, IGNORE_INDEX, dtype=np.int64)
        claimed = np.zeros(num_frames, dtype=bool)
        conflict = np.zeros(num_frames, dtype=bool)
        for (first, stop), (_, _, label, *_) in zip(spans, rows):
            first, stop = max(first, 0), min(stop, num_frames)
            if label == IGNORE_INDEX or stop <= first:
                continue
            span = slice(first, stop)
            conflict[span] |= claimed[span] & (phases[span] != label)
            phases[span] = label
            claimed[span] = True
        phases[conflict] = IGNORE_INDEX
        if (phases == IGNORE_INDEX).all():
            report.skip(video_id, "no frame carries a class label")
            continue
        result.append(VideoAnnotation(video_id, path, rate, num_frames, phases=phases))
    _report_missing(report, wanted, result)
    return result, report


def _optional_float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _frame_spans(rows, units: str, rate: float, end_inclusive: bool) -> list[tuple[int, int]]:
    """`(first, stop)` frame ranges (stop exclusive) of the intervals, before cutting to the video."""
    spans = []
    for start, end, *_ in rows:
        if units == "seconds":
            spans.append((math.ceil(start * rate - 1e-6), math.ceil(end * rate - 1e-6)))
        else:
            spans.append((int(round(start)), int(round(end)) + (1 if end_inclusive else 0)))
    return spans


def _spans_problem(spans, rows, units, num_frames, rate, tolerance) -> str | None:
    """Why the intervals cannot lie in a video of `num_frames` frames, or None."""
    for (first, stop), (start, end, _, file, line, *_) in zip(spans, rows):
        if first >= num_frames or stop > num_frames + tolerance:
            return (f"{file.name}:{line}: interval {start:g}-{end:g} ({units}) lies outside the video's "
                    f"{num_frames} frames at {rate:g} fps")
    return None


def _reconcile_seconds(spans, problem, rows, rate, num_frames, tolerance, end_inclusive, tolerance_s):
    """Cross-check frame-number spans with the rows' seconds (see `segments_layout`): returns the spans to use, the
    skip reason (None when usable) and a remark for the report (None when the two columns agree)."""
    checked = [(row, span) for row, span in zip(rows, spans) if row[5] and None not in row[5]]
    if not checked:
        return spans, problem, None
    limit = max(2.0, tolerance_s * rate)
    worst, where = 0.0, None
    ratios = []
    for (start, end, _, file, line, (sec, end_sec)), _ in checked:
        for frame, seconds in ((start, sec), (end, end_sec)):
            gap = abs(frame - seconds * rate)
            if gap > worst:
                worst, where = gap, f"{file.name}:{line}"
            if seconds >= 1.0:
                ratios.append(frame / seconds)
    if worst <= limit:
        return spans, problem, None
    implied = f"{float(np.median(ratios)):.4g} fps" if ratios else "no single rate"
    gap = f"up to {worst:.0f} frames ({worst / rate:.2f} s) apart, worst at {where}"
    head = (f"frame numbers and seconds disagree: the frame numbers imply {implied}, the video's rate is "
            f"{rate:g} fps ({gap})")
    if problem is None:
        return spans, None, f"{head}; labels placed by the frame numbers, which fit the video's {num_frames} frames"
    by_seconds = []
    for start, end, _, file, line, seconds in rows:
        if not seconds or None in seconds:
            return spans, f"{head}; the frame numbers do not fit ({problem}) and {file.name}:{line} has no " \
                          f"seconds to place it by", None
        by_seconds.append((int(round(seconds[0] * rate)), int(round(seconds[1] * rate)) + (1 if end_inclusive else 0)))
    seconds_rows = [(sec[0], sec[1], label, file, line, sec) for _, _, label, file, line, sec in rows]
    seconds_problem = _spans_problem(by_seconds, seconds_rows, "seconds", num_frames, rate, tolerance)
    if seconds_problem is None:
        return by_seconds, None, (f"{head}; the frame numbers overrun the video ({problem}), so the labels are "
                                  f"placed by the seconds at {rate:g} fps")
    return spans, (f"{head}; neither fits the video: frame numbers: {problem}; seconds: {seconds_problem}"), None


def _segment_metadata(root: Path, info: str | None) -> dict | None:
    """The ActivityNet-style JSON database when `info` names one that exists, else None."""
    if not info or "{id}" in info:
        return None
    path = root / info
    if not path.is_file():
        return None
    try:
        database = json.loads(path.read_text()).get("database")
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
    if not isinstance(database, dict):
        raise AnnotationError(f"{path}:1: expected an object with a 'database' mapping of video ids")
    return database


def _segment_rate(root, info, metadata, video_id, path, fps_column, frames_column):
    if info and "{id}" in info:
        table = root / info.format(id=video_id)
        if table.is_file():
            rows = read_table(table, ",", (fps_column,))
            if not rows:
                raise AnnotationError(f"{table}:2: no row after the header")
            line, row = rows[-1]
            rate = _float(table, line, row[fps_column], fps_column)
            if row.get(frames_column):
                return rate, _int(table, line, row[frames_column], frames_column)
            try:
                return rate, probe_video(path)[1]
            except ValueError as error:
                return f"no frame count in {table.name} and {error}"
    if metadata is not None and video_id in metadata:
        entry = metadata[video_id]
        try:
            rate, duration = float(entry["fps"]), float(entry["duration"])
        except (KeyError, TypeError, ValueError):
            return f"{info}: entry {video_id!r} lacks a numeric fps and duration"
        return rate, int(round(duration * rate))
    try:
        return probe_video(path)
    except ValueError as error:
        where = "" if not info else (f" ({info.format(id=video_id)} is missing)" if "{id}" in info
                                     else f" (no entry in {info})")
        return f"no frame rate{where}: {error}"


# -- CaDIS: instrument presence from segmentation masks ---------------------------------------------------------------


def read_mask(path: Path) -> np.ndarray:
    """A label image (8-bit grey or palette PNG) as an `(H, W)` array of pixel values (class ids), decoded with PyAV."""
    import av

    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            if frame.format.name not in ("gray", "gray8", "pal8"):
                raise ValueError(f"{path}: label image format {frame.format.name!r}, expected 8-bit grey or palette")
            array = frame.to_ndarray()
    except (av.FFmpegError, StopIteration, OSError) as error:
        raise AnnotationError(f"{path}:1: cannot read the label image: {error}") from None
    return array[0] if isinstance(array, tuple) else array


def mask_presence_layout(root: Path, split: str, spec, class_pixels: dict, folder_pattern: str = "Video{num:02d}",
                         labels_dir: str = "Labels", file_regex: str = r"Video(?P<num>\d+)_frame(?P<frame>\d+)\.png",
                         video_path: str = "videos/train{num:02d}.mp4", frame_base: int = 0,
                         fps: float | None = 30.0, meta_split_file: str | None = None):
    """Instrument presence from the semantic-segmentation masks of sparse frames (the CaDIS layout).

    Each video folder (`folder_pattern`, e.g. `Video01/`) holds `labels_dir/` masks named by `file_regex`, whose
    `frame` group is the frame number in the source video (`video_path`, counted from `frame_base`). A class is
    present in a labelled frame when any pixel holds one of its `class_pixels` values; frames without a mask are
    unknown (NaN). The frame rate is `fps` (the frame count is then the last labelled frame + 1: every later frame
    would be unknown anyway) or, with `fps=None`, read from the video file.
    """
    missing = [name for name in spec.classes if name not in class_pixels]
    if missing:
        raise ValueError(f"benchmark {spec.name!r}: class_pixels has no pixel values for {missing}")
    lookup = [np.asarray(class_pixels[name], dtype=np.int64) for name in spec.classes]
    if any(((ids < 0) | (ids > 255)).any() or not ids.size for ids in lookup):
        raise ValueError(f"benchmark {spec.name!r}: class_pixels values must be non-empty lists of 0-255")
    pattern = re.compile(file_regex)
    folder_regex = re.compile(re.escape(folder_pattern).replace(re.escape("{num:02d}"), r"(?P<num>\d+)"))
    folders = {}
    for folder in root.iterdir() if root.is_dir() else []:
        match = folder_regex.fullmatch(folder.name)
        if match and folder.is_dir():
            folders[folder.name] = (int(match.group("num")), folder)
    if not folders:
        raise FileNotFoundError(f"no video folders matching {folder_pattern!r} under {str(root)!r}")
    wanted = _split_filter(root, split, spec, meta_split_file)
    report, result = LoadReport(), []
    for video_id, (num, folder) in sorted(folders.items(), key=lambda item: item[1][0]):
        if wanted is not None and video_id not in wanted:
            continue
        masks = {}
        for file in sorted((folder / labels_dir).glob("*")) if (folder / labels_dir).is_dir() else []:
            match = pattern.fullmatch(file.name)
            if not match:
                continue
            if int(match.group("num")) != num:
                raise AnnotationError(f"{file}:1: mask of video {int(match.group('num'))} in folder {folder.name}")
            masks[int(match.group("frame")) - frame_base] = file
        if not masks:
            report.skip(video_id, f"no label masks in {folder.name}/{labels_dir}")
            continue
        path = root / video_path.format(num=num, id=video_id)
        resolved = _video_rate(path, fps, report, video_id)
        if resolved is None:
            continue
        rate, num_frames = resolved
        last = max(masks)
        if min(masks) < 0 or (num_frames is not None and last >= num_frames):
            report.skip(video_id, f"masks of frames {min(masks)}-{last} fall outside its {num_frames} frames")
            continue
        num_frames = last + 1 if num_frames is None else num_frames
        labels = np.full((num_frames, len(spec.classes)), np.nan, dtype=np.float32)
        for frame, file in masks.items():
            present = np.zeros(256, dtype=bool)
            present[np.unique(read_mask(file))] = True
            labels[frame] = [float(present[ids].any()) for ids in lookup]
        result.append(VideoAnnotation(video_id, path, rate, num_frames, instruments=labels))
    _report_missing(report, wanted, result)
    return result, report


# -- SICS-155: one label per line -------------------------------------------------------------------------------------


def frame_sequence_layout(root: Path, split: str, spec, labels: str = "groundTruth/{id}.txt",
                          video_path: str = "videos/{id}.mp4", split_folders: dict | None = None,
                          label_map: dict | None = None, ignore: tuple = (), fps: float | None = None,
                          mapping: str | None = None, meta_split_file: str | None = None):
    """One text file per video whose line i (0-based, blank lines at the end ignored) is the label name of frame i
    (the SICS-155 challenge's ground truth; its evaluation script reads it this way). Labels in `ignore` (SICS-155's
    `background`) are unlabelled; others are class names after `label_map`.

    `labels` / `video_path` are patterns with `{id}` and, with `split_folders` (`{split: [folders]}`), `{folder}`.
    `mapping`: an optional `<id> <name>` file (SICS-155's `mapping.txt`) read when present: a name of it that is not a
    known label is an `AnnotationError` (so a renamed phase is caught before scoring). The frame rate is `fps` or,
    with `fps=None`, the video's; the frame count is the number of lines (a container with more frames is
    accepted: the extra frames are unlabelled; one with fewer is skipped).
    """
    read = LabelReader(spec, "name", label_map, 0, ignore)
    if mapping:
        mapping_path = root / mapping
        if mapping_path.is_file():
            for line, fields in read_rows(mapping_path, " "):
                if len(fields) < 2 or not fields[0].isdigit():
                    raise AnnotationError(f"{mapping_path}:{line}: expected '<id> <name>', got {' '.join(fields)!r}")
                read(" ".join(fields[1:]), mapping_path, line)
    wanted = _split_filter(root, split, spec, meta_split_file)
    report, result = LoadReport(), []
    for video_id, file, folder in _split_files(root, labels, split, spec, split_folders, wanted):
        with open(file, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines:
            report.skip(video_id, f"{file.name} is empty")
            continue
        phases = np.array([read(text, file, number) for number, text in enumerate(lines, start=1)], dtype=np.int64)
        path = root / video_path.format(id=video_id, folder=folder)  # str.format ignores a field it does not use
        resolved = _video_rate(path, fps, report, video_id)
        if resolved is None:
            continue
        rate, num_frames = resolved
        if num_frames is not None and num_frames < len(phases):
            report.skip(video_id, f"{file.name} labels {len(phases)} frames, the video has {num_frames}")
            continue
        if num_frames is not None and num_frames > len(phases):
            phases = np.concatenate([phases, np.full(num_frames - len(phases), IGNORE_INDEX, dtype=np.int64)])
        if (phases == IGNORE_INDEX).all():
            report.skip(video_id, f"{file.name} labels no frame with a class")
            continue
        result.append(VideoAnnotation(video_id, path, rate, len(phases), phases=phases))
    _report_missing(report, wanted, result)
    return result, report


# -- Cataract-1K segmentation subset: polygons per still frame ---------------------------------------------------------


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def polygon_presence_layout(root: Path, split: str, spec, class_titles: dict, case_pattern: str = "case_{id}",
                            images_dir: str = "img", annotations_dir: str = "ann", fps: float = 0.2,
                            other_titles: tuple = (), meta_split_file: str | None = None):
    """Instrument presence from per-image polygon annotations in the Supervisely format (Cataract-1K's segmentation
    subset): each case folder (`case_pattern`, e.g. `case_5013/`) holds the still frames in `images_dir/`
    (`case5013_01.png`, ...) and, for each, `annotations_dir/<image file name>.json` with
    `{"objects": [{"classTitle": ..., "points": {"exterior": ...}}, ...]}`.

    A class is present in a frame when an object's `classTitle` maps to it in `class_titles` (several titles may map
    to one class: 'slit knife' and 'incision knife'); with no such object it is absent (0). Titles in `other_titles`
    (the anatomy: pupil, iris, lens, ...) are not instruments and are ignored; any other title is ignored too but named
    in the report's notes. An image without its JSON file is unknown (NaN). The frames of a case are its images in
    natural name order; they are not a video, so `fps` is the nominal extraction rate (one frame per 5 s) and every
    image is a labelled frame (the protocols score exactly them: `sparse_labels`).
    """
    missing = [name for name in spec.classes if name not in set(class_titles.values())]
    if missing:
        raise ValueError(f"benchmark {spec.name!r}: class_titles maps no title to {missing}")
    title_class = {title.casefold(): spec.classes.index(name) for title, name in class_titles.items()}
    others = {title.casefold() for title in other_titles}
    if "{id}" not in case_pattern:
        raise ValueError(f"case pattern {case_pattern!r} must contain '{{id}}'")
    prefix, suffix = case_pattern.split("{id}", 1)
    cases = {}
    for folder in root.iterdir() if root.is_dir() else []:
        name = folder.name
        if folder.is_dir() and name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix + suffix):
            cases[name[len(prefix):len(name) - len(suffix)]] = folder
    if not cases:
        raise FileNotFoundError(f"no case folders matching {case_pattern!r} under {str(root)!r}")
    wanted = _split_filter(root, split, spec, meta_split_file)
    report, result = LoadReport(), []
    for video_id in sorted(cases, key=_natural):
        if wanted is not None and video_id not in wanted:
            continue
        folder = cases[video_id]
        images = sorted((p for p in (folder / images_dir).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES),
                        key=lambda p: _natural(p.name)) if (folder / images_dir).is_dir() else []
        if not images:
            report.skip(video_id, f"no images in {folder.name}/{images_dir}")
            continue
        labels = np.full((len(images), len(spec.classes)), np.nan, dtype=np.float32)
        unknown: set[str] = set()
        for i, image in enumerate(images):
            path = folder / annotations_dir / f"{image.name}.json"
            if not path.is_file():
                continue
            try:
                objects = json.loads(path.read_text(encoding="utf-8")).get("objects")
            except json.JSONDecodeError as error:
                raise AnnotationError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
            except AttributeError:
                objects = None
            if not isinstance(objects, list):
                raise AnnotationError(f"{path}:1: expected an object with an 'objects' list (Supervisely format)")
            labels[i] = 0.0
            for obj in objects:
                title = str(obj.get("classTitle", "")) if isinstance(obj, dict) else ""
                if title.casefold() in title_class:
                    labels[i, title_class[title.casefold()]] = 1.0
                elif title.casefold() not in others:
                    unknown.add(title)
        if np.isnan(labels).all():
            report.skip(video_id, f"no annotation files in {folder.name}/{annotations_dir}")
            continue
        if unknown:
            report.note(video_id, f"object classes that are neither instruments nor anatomy were ignored: "
                                  f"{sorted(unknown)}")
        result.append(VideoAnnotation(video_id, folder / images_dir, float(fps), len(images), instruments=labels,
                                      frame_files=tuple(images)))
    _report_missing(report, wanted, result)
    return result, report
