"""The leaderboard: one JSON line per evaluation result, a markdown table across models, and the Hub's two metadata
formats (the `model-index` block of a model card and `.eval_results/*.yaml` files).

Every protocol appends an `EvalRecord` to a results file (JSON lines) with `append_record`; `read_records` reads them
back, and `render_leaderboard` turns a results file into the files below.

```python
>>> record = EvalRecord(model_id="org/ophclip-base", weights_hash="3f1c9a0b77d2e415", benchmark="cataract-101",
...                     protocol="zero-shot", metrics={"accuracy": 0.5312, "f1": 0.4171})
>>> append_record("results.jsonl", record)                                     # doctest: +SKIP
>>> print(leaderboard_table([record]))
| model | cataract-101 / zero-shot / accuracy | cataract-101 / zero-shot / f1 |
|---|---:|---:|
| org/ophclip-base `3f1c9a0b` | 53.1 | 41.7 |

```

Units. Records keep each metric in the unit its metric module returns: accuracy, F1, mAP and FPR (and their
`_smoothed` / `_macro` / `_seed_std` variants) are fractions in [0, 1]; retrieval recalls `R@K` are already percent;
`MedR` / `MnR` are ranks. Everything this module *publishes* (the table, `model-index`, `.eval_results`) is in percent
for rates and as-is for ranks: `metric_unit(name)` tells which is which.

Duplicates. A result is identified by `(model_id, weights_hash, benchmark, protocol)`; when a results file holds
several records for one key, the latest (by `date`, then by position in the file) wins.
"""

import hashlib
import json
import math
import os
import re
import textwrap
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path


HASH_LENGTH = 16
SHORT_HASH_LENGTH = 8

# Metrics shown (and published) by default, in this order, where a benchmark/protocol has them.
HEADLINE_METRICS = ("accuracy", "f1", "mAP", "FPR", "t2v_R@1", "t2v_R@5", "t2v_R@10", "v2t_R@1", "v2t_R@5",
                    "v2t_R@10")

FRACTION_METRICS = frozenset({"accuracy", "f1", "mAP", "AP", "FPR", "precision", "recall"})
RANK_METRICS = frozenset({"MedR", "MnR"})
_METRIC_PREFIXES = ("t2v_", "v2t_")
_METRIC_SUFFIXES = ("_smoothed", "_seed_std", "_macro")

# Hub task types of the model-index block. huggingface_hub 2.4 checks none of them offline (only
# `ModelCard.validate`, which asks the Hub); these are Hub pipeline tags.
TASK_TYPES = {"phase": "video-classification", "instruments": "video-classification",
              "retrieval": "feature-extraction"}
TASK_NAMES = {"phase": "Surgical phase recognition", "instruments": "Surgical instrument recognition",
              "retrieval": "Text-video retrieval"}

WEIGHT_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")

_REQUIRED = ("model_id", "weights_hash", "benchmark", "protocol", "metrics")


# -- records --------------------------------------------------------------------------------------------------------


def utc_now() -> str:
    """The current time as ISO-8601 UTC with seconds, e.g. `"2025-03-01T12:30:05+00:00"`."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class EvalRecord:
    """One evaluation result: a model checkpoint, a benchmark and a protocol, and the metrics it got.

    - `weights_hash`: `weights_hash(model)` of the evaluated checkpoint (two runs of one `model_id` with different
      weights are different leaderboard rows).
    - `protocol`: e.g. `"zero-shot"`, `"zero-shot-sigmoid"`, `"linear-probe-10%"`, `"retrieval"`.
    - `metrics`: name -> number in the unit of its metric module (see the module docstring); NaN is stored as null.
    - `prompts_hash`: hash of the prompt texts (zero-shot protocols), else None.
    - `date`: ISO-8601 UTC; `skipped`: `{video_id: reason}` of the videos left out; `extra`: anything else
      (fps, split, seed, per-video scores, ...).

    >>> r = EvalRecord("clip-b16", "0123456789abcdef", "cataract-1k", "zero-shot", {"accuracy": 0.5},
    ...                date="2025-01-01T00:00:00+00:00")
    >>> EvalRecord.from_dict(r.to_dict()) == r
    True
    >>> r.key
    ('clip-b16', '0123456789abcdef', 'cataract-1k', 'zero-shot')
    """

    model_id: str
    weights_hash: str
    benchmark: str
    protocol: str
    metrics: dict
    prompts_hash: str | None = None
    date: str = field(default_factory=utc_now)
    skipped: dict | list = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        """What identifies a result: `(model_id, weights_hash, benchmark, protocol)`."""
        return (self.model_id, self.weights_hash, self.benchmark, self.protocol)

    def to_dict(self) -> dict:
        """A JSON-ready dict: NaN/inf become None, numpy scalars and arrays plain numbers and lists."""
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping) -> "EvalRecord":
        """The record of a dict as `to_dict` makes it; unknown keys are ignored, missing required ones raise
        `ValueError`."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a record is a JSON object, got {type(data).__name__}")
        missing = [name for name in _REQUIRED if name not in data]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        if not isinstance(data["metrics"], Mapping):
            raise ValueError(f"`metrics` is a {type(data['metrics']).__name__}, not an object")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _jsonable(value):
    """`value` with NaN/inf as None, tuples/arrays as lists, numpy scalars and paths as plain values."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return _jsonable(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def append_record(results_file, record: EvalRecord) -> None:
    """Append `record` to `results_file` as one JSON line (the file and its folder are created when missing).

    The line is written with a single `os.write` on a descriptor opened with `O_APPEND`, then fsync'ed. For one writer
    that is safe enough: earlier lines are never rewritten, and a crash can at worst leave a truncated last line,
    which `read_records` skips and reports. Because such a line has no newline, one is written first when the file
    does not end with one, so the next record never fuses with the broken one. (Several processes appending at once
    usually work on a local disk too, as each line is one `write(2)` under `O_APPEND`, but POSIX does not promise it
    for regular files, nor does NFS: give concurrent runs their own results files.) NaN and inf are written as
    null, so every line is strict JSON.

    >>> append_record("results.jsonl", EvalRecord("m", "00ff", "b", "zero-shot", {"accuracy": float("nan")}))
    ... # doctest: +SKIP
    """
    line = json.dumps(record.to_dict(), ensure_ascii=False, allow_nan=False) + "\n"
    path = Path(results_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = line.encode("utf-8")
    if not _ends_with_newline(path):
        data = b"\n" + data
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:  # a regular file takes it all in one call; loop in case it does not
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    """True for a missing or empty file and for one whose last byte is a newline."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except FileNotFoundError:
        return True


class RecordList(list):
    """The records of a results file (a plain list), with `malformed`: `[(line_number, reason), ...]` of the lines
    that were skipped."""

    def __init__(self, records=(), malformed=()):
        super().__init__(records)
        self.malformed = list(malformed)


def read_records(results_file) -> RecordList:
    """The records of a results file in file order.

    Blank lines are ignored. A malformed line (not JSON, not an object, a required field missing) is skipped with a
    warning that names its line number; the list's `malformed` attribute has them all as `(line_number, reason)`.

    >>> records = read_records("results.jsonl")                                  # doctest: +SKIP
    >>> len(records), records.malformed                                          # doctest: +SKIP
    (12, [(7, 'not JSON: Unterminated string starting at: line 1 column 90 (char 89)')])
    """
    path = Path(results_file)
    records, malformed = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                malformed.append((number, f"not JSON: {error}"))
                continue
            try:
                records.append(EvalRecord.from_dict(data))
            except (TypeError, ValueError) as error:
                malformed.append((number, str(error)))
    for number, reason in malformed:
        warnings.warn(f"{path}:{number}: skipped a malformed result line ({reason})", stacklevel=2)
    if malformed:
        warnings.warn(f"{path}: skipped {len(malformed)} malformed line(s) of {len(records) + len(malformed)}",
                      stacklevel=2)
    return RecordList(records, malformed)


def latest_records(records: Iterable[EvalRecord]) -> list[EvalRecord]:
    """One record per `key` (model, weights, benchmark, protocol): the latest by `date`; on equal or unreadable dates
    the one later in `records`. The result keeps the order in which keys first appear.

    >>> old = EvalRecord("m", "h", "b", "zero-shot", {"accuracy": 0.1}, date="2025-01-01T00:00:00+00:00")
    >>> new = EvalRecord("m", "h", "b", "zero-shot", {"accuracy": 0.2}, date="2025-02-01T00:00:00+00:00")
    >>> [r.metrics["accuracy"] for r in latest_records([new, old])]
    [0.2]
    """
    chosen: dict[tuple, EvalRecord] = {}
    for record in records:
        kept = chosen.get(record.key)
        if kept is None or not _is_older(record, kept):
            chosen[record.key] = record
    return list(chosen.values())


def _is_older(record: EvalRecord, other: EvalRecord) -> bool:
    a, b = _parse_date(record.date), _parse_date(other.date)
    return a is not None and b is not None and a < b


def _parse_date(text) -> datetime | None:
    try:
        date = datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None
    return date if date.tzinfo else date.replace(tzinfo=timezone.utc)


# -- weights hash ---------------------------------------------------------------------------------------------------


def weights_hash(model_or_folder, length: int = HASH_LENGTH) -> str:
    """A short sha256 (`length` hex digits) of a model's weights.

    - A folder: the bytes of its weight files (`*.safetensors`, or else `*.bin` / `*.pt` / `*.pth`), in name order,
      each preceded by its name. A single weight file: the same as a folder holding only that file.
    - A module (anything with `state_dict()`) or a state dict: every tensor in name order, each preceded by its name,
      dtype and shape, so the hash depends on the values only, not on memory layout or device.

    The two kinds hash different byte streams: a folder and the module loaded from it get different hashes, so
    compare like with like (the protocols hash the loaded module).

    >>> import torch
    >>> torch.manual_seed(0) and None
    >>> layer = torch.nn.Linear(2, 2)
    >>> weights_hash(layer) == weights_hash(layer.state_dict())
    True
    >>> len(weights_hash(layer))
    16
    """
    digest = hashlib.sha256()
    if isinstance(model_or_folder, (str, os.PathLike)):
        _hash_files(digest, Path(model_or_folder))
    else:
        state = model_or_folder.state_dict() if hasattr(model_or_folder, "state_dict") else model_or_folder
        if not isinstance(state, Mapping):
            raise TypeError(f"weights_hash takes a folder, a weight file, a module or a state dict, "
                            f"not {type(model_or_folder).__name__}")
        _hash_state_dict(digest, state)
    return digest.hexdigest()[:length]


def weight_files(folder) -> list[Path]:
    """The weight files of a model folder: its `*.safetensors` files, or else its `*.bin` / `*.pt` / `*.pth` ones,
    sorted by name."""
    folder = Path(folder)
    for pattern in WEIGHT_FILE_PATTERNS:
        files = sorted(p for p in folder.glob(pattern) if p.is_file())
        if files:
            return files
    return []


def _hash_files(digest, path: Path) -> None:
    if path.is_file():
        files, root = [path], path.parent
    elif path.is_dir():
        files, root = weight_files(path), path
        if not files:
            raise FileNotFoundError(f"no weight file ({', '.join(WEIGHT_FILE_PATTERNS)}) in {str(path)!r}")
    else:
        raise FileNotFoundError(f"{str(path)!r} is neither a model folder nor a weight file (Hub ids are not "
                                f"fetched here: download the model first)")
    for file in files:
        digest.update(f"{file.relative_to(root).as_posix()}\n".encode())
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)


def _hash_state_dict(digest, state: Mapping) -> None:
    for name in sorted(state):
        tensor = state[name]
        if not hasattr(tensor, "detach"):  # e.g. `_extra_state` objects: their repr is all there is
            digest.update(f"{name}\n{tensor!r}\n".encode())
            continue
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}\n{tensor.dtype}\n{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(_uint8()).numpy().tobytes())


def _uint8():
    import torch

    return torch.uint8


# -- units and the markdown table -----------------------------------------------------------------------------------


def metric_unit(name: str) -> str:
    """How a metric is stored: `"fraction"` (in [0, 1]; published x100), `"percent"`, `"rank"` or `"other"`.

    >>> [metric_unit(m) for m in ("accuracy", "f1_smoothed", "FPR_macro", "t2v_R@5", "v2t_MedR", "num_videos")]
    ['fraction', 'fraction', 'fraction', 'percent', 'rank', 'other']
    """
    base = name
    for prefix in _METRIC_PREFIXES:
        base = base.removeprefix(prefix)
    changed = True
    while changed:
        changed = False
        for suffix in _METRIC_SUFFIXES:
            if base.endswith(suffix):
                base, changed = base.removesuffix(suffix), True
    if base in FRACTION_METRICS:
        return "fraction"
    if re.fullmatch(r"R@\d+", base):
        return "percent"
    if base in RANK_METRICS:
        return "rank"
    return "other"


def published_value(name: str, value):
    """A metric as it is published: percent for fractions, as stored otherwise; None (NaN) stays None.

    >>> published_value("accuracy", 0.5312), published_value("t2v_R@1", 23.4), published_value("f1", None)
    (53.12, 23.4, None)
    """
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return None
    return 100.0 * value if metric_unit(name) == "fraction" else float(value)


def format_value(name: str, value) -> str:
    """A table cell: one decimal for rates and ranks, `n/a` for an undefined (NaN/null) metric.

    >>> format_value("accuracy", 0.5312), format_value("t2v_R@10", 61.25), format_value("mAP", None)
    ('53.1', '61.2', 'n/a')
    """
    shown = published_value(name, value)
    if shown is None:
        return "n/a"
    if metric_unit(name) == "other":
        return f"{shown:g}"
    return f"{shown:.1f}"


def model_label(model_id: str, weights_hash: str) -> str:
    """The row label of a checkpoint: `model_id` and the first 8 digits of its hash.

    >>> model_label("org/ophclip-base", "3f1c9a0b77d2e415")
    'org/ophclip-base `3f1c9a0b`'
    """
    short = str(weights_hash or "")[:SHORT_HASH_LENGTH]
    return f"{model_id} `{short}`" if short else str(model_id)


def leaderboard_table(records: Iterable[EvalRecord], metrics: Iterable[str] | None = None) -> str:
    """A markdown table: one row per checkpoint (`model_id` + short weights hash, in order of first appearance), one
    column per benchmark / protocol / metric (sorted by benchmark and protocol; metrics in the order of `metrics`,
    default `HEADLINE_METRICS`, each only where some record of that benchmark and protocol has it).

    Cells are percent with one decimal (fractions x100, R@K as stored), ranks with one decimal, `n/a` for an
    undefined metric and `–` where a model was not evaluated. Duplicates: the latest record wins.

    >>> rows = [EvalRecord("clip", "aa11", "c101", "zero-shot", {"accuracy": 0.25}),
    ...         EvalRecord("ophclip", "bb22", "c101", "zero-shot", {"accuracy": 0.5})]
    >>> print(leaderboard_table(rows))
    | model | c101 / zero-shot / accuracy |
    |---|---:|
    | clip `aa11` | 25.0 |
    | ophclip `bb22` | 50.0 |
    """
    records = latest_records(records)
    if not records:
        return "_No results._"
    columns = table_columns(records, metrics)
    rows: dict[tuple, dict] = {}
    for record in records:
        cells = rows.setdefault((record.model_id, record.weights_hash), {})
        for metric in record.metrics:
            cells[(record.benchmark, record.protocol, metric)] = record.metrics[metric]
    header = ["model"] + [f"{b} / {p} / {m}" for b, p, m in columns]
    lines = [_row(header), "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|"]
    for (model_id, hash_), cells in rows.items():
        values = [format_value(c[2], cells[c]) if c in cells else "–" for c in columns]
        lines.append(_row([model_label(model_id, hash_)] + values))
    return "\n".join(lines)


def table_columns(records: Iterable[EvalRecord], metrics: Iterable[str] | None = None) -> list[tuple]:
    """The `(benchmark, protocol, metric)` columns of `leaderboard_table`."""
    wanted = list(metrics) if metrics is not None else list(HEADLINE_METRICS)
    present: dict[tuple, set] = {}
    for record in records:
        present.setdefault((record.benchmark, record.protocol), set()).update(record.metrics)
    return [(b, p, m) for (b, p) in sorted(present) for m in wanted if m in present[(b, p)]]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


# -- model-index (model card) ---------------------------------------------------------------------------------------


def task_kind(record: EvalRecord) -> str:
    """`"retrieval"`, `"instruments"` or `"phase"`: what a record measures (from its protocol and metrics).

    >>> task_kind(EvalRecord("m", "h", "cadis", "zero-shot", {"mAP": 0.3})), task_kind(
    ...     EvalRecord("m", "h", "ophvl:test", "retrieval", {"t2v_R@1": 20.0}))
    ('instruments', 'retrieval')
    """
    if "retrieval" in record.protocol or any(metric_unit(m) in ("percent", "rank") for m in record.metrics):
        return "retrieval"
    if "mAP" in record.metrics or "FPR" in record.metrics:
        return "instruments"
    return "phase"


def model_records(records: Iterable[EvalRecord], model_id: str, weights_hash: str | None = None) -> list[EvalRecord]:
    """The latest records of one model: of the checkpoint `weights_hash`, by default the one of that model's most
    recent record (results of earlier checkpoints are left out, with a warning)."""
    mine = [r for r in records if r.model_id == model_id]
    if not mine:
        raise ValueError(f"no result of model {model_id!r}")
    if weights_hash is None:
        newest = mine[0]
        for record in mine[1:]:
            if not _is_older(record, newest):
                newest = record
        weights_hash = newest.weights_hash
    others = sorted({r.weights_hash for r in mine} - {weights_hash})
    if others:
        warnings.warn(f"model {model_id!r}: publishing checkpoint {weights_hash}, leaving out results of "
                      f"{', '.join(others)}", stacklevel=3)
    chosen = [r for r in mine if r.weights_hash == weights_hash]
    if not chosen:
        raise ValueError(f"no result of model {model_id!r} with weights {weights_hash!r}")
    return latest_records(chosen)


def _published_metrics(record: EvalRecord, metrics: Iterable[str] | None):
    """`(name, value)` of the metrics of a record to publish: the wanted ones it has, with a defined value."""
    for name in (list(metrics) if metrics is not None else HEADLINE_METRICS):
        value = published_value(name, record.metrics.get(name))
        if value is not None:
            yield name, round(value, 2)


def _split(record: EvalRecord) -> str | None:
    extra = record.extra or {}
    return extra.get("split") or extra.get("test_split") or extra.get("subset")


def model_index(records: Iterable[EvalRecord], model_id: str, *, weights_hash: str | None = None,
                metrics: Iterable[str] | None = None, dataset_ids: Mapping[str, str] | None = None,
                source_url: str | None = None, source_name: str | None = None) -> list:
    """The `huggingface_hub.EvalResult`s of one model (see `model_records`), for `ModelCardData(eval_results=...)`.

    One result per benchmark, protocol and metric: `task_type` from `TASK_TYPES` (`video-classification` for phases
    and instruments, `feature-extraction` for retrieval), `dataset_type` the benchmark's Hub id from `dataset_ids`
    (default: the benchmark name), `metric_config` the protocol and `metric_name` e.g. `"zero-shot accuracy (%)"`.
    Values are published as percent (ranks as-is), rounded to 2 decimals. The card groups results of one task and
    dataset under one `model-index` entry.

    >>> r = EvalRecord("org/ophclip", "ab12", "cataract-101", "zero-shot", {"accuracy": 0.5312},
    ...                extra={"split": "test"})
    >>> (result,) = model_index([r], "org/ophclip")
    >>> result.task_type, result.dataset_type, result.metric_type, result.metric_value, result.metric_name
    ('video-classification', 'cataract-101', 'accuracy', 53.12, 'zero-shot accuracy (%)')
    """
    from huggingface_hub import EvalResult

    dataset_ids = dict(dataset_ids or {})
    results = []
    for record in model_records(records, model_id, weights_hash):
        kind = task_kind(record)
        for name, value in _published_metrics(record, metrics):
            unit = "" if metric_unit(name) == "rank" else " (%)"
            results.append(EvalResult(
                task_type=TASK_TYPES[kind],
                task_name=TASK_NAMES[kind],
                dataset_type=dataset_ids.get(record.benchmark, record.benchmark),
                dataset_name=record.benchmark,
                dataset_split=_split(record),
                metric_type=name,
                metric_value=value,
                metric_name=f"{record.protocol} {name}{unit}",
                metric_config=record.protocol,
                source_url=source_url,
                source_name=source_name,
            ))
    return results


def update_model_card(card_path, records: Iterable[EvalRecord], model_id: str, model_name: str | None = None,
                      **model_index_kwargs):
    """Write the `model-index` of `model_id` (see `model_index`) into the model card at `card_path` and return the
    `ModelCard`. An existing card keeps its text and other metadata (its `eval_results` are replaced); a missing one
    is created with the metadata and a short evaluation section. `model_name` (required by `model-index`) defaults
    to the card's own, else to the last part of `model_id`.

    >>> card = update_model_card("out/README.md", records, "org/ophclip-base")             # doctest: +SKIP
    >>> ModelCard.load("out/README.md").data.eval_results[0].metric_value                  # doctest: +SKIP
    53.12
    """
    from huggingface_hub import ModelCard, ModelCardData

    records = list(records)
    results = model_index(records, model_id, **model_index_kwargs)
    path = Path(card_path)
    if path.is_file():
        card = ModelCard.load(path)
    else:
        table = leaderboard_table(model_records(records, model_id, model_index_kwargs.get("weights_hash")))
        card = ModelCard(f"---\n{ModelCardData().to_yaml()}\n---\n\n# {model_id}\n\n## Evaluation\n\n{table}\n\n"
                         f"{UNITS_NOTE}\n")
    card.data.model_name = model_name or card.data.model_name or str(model_id).rstrip("/").split("/")[-1]
    card.data.eval_results = results
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return card


def model_index_yaml(records: Iterable[EvalRecord], model_id: str, model_name: str | None = None,
                     **model_index_kwargs) -> str:
    """The YAML front matter (`model_name` + `model-index`) that `update_model_card` writes, as text."""
    from huggingface_hub import ModelCardData

    name = model_name or str(model_id).rstrip("/").split("/")[-1]
    data = ModelCardData(model_name=name, eval_results=model_index(records, model_id, **model_index_kwargs))
    return data.to_yaml() + "\n"


# -- .eval_results/*.yaml -------------------------------------------------------------------------------------------


def task_id(protocol: str, metric: str) -> str:
    """The `.eval_results` task id of a protocol and metric.

    >>> task_id("zero-shot", "accuracy"), task_id("linear-probe-10%", "f1"), task_id("retrieval", "t2v_R@1")
    ('zero-shot_accuracy', 'linear-probe-10pct_f1', 'retrieval_t2v_R1')
    """
    text = f"{protocol}_{metric}".replace("%", "pct").replace("@", "")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def file_stem(benchmark: str) -> str:
    """A file name for a benchmark: `"ophvl-clip_narration:test"` -> `"ophvl-clip_narration_test"`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", benchmark).strip("._") or "benchmark"


def eval_result_entries(records: Iterable[EvalRecord], model_id: str, *, weights_hash: str | None = None,
                        metrics: Iterable[str] | None = None, dataset_ids: Mapping[str, str] | None = None,
                        source_url: str | None = None, source_name: str | None = None) -> list:
    """The `huggingface_hub.EvalResultEntry`s of one model (see `model_records`): one per benchmark, protocol and
    metric, `dataset_id` from `dataset_ids` (default: the benchmark name; the Hub links only real dataset ids),
    `task_id` from `task_id(protocol, metric)`, values as in `model_index`, the record's date, and notes naming the
    protocol, unit, weights and prompts hashes.

    >>> r = EvalRecord("m", "ab12", "cataract-101", "zero-shot", {"f1": 0.25}, date="2025-01-01T00:00:00+00:00")
    >>> (e,) = eval_result_entries([r], "m", dataset_ids={"cataract-101": "org/cataract-101"})
    >>> e.dataset_id, e.task_id, e.value
    ('org/cataract-101', 'zero-shot_f1', 25.0)
    """
    from huggingface_hub import EvalResultEntry

    dataset_ids = dict(dataset_ids or {})
    entries = []
    for record in model_records(records, model_id, weights_hash):
        for name, value in _published_metrics(record, metrics):
            unit = "rank" if metric_unit(name) == "rank" else "percent"
            notes = f"protocol {record.protocol}; {name} in {unit}; weights {record.weights_hash}"
            if record.prompts_hash:
                notes += f"; prompts {record.prompts_hash}"
            entries.append(EvalResultEntry(
                dataset_id=dataset_ids.get(record.benchmark, record.benchmark),
                task_id=task_id(record.protocol, name),
                value=value,
                date=record.date,
                source_url=source_url,
                source_name=source_name,
                notes=notes,
            ))
    return entries


def eval_results_yaml(records: Iterable[EvalRecord], model_id: str, **kwargs) -> dict[str, str]:
    """`{file name: YAML text}` of the `.eval_results` files of one model: one `<benchmark>.yaml` per benchmark."""
    import yaml
    from huggingface_hub import eval_result_entries_to_yaml

    by_file: dict[str, list] = {}
    dataset_ids = dict(kwargs.get("dataset_ids") or {})
    for record in model_records(records, model_id, kwargs.get("weights_hash")):
        entries = eval_result_entries([record], model_id, **{**kwargs, "weights_hash": record.weights_hash})
        if entries:
            name = file_stem(dataset_ids.get(record.benchmark, record.benchmark).split("/")[-1]) + ".yaml"
            by_file.setdefault(name, []).extend(entries)
    return {name: yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False, allow_unicode=True)
            for name, entries in by_file.items()}


def write_eval_results(folder, records: Iterable[EvalRecord], model_id: str, **kwargs) -> list[Path]:
    """Write `folder/.eval_results/<benchmark>.yaml` for each benchmark of `model_id` (see `eval_result_entries` for
    the keyword arguments) and return the paths. Upload the folder with the model to show them on the Hub.

    >>> write_eval_results("out", records, "org/ophclip-base")                              # doctest: +SKIP
    [PosixPath('out/.eval_results/cataract-101.yaml'), ...]
    """
    target = Path(folder) / ".eval_results"
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in eval_results_yaml(list(records), model_id, **kwargs).items():
        path = target / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


# -- everything at once ---------------------------------------------------------------------------------------------


UNITS_NOTE = textwrap.dedent("""\
    Values in percent (accuracy, F1, mAP and FPR are stored as fractions, R@K as percent); MedR/MnR are ranks.
    Rows are checkpoints (model id and the first digits of its weights hash). `n/a`: undefined metric;
    `–`: not evaluated.""")


def render_leaderboard(results_file, out_dir=None, model_id: str | None = None, model_name: str | None = None,
                       dataset_ids: Mapping[str, str] | None = None) -> dict:
    """Render a results file: the markdown table across all models and, for `model_id`, its card metadata.

    Returns a dict with `table` (markdown), `num_records` (after de-duplication), `malformed_lines` and, with
    `model_id`, `model_index` (YAML text) and `eval_results` (`{file name: YAML text}`). With `out_dir` the files are
    written too and their paths returned: `leaderboard_md` (`leaderboard.md`) and, with `model_id`,
    `model_index_yaml` (`model_index.yaml`), `readme` (`README.md`: the card, created or updated in place) and
    `eval_results_files` (`.eval_results/*.yaml`).

    >>> out = render_leaderboard("results.jsonl", "leaderboard", model_id="org/ophclip-base")  # doctest: +SKIP
    >>> print(out["table"])                                                                  # doctest: +SKIP
    """
    records = read_records(results_file)
    latest = latest_records(records)
    table = leaderboard_table(latest)
    rendered = {"results_file": str(results_file), "num_records": len(latest),
                "malformed_lines": [number for number, _ in records.malformed], "table": table}
    kwargs = {"dataset_ids": dataset_ids}
    if model_id is not None:
        rendered["model_index"] = model_index_yaml(latest, model_id, model_name, **kwargs)
        rendered["eval_results"] = eval_results_yaml(latest, model_id, **kwargs)
    if out_dir is None:
        return rendered
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown = f"# Leaderboard\n\nFrom `{Path(results_file).name}`.\n\n{table}\n\n{UNITS_NOTE}\n"
    (out / "leaderboard.md").write_text(markdown, encoding="utf-8")
    rendered["leaderboard_md"] = str(out / "leaderboard.md")
    if model_id is not None:
        (out / "model_index.yaml").write_text(rendered["model_index"], encoding="utf-8")
        rendered["model_index_yaml"] = str(out / "model_index.yaml")
        update_model_card(out / "README.md", latest, model_id, model_name, **kwargs)
        rendered["readme"] = str(out / "README.md")
        rendered["eval_results_files"] = [str(p) for p in write_eval_results(out, latest, model_id, **kwargs)]
    return rendered


__all__ = [
    "EvalRecord",
    "HEADLINE_METRICS",
    "RecordList",
    "TASK_TYPES",
    "append_record",
    "eval_result_entries",
    "eval_results_yaml",
    "format_value",
    "latest_records",
    "leaderboard_table",
    "metric_unit",
    "model_index",
    "model_index_yaml",
    "model_records",
    "published_value",
    "read_records",
    "render_leaderboard",
    "task_id",
    "update_model_card",
    "weights_hash",
    "write_eval_results",
]
