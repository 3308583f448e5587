"""The OphVL on-Hub format: WebDataset tar shards, one folder per subset, plus a dataset card.

```
README.md                                   dataset card; its YAML `configs:` block names the subsets
data/clips/train-00000-of-00008.tar          <key>.mp4 (a short pre-cut clip) + <key>.json
data/videos/train-00000-of-00002.tar         <key>.mp4 (a whole procedure, low fps / resolution) + <key>.json
data/silent/train-00000-of-00002.tar         <key>.mp4 (a whole silent video, low fps / resolution) + <key>.json
```

Keys contain no dots or slashes (WebDataset splits a member name at its first dot). The json of each subset:

- `clips`: `video_id` (str), `start`, `end` (seconds in the source video), `narration` (str), `sentence_ids` (list of
  int, the source transcript sentences the clip covers).
- `videos`: `video_id`, `duration` (s), `title` (str), `title_summary` (dict with the structured attributes
  `surgery`, `phases`, `instruments`, `medications`, `disease_cause`, `surgical_objective`, `postoperative_care`;
  strings or lists of strings, missing ones empty).
- `silent`: `video_id`, `duration`, `title`.

`validate_record` checks one json against these rules and says what is wrong; readers skip and count bad samples.
"""

import math
import re


SUBSETS = ("clips", "videos", "silent")
SPLIT = "train"
TITLE_SUMMARY_FIELDS = (
    "surgery",
    "phases",
    "instruments",
    "medications",
    "disease_cause",
    "surgical_objective",
    "postoperative_care",
)
# Texts longer than this are refused: nothing in OphVL is a book, and BERT reads 512 tokens at most.
MAX_TEXT_CHARS = 4000

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def make_key(video_id: str, index: int | None = None) -> str:
    """A WebDataset-safe sample key from a video id (and a clip index)."""
    base = _KEY_UNSAFE.sub("-", str(video_id)).strip("-") or "video"
    return base if index is None else f"{base}_{index:05d}"


def shard_name(index: int, total: int) -> str:
    return f"{SPLIT}-{index:05d}-of-{total:05d}.tar"


def shard_glob(subset: str) -> str:
    """The data-files pattern of a subset, relative to the repository root."""
    return f"data/{subset}/{SPLIT}-*.tar"


def configs_block() -> list[dict]:
    """The dataset card's `configs:` entries, one per subset (`clips` is the default)."""
    return [
        {"config_name": subset, "data_files": [{"split": SPLIT, "path": shard_glob(subset)}], **({"default": True} if subset == "clips" else {})}
        for subset in SUBSETS
    ]


def _is_number(value) -> bool:
    """A finite int or float (not a bool): NaN and ±Infinity (which `json.loads` accepts) are not numbers here."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _check_seconds(record: dict, field: str) -> str | None:
    value = record.get(field)
    if not _is_number(value):
        return f"`{field}` is {value!r}, expected a finite number of seconds"
    return None


def _check_text(record: dict, field: str) -> str | None:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        return f"empty or missing `{field}`"
    if len(value) > MAX_TEXT_CHARS:
        return f"`{field}` has {len(value)} characters (more than {MAX_TEXT_CHARS})"
    return None


def validate_record(subset: str, record) -> str | None:
    """Return why a sample's json is invalid for `subset`, or None when it is valid."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown OphVL subset {subset!r}; expected one of {SUBSETS}")
    if not isinstance(record, dict):
        return f"json is a {type(record).__name__}, expected an object"
    if not isinstance(record.get("video_id"), str) or not record["video_id"]:
        return "missing `video_id`"
    if subset == "clips":
        problem = _check_seconds(record, "start") or _check_seconds(record, "end")
        if problem:
            return problem
        start, end = record["start"], record["end"]
        if not 0 <= start < end:
            return f"invalid clip times start={start!r} end={end!r} (expected 0 <= start < end)"
        return _check_text(record, "narration")
    problem = _check_seconds(record, "duration")
    if problem:
        return problem
    if record["duration"] <= 0:
        return f"invalid `duration` {record['duration']!r} (expected seconds > 0)"
    if subset == "videos":
        problem = _check_text(record, "title")
        if problem:
            return problem
        summary = record.get("title_summary")
        if not isinstance(summary, dict) or not any(summary.get(f) for f in TITLE_SUMMARY_FIELDS):
            return "missing `title_summary` (expected an object with at least one of " + ", ".join(TITLE_SUMMARY_FIELDS) + ")"
        return None
    title = record.get("title")
    if title is not None and not isinstance(title, str):
        return "`title` is not a string"
    return None


def title_summary_text(record: dict) -> str:
    """The text a video is paired with at the video level: the title summary's attributes in a fixed order."""
    summary = record.get("title_summary") or {}
    parts = []
    for field in TITLE_SUMMARY_FIELDS:
        value = summary.get(field)
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value if v)
        if value:
            parts.append(f"{field.replace('_', ' ').capitalize()}: {value}.")
    return " ".join(parts) or record.get("title", "")


def record_text(subset: str, record: dict) -> str:
    """The text of a sample: the narration of a clip, the title summary of a video, the title of a silent video."""
    if subset == "clips":
        return record["narration"]
    if subset == "videos":
        return title_summary_text(record)
    return record.get("title") or ""
