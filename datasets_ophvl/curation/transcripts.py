"""Reading the transcripts users put next to their videos: WebVTT, SubRip and JSON segments.

All readers return `Sentence`s (here: transcript segments, one per cue) sorted by start time, with markup removed.
Times are kept as written, even when they fall outside the video: the segmentation stage decides what to do with
them (clamp or skip) and counts it.

JSON accepts the shapes tools write: a list of `{"start", "end", "text"}`, an object with such a list under
`"segments"` (the Whisper CLI), or under `"chunks"` with `"timestamp": [start, end]` (a transformers ASR pipeline's
output).

A file that cannot be used raises `TranscriptError` with a one-line message that starts with the file's path and says
what is wrong and what was expected: invalid or too deeply nested JSON, a segment that is not an object, a
`timestamp` that is not `[start, end]`, a time that is not a finite number, a `text` that is not a string.
"""

import html
import json
import math
import re
from pathlib import Path

from .base import Sentence


TRANSCRIPT_SUFFIXES = (".vtt", ".srt", ".json")

_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?")
_CUE_TIMING = re.compile(r"^\s*(\S+)\s+-->\s+(\S+)")
_TAG = re.compile(r"<[^>]*>")  # <i>, <c.colour>, <v Speaker>, inline <00:00:01.000> timestamps
_SSA_OVERRIDE = re.compile(r"\{\\[^}]*\}")  # {\an8} in SubRip files converted from ASS


class TranscriptError(ValueError):
    """A transcript file that cannot be read."""


def parse_timestamp(text: str) -> float:
    """Seconds from `HH:MM:SS.mmm`, `HH:MM:SS,mmm` or `MM:SS.mmm`."""
    match = _TIME.fullmatch(text.strip())
    if not match:
        raise TranscriptError(f"bad timestamp {text!r}; expected HH:MM:SS.mmm or MM:SS.mmm (SRT: HH:MM:SS,mmm)")
    hours, minutes, seconds, millis = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int((millis or "0").ljust(3, "0")) / 1000


def _clean(text: str) -> str:
    text = _SSA_OVERRIDE.sub("", _TAG.sub("", text))
    return " ".join(html.unescape(text).split())


def _cues(text: str):
    """Yield `(start, end, lines)` for each timed cue of an SRT or VTT body (blocks separated by blank lines)."""
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = [line for line in block.split("\n") if line.strip()]
        for i, line in enumerate(lines):
            timing = _CUE_TIMING.match(line)
            if timing:
                yield parse_timestamp(timing.group(1)), parse_timestamp(timing.group(2)), lines[i + 1:]
                break
        # Blocks without a timing line (the WEBVTT header, NOTE, STYLE, REGION) are not cues.


def _to_segments(cues) -> list[Sentence]:
    segments = []
    previous_lines: list[str] = []
    for start, end, lines in cues:
        lines = [_clean(line) for line in lines]
        # Rolling captions (YouTube's automatic ones) repeat the previous cue's last line before the new words.
        fresh = [line for line in lines if line and line not in previous_lines]
        previous_lines = lines
        text = " ".join(fresh)
        if text:
            segments.append((start, end, text))
    segments.sort(key=lambda s: (s[0], s[1]))
    return [Sentence(i, start, end, text) for i, (start, end, text) in enumerate(segments)]


def read_srt(path) -> list[Sentence]:
    return _to_segments(_cues(Path(path).read_text(encoding="utf-8-sig", errors="replace")))


def read_vtt(path) -> list[Sentence]:
    text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    if not text.lstrip().startswith("WEBVTT"):
        raise TranscriptError("does not start with WEBVTT; expected a WebVTT file")
    return _to_segments(_cues(text))


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _seconds(value, what: str) -> float:
    """A finite number of seconds from a JSON value (a number, or a string holding one)."""
    number = None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)
        except (ValueError, OverflowError):  # OverflowError: an integer too large for a float
            number = None
    if number is None or not math.isfinite(number):
        raise TranscriptError(f"{what} is {_short(value)}; expected a finite number of seconds")
    return number


def read_json(path) -> list[Sentence]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except RecursionError:
        raise TranscriptError("not valid JSON: nested too deeply; expected a list of segments") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an integer with too many digits
        raise TranscriptError(f"not valid JSON ({error}); expected a list of segments") from None
    if isinstance(data, dict):
        data = data.get("segments", data.get("chunks"))
    if not isinstance(data, list):
        raise TranscriptError("expected a list of segments (or an object with `segments` or `chunks`), "
                              f"got {type(data).__name__}")
    cues = []
    for index, entry in enumerate(data):
        where = f"segment {index}"
        if not isinstance(entry, dict):
            raise TranscriptError(f"{where} is {_short(entry)} ({type(entry).__name__}); expected an object")
        if "timestamp" in entry:
            stamp = entry["timestamp"]
            if not isinstance(stamp, (list, tuple)) or len(stamp) != 2:
                raise TranscriptError(f"{where}: `timestamp` is {_short(stamp)}; expected [start, end]")
            start, end = stamp
        else:
            start, end = entry.get("start"), entry.get("end")
        start = _seconds(start, f"{where}: start")
        end = start if end is None else _seconds(end, f"{where}: end")  # a pipeline's last chunk may have no end
        text = entry.get("text", "")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise TranscriptError(f"{where}: `text` is a {type(text).__name__}; expected a string")
        cues.append((start, end, [text]))
    return _to_segments(cues)


READERS = {".vtt": read_vtt, ".srt": read_srt, ".json": read_json}


def read_transcript(path) -> list[Sentence]:
    """Read a `.vtt`, `.srt` or `.json` transcript into timed segments."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise TranscriptError(f"{path}: unknown transcript format {path.suffix!r}; "
                              f"expected one of {TRANSCRIPT_SUFFIXES}")
    try:
        return reader(path)
    except TranscriptError as error:
        raise TranscriptError(f"{path}: {error}") from None
