"""Finding the user's videos and what lies next to them: transcripts and titles.

- Media files are found recursively by suffix (video and audio suffixes: audio-only files are then refused by the
  probe stage with a counted reason instead of being ignored silently). Hidden folders and the output folder are
  not searched. The order is sorted, so ids, keys and shards do not depend on the file system.
- A transcript is `<stem>.vtt`, `<stem>.srt` or `<stem>.json` beside the video, or a language-tagged
  `<stem>.<lang>.vtt|srt` as yt-dlp writes them (the first one in sorted order).
- A title comes from `<stem>.title.txt`, else from `titles.json` / `titles.csv` in the video's folder or in the
  source root (keyed by file name, stem or path relative to the root), else from yt-dlp's `<stem>.info.json`.
- `video_id` is the path relative to the root without its suffix (`surgeon_a/case_01`), or with it when two media
  files share a stem; the sample key is that id made WebDataset-safe, with a short hash appended when two ids would
  give the same key. A build keeps the ids and keys it gave (`assignments`) and passes them back on resume, so a file
  added to the source folder later never takes the id or key of a file already built.
- Nothing that cannot be read is left out silently: a sub-folder that cannot be listed, a media file that cannot be
  examined, a title file, titles table or info.json that cannot be read or parsed becomes a `SourceProblem` (logged
  as a warning naming the path, counted and listed in the build report); the build goes on without it.
"""

import csv
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..format import make_key
from .base import describe_os_error
from .transcripts import TRANSCRIPT_SUFFIXES


logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".flv")
AUDIO_SUFFIXES = (".m4a", ".mp3", ".wav", ".aac", ".flac", ".ogg", ".opus")
MEDIA_SUFFIXES = VIDEO_SUFFIXES + AUDIO_SUFFIXES
TITLE_FILES = ("titles.json", "titles.csv")


@dataclass
class Source:
    """A media file and its sidecars, before any stage has looked at it."""

    path: Path
    video_id: str
    key: str
    transcript: Path | None
    title: str | None
    title_source: str | None


@dataclass(frozen=True)
class SourceProblem:
    """A path under the source folder that the build could not use. `reason` is a short, stable phrase (counted
    across files, e.g. `folder unreadable (permission denied)`); `detail` says more about this file."""

    path: Path
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" + (f": {self.detail}" if self.detail else "")


def _note(problems: list | None, path: Path, reason: str, detail: str = "") -> None:
    problem = SourceProblem(Path(path), reason, detail)
    logger.warning("%s", problem)
    if problems is not None:
        problems.append(problem)


def find_media(root: Path, exclude: Path | None = None, problems: list | None = None) -> list[Path]:
    """The media files under `root` (any depth, hidden folders and files and `exclude` left out), sorted.

    A folder that cannot be listed or a media file that cannot be examined (permissions) is appended to `problems`
    as a `SourceProblem` and logged, instead of being left out silently."""
    root = Path(root)
    exclude = Path(exclude).resolve() if exclude else None

    def excluded(path: Path) -> bool:
        if exclude is None:
            return False
        real = path.resolve()
        return real == exclude or exclude in real.parents

    def unlistable(error: OSError) -> None:
        folder = Path(error.filename) if error.filename else root
        _note(problems, folder, f"folder unreadable ({describe_os_error(error)})", "its files were left out")

    found = []
    # os.walk, like Path.rglob, does not descend into links to folders; unlike rglob it reports what it cannot list.
    for folder, folders, files in os.walk(root, onerror=unlistable):
        folder = Path(folder)
        folders[:] = [name for name in folders if not name.startswith(".") and not excluded(folder / name)]
        for name in files:
            path = folder / name
            if name.startswith(".") or path.suffix.lower() not in MEDIA_SUFFIXES:
                continue
            try:
                if not path.is_file() or excluded(path):
                    continue
            except OSError as error:  # a folder that can be listed but not entered
                _note(problems, path, f"media file unreadable ({describe_os_error(error)})")
                continue
            found.append(path)
    return sorted(found)


def find_transcript(video: Path) -> Path | None:
    for suffix in TRANSCRIPT_SUFFIXES:
        candidate = video.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    for suffix in (".vtt", ".srt"):  # yt-dlp: <stem>.en.vtt
        tagged = sorted(video.parent.glob(f"{_glob_escape(video.stem)}.*{suffix}"))
        if tagged:
            return tagged[0]
    return None


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def read_title_table(path: Path) -> dict[str, str]:
    """`titles.json` (an object `{name: title}` or a list of `{file|video|video_id|stem|name, title}`) or
    `titles.csv` (a header with a name column and `title`, or two columns without a header)."""
    path = Path(path)
    table: dict[str, str] = {}
    name_fields = ("file", "filename", "video", "video_id", "stem", "name", "path")
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}
        for row in data if isinstance(data, list) else []:
            if isinstance(row, dict) and isinstance(row.get("title"), str):
                name = next((row[f] for f in name_fields if row.get(f)), None)
                if name:
                    table[str(name)] = row["title"]
        return table
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        return table
    header = [cell.strip().lower() for cell in rows[0]]
    if "title" in header:
        title_col = header.index("title")
        name_col = next((header.index(f) for f in name_fields if f in header), 0 if title_col else 1)
        rows = rows[1:]
    else:
        name_col, title_col = 0, 1
    for row in rows:
        if len(row) > max(name_col, title_col) and row[name_col].strip():
            table[row[name_col].strip()] = row[title_col].strip()
    return table


class TitleFinder:
    """Looks titles up for videos, reading each `titles.json` / `titles.csv` once.

    A title file, titles table or info.json that cannot be read or parsed is ignored (the next source of a title is
    tried), appended to `problems` as a `SourceProblem` and logged."""

    def __init__(self, root: Path, problems: list | None = None):
        self.root = Path(root)
        self.problems = problems
        self._tables: dict[Path, dict[str, str]] = {}

    def _table(self, folder: Path) -> dict[str, str]:
        if folder not in self._tables:
            table: dict[str, str] = {}
            for name in reversed(TITLE_FILES):  # titles.json wins over titles.csv
                path = folder / name
                try:
                    if path.is_file():
                        table.update(read_title_table(path))
                except OSError as error:
                    _note(self.problems, path, f"titles table unreadable ({describe_os_error(error)}; ignored)")
                except (ValueError, RecursionError, csv.Error) as error:
                    detail = "nested too deeply" if isinstance(error, RecursionError) else " ".join(str(error).split())
                    _note(self.problems, path, "titles table invalid (ignored)", detail[:200])
            self._tables[folder] = table
        return self._tables[folder]

    def __call__(self, video: Path) -> tuple[str | None, str | None]:
        """`(title, where it came from)`, or `(None, None)`."""
        sidecar = video.with_name(video.stem + ".title.txt")
        try:
            text = sidecar.read_text(encoding="utf-8-sig", errors="replace") if sidecar.is_file() else ""
        except OSError as error:
            _note(self.problems, sidecar, f"title file unreadable ({describe_os_error(error)}; ignored)")
            text = ""
        title = " ".join(text.split())
        if title:
            return title, "title.txt"
        relative = video.relative_to(self.root)
        names = (video.name, video.stem, relative.as_posix(), relative.with_suffix("").as_posix())
        for folder in dict.fromkeys((video.parent, self.root)):
            table = self._table(folder)
            for name in names:
                if table.get(name, "").strip():
                    return table[name].strip(), "titles table"
        info = video.with_name(video.stem + ".info.json")
        title = None
        try:
            if info.is_file():
                data = json.loads(info.read_text(encoding="utf-8"))
                title = data.get("title") if isinstance(data, dict) else None
        except OSError as error:
            _note(self.problems, info, f"info.json unreadable ({describe_os_error(error)}; ignored)")
        except (ValueError, RecursionError) as error:
            detail = "nested too deeply" if isinstance(error, RecursionError) else " ".join(str(error).split())
            _note(self.problems, info, "info.json invalid (ignored)", detail[:200])
        if isinstance(title, str) and title.strip():
            return title.strip(), "info.json"
        return None, None


def _hashed_key(video_id: str, attempt: int) -> str:
    salt = video_id if attempt == 0 else f"{video_id}#{attempt}"
    return make_key(f"{video_id}-{hashlib.sha1(salt.encode()).hexdigest()[:8]}")


def discover(root, exclude=None, *, paths=None, assigned=None, reserved=None, problems=None) -> list[Source]:
    """All media files under `root` (never under `exclude`) with their transcripts, titles, ids and unique keys.

    Args:
        paths: the media files, when `find_media` already listed them.
        assigned: `{path relative to root: (video_id, key)}` given by an earlier run of the same build (see
            `assignments`): those files keep their id and key, and no other file gets either. A resumed build thus
            never gives a file that was added (or that sorts before another) a key whose samples are already written.
        reserved: `{key: video_id}` already in use (the videos a build recorded): a file gets such a key only when
            it is that video.
        problems: a list that receives a `SourceProblem` for each folder, media file or title source that cannot
            be read (see the module docstring).
    """
    root = Path(root)
    titles = TitleFinder(root, problems)
    paths = find_media(root, exclude, problems) if paths is None else list(paths)
    assigned = {str(rel): tuple(value) for rel, value in (assigned or {}).items()}
    reserved = dict(reserved or {})
    used_ids = {video_id for video_id, _ in assigned.values()}
    used_keys = {key for _, key in assigned.values()}
    stems = Counter(path.relative_to(root).with_suffix("").as_posix() for path in paths)
    ids: dict[Path, tuple[str, str]] = {}
    for path in paths:  # files seen before first: their ids and keys are fixed
        relative = path.relative_to(root).as_posix()
        if relative in assigned:
            ids[path] = assigned[relative]
    for path in paths:  # then new files, in sorted order
        if path in ids:
            continue
        relative = path.relative_to(root)
        video_id = relative.with_suffix("").as_posix()
        if stems[video_id] > 1 or video_id in used_ids:
            # case.mp4 and case.mkv side by side (or an id an earlier run gave another file): keep the suffix
            video_id = relative.as_posix()
        attempt = 1
        while video_id in used_ids:  # "case.mp4.mkv" (stem "case.mp4") beside "case.mp4" and "case.mkv"
            video_id, attempt = f"{relative.as_posix()}~{attempt}", attempt + 1
        key, attempt = make_key(video_id), 0
        # "a b" and "a-b" both give "a-b": keep keys unique and stable
        while key in used_keys or reserved.get(key, video_id) != video_id:
            key, attempt = _hashed_key(video_id, attempt), attempt + 1
        used_ids.add(video_id)
        used_keys.add(key)
        ids[path] = (video_id, key)
    sources = []
    for path in paths:
        video_id, key = ids[path]
        title, title_source = titles(path)
        sources.append(Source(path, video_id, key, find_transcript(path), title, title_source))
    return sources


def assignments(root, sources: list[Source]) -> dict[str, list[str]]:
    """`{path relative to root: [video_id, key]}` of `sources`, to keep with the build (`discover(assigned=...)`)."""
    root = Path(root)
    return {source.path.relative_to(root).as_posix(): [source.video_id, source.key] for source in sources}
