"""The hidden ground truth: what each narrated and silent video really shows, for measuring what a model learned from
them. Training never reads it; the silent videos' shard records carry only `video_id`, `duration` and a noisy title.

`OUT/hidden/ground_truth.jsonl` holds one JSON object per line, one line per narrated (titled) video and per silent
video, in generation order:

- `video_id`: as in the shards;
- `subset`: `"videos"` (the narrated procedures that the clips are cut from) or `"silent"`;
- `clinic`: `"A"` or `"B"` (see `CLINICS`);
- `cataract`: the `CATARACTS` key (`nuclear`, `brunescent`, `cortical`, `psc`, `mature`);
- `phases`: the phase names in order of occurrence, repeats kept (a second viscous agent injection appears twice);
- `instruments`: the instrument names (CATARACTS tool names) in order of first appearance.
"""

import json
from pathlib import Path

from ..shards import atomic_write_bytes
from .scene import Procedure, instrument_sequence, phase_sequence


GROUND_TRUTH = "hidden/ground_truth.jsonl"  # relative to the OphVL-mini folder
GROUND_TRUTH_FIELDS = ("video_id", "subset", "clinic", "cataract", "phases", "instruments")
_SUBSETS = ("videos", "silent")


def ground_truth_record(proc: Procedure, subset: str) -> dict:
    """The ground-truth line of one planned procedure of `subset` (`"videos"` or `"silent"`)."""
    if subset not in _SUBSETS:
        raise ValueError(f"ground truth is kept for {_SUBSETS}, not {subset!r}")
    return {"video_id": proc.video_id, "subset": subset, "clinic": proc.clinic, "cataract": proc.cataract,
            "phases": phase_sequence(proc), "instruments": instrument_sequence(proc)}


def write_ground_truth(path, records) -> Path:
    """Write `records` (dicts from `ground_truth_record`) to `path` as JSON lines, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(record) + "\n" for record in records)
    atomic_write_bytes(path, text.encode())
    return path


def read_ground_truth(path) -> dict[str, dict]:
    """`{video_id: record}` from a ground-truth file, or from an OphVL-mini folder (its `hidden/ground_truth.jsonl`).

    Raises `ValueError` naming the file and line for a malformed line, a missing field or a repeated `video_id`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / GROUND_TRUTH
    out = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from None
        missing = [f for f in GROUND_TRUTH_FIELDS if not isinstance(record, dict) or f not in record]
        if missing:
            raise ValueError(f"{path}:{number}: missing {', '.join(missing)}")
        if record["video_id"] in out:
            raise ValueError(f"{path}:{number}: video_id {record['video_id']!r} repeated")
        out[record["video_id"]] = record
    return out
