"""The leaderboard: one JSON line per evaluation result (the record store), the weights hash that names a checkpoint,
and markdown tables across models.

Every protocol appends an `EvalRecord` to a results file (JSON lines) with `append_record`; `read_records` reads them
back, `leaderboard_table` renders them (one table per task and protocol, one row per checkpoint), and
`render_leaderboard` writes `leaderboard.md` and, for one model, its Hub metadata through `model_cards.eval_results`
(the `model-index` block of a model card and `.eval_results/*.yaml`), fed by `published_metrics`.

```python
>>> record = EvalRecord(model_id="org/ophclip-base", weights_hash="3f1c9a0b77d2e415", benchmark="cataract-101",
...                     protocol="zero-shot", metrics={"accuracy": 0.5312, "f1": 0.4171})
>>> append_record("results.jsonl", record)                                     # doctest: +SKIP
>>> print(leaderboard_table([record]))
### Phase recognition: zero-shot
<BLANKLINE>
| model | cataract-101 / accuracy | cataract-101 / f1 |
|---|---:|---:|
| org/ophclip-base `3f1c9a0b` | 53.1 | 41.7 |

```

Units. One convention everywhere results are stored (records, the commands' JSON, `results.jsonl`): every rate
(accuracy, F1, mAP, FPR, retrieval recall `R@K`, and their `_smoothed` / `_macro` / `_seed_std` variants) is a
fraction in [0, 1]; `MedR` / `MnR` are ranks; counts are counts. Percent appears only where results are rendered for
people or published: the tables, `model-index` and `.eval_results` (`metric_unit(name)` tells which is which). Records
written before this convention (no `units` field) stored `R@K` in percent; `EvalRecord.from_dict` converts them.

Duplicates. A result is identified by `(model_id, weights_hash, benchmark, protocol)`; when a results file holds
several records for one key, the latest (by `date`, then by position in the file) wins.
"""

import hashlib
import json
import math
import os
import re
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

# Task families in the order the leaderboard shows them, with their section titles.
TASK_TITLES = {"phase": "Phase recognition", "instruments": "Instrument recognition", "retrieval": "Retrieval"}
# The unit convention a record was written with; records without the field are from before R@K became a fraction.
RECORD_UNITS = "fraction"

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
    - `metrics`: name -> number; rates are fractions in [0, 1] (see the module docstring); NaN is stored as null.
    - `prompts_hash`: hash of the prompt texts (zero-shot protocols), else None.
    - `date`: ISO-8601 UTC; `skipped`: `{video_id: reason}` of the videos left out; `extra`: anything else
      (fps, split, seed, per-video scores, ...); `units`: the unit convention (`RECORD_UNITS`).

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
    units: str = RECORD_UNITS

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
        record = cls(**{k: v for k, v in data.items() if k in known})
        if "units" not in data:  # written when R@K was stored in percent
            record.metrics = {name: value / 100.0 if _is_recall(name) and isinstance(value, (int, float))
                              and not isinstance(value, bool) else value for name, value in record.metrics.items()}
        return record


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

# -- units and the markdown tables ----------------------------------------------------------------------------------


def _base_metric(name: str) -> str:
    """A metric's name without its direction prefix and variant suffixes: `"t2v_R@5"` -> `"R@5"`."""
    base = name
    for prefix in _METRIC_PREFIXES:
        base = base.removeprefix(prefix)
    changed = True
    while changed:
        changed = False
        for suffix in _METRIC_SUFFIXES:
            if base.endswith(suffix):
                base, changed = base.removesuffix(suffix), True
    return base


def _is_recall(name: str) -> bool:
    return re.fullmatch(r"R@\d+", _base_metric(name)) is not None


def metric_unit(name: str) -> str:
    """How a metric is stored: `"fraction"` (in [0, 1]; shown and published x100), `"rank"` or `"other"` (counts).

    >>> [metric_unit(m) for m in ("accuracy", "f1_smoothed", "FPR_macro", "t2v_R@5", "v2t_MedR", "num_videos")]
    ['fraction', 'fraction', 'fraction', 'fraction', 'rank', 'other']
    """
    base = _base_metric(name)
    if base in FRACTION_METRICS or _is_recall(name):
        return "fraction"
    if base in RANK_METRICS:
        return "rank"
    return "other"


def published_value(name: str, value):
    """A metric as it is shown and published: percent for fractions, as stored otherwise; None (NaN) stays None.

    >>> published_value("accuracy", 0.5312), published_value("t2v_R@1", 0.25), published_value("f1", None)
    (53.12, 25.0, None)
    """
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return None
    return 100.0 * value if metric_unit(name) == "fraction" else float(value)


def format_value(name: str, value) -> str:
    """A table cell: one decimal for rates (in percent) and ranks, `n/a` for an undefined (NaN/null) metric.

    >>> format_value("accuracy", 0.5312), format_value("t2v_R@10", 0.6124), format_value("mAP", None)
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


def task_kind(record: EvalRecord) -> str:
    """`"retrieval"`, `"instruments"` or `"phase"`: what a record measures (from its protocol and metrics).

    >>> task_kind(EvalRecord("m", "h", "cadis", "zero-shot", {"mAP": 0.3})), task_kind(
    ...     EvalRecord("m", "h", "ophvl:test", "retrieval", {"t2v_R@1": 0.2}))
    ('instruments', 'retrieval')
    """
    if "retrieval" in record.protocol or any(_is_recall(m) or metric_unit(m) == "rank" for m in record.metrics):
        return "retrieval"
    if "mAP" in record.metrics or "FPR" in record.metrics:
        return "instruments"
    return "phase"


def leaderboard_table(records: Iterable[EvalRecord], metrics: Iterable[str] | None = None) -> str:
    """Markdown tables, one per task family and protocol (`### Phase recognition: zero-shot`, ...), so that no table
    grows with every benchmark of every protocol. In each, one row per checkpoint that has a result there (`model_id`
    + short weights hash, in order of first appearance) and one column per benchmark and metric (benchmarks sorted;
    metrics in the order of `metrics`, default `HEADLINE_METRICS`, each only where some record of that benchmark and
    protocol has it).

    Cells are percent with one decimal (rates are stored as fractions), ranks with one decimal, `n/a` for an
    undefined metric and `–` where a model was not evaluated. Duplicates: the latest record wins.

    >>> rows = [EvalRecord("clip", "aa11", "c101", "zero-shot", {"accuracy": 0.25}),
    ...         EvalRecord("ophclip", "bb22", "c101", "zero-shot", {"accuracy": 0.5})]
    >>> print(leaderboard_table(rows))
    ### Phase recognition: zero-shot
    <BLANKLINE>
    | model | c101 / accuracy |
    |---|---:|
    | clip `aa11` | 25.0 |
    | ophclip `bb22` | 50.0 |
    """
    records = latest_records(records)
    if not records:
        return "_No results._"
    sections: dict[tuple, list] = {}
    for record in records:
        sections.setdefault((task_kind(record), record.protocol), []).append(record)
    order = list(TASK_TITLES)
    tables = []
    for kind, protocol in sorted(sections, key=lambda key: (order.index(key[0]), key[1])):
        table = _section_table(sections[(kind, protocol)], metrics)
        if table:
            title = TASK_TITLES[kind] if protocol == kind else f"{TASK_TITLES[kind]}: {protocol}"
            tables.append(f"### {title}\n\n{table}")
    return "\n\n".join(tables) or "_No results._"


def _section_table(records: list[EvalRecord], metrics: Iterable[str] | None) -> str:
    """The table of one task and protocol: checkpoints as rows, `benchmark / metric` as columns."""
    columns = table_columns(records, metrics)
    if not columns:
        return ""
    rows: dict[tuple, dict] = {}
    for record in records:
        cells = rows.setdefault((record.model_id, record.weights_hash), {})
        for metric in record.metrics:
            cells[(record.benchmark, record.protocol, metric)] = record.metrics[metric]
    header = ["model"] + [f"{b} / {m}" for b, _, m in columns]
    lines = [_row(header), "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|"]
    for (model_id, hash_), cells in rows.items():
        values = [format_value(c[2], cells[c]) if c in cells else "–" for c in columns]
        lines.append(_row([model_label(model_id, hash_)] + values))
    return "\n".join(lines)


def table_columns(records: Iterable[EvalRecord], metrics: Iterable[str] | None = None) -> list[tuple]:
    """The `(benchmark, protocol, metric)` columns of the records' table(s)."""
    wanted = list(metrics) if metrics is not None else list(HEADLINE_METRICS)
    present: dict[tuple, set] = {}
    for record in records:
        present.setdefault((record.benchmark, record.protocol), set()).update(record.metrics)
    return [(b, p, m) for (b, p) in sorted(present) for m in wanted if m in present[(b, p)]]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


# -- what one model publishes ---------------------------------------------------------------------------------------


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


def _split(record: EvalRecord) -> str | None:
    extra = record.extra or {}
    return extra.get("split") or extra.get("test_split") or extra.get("subset")


def published_metrics(records: Iterable[EvalRecord], model_id: str, *, weights_hash: str | None = None,
                      metrics: Iterable[str] | None = None) -> list:
    """What one model publishes, as `model_cards.eval_results.PublishedMetric` rows for the Hub metadata writers
    there (`model_index`, `write_eval_results`, `update_model_card`): the latest records of its checkpoint (see
    `model_records`), each wanted metric (default `HEADLINE_METRICS`) with a defined value, in percent (ranks
    as-is), rounded to 2 decimals.

    >>> from model_cards.eval_results import model_index
    >>> r = EvalRecord("org/ophclip", "ab12", "cataract-101", "zero-shot", {"accuracy": 0.5312},
    ...                extra={"split": "test"})
    >>> (row,) = published_metrics([r], "org/ophclip")
    >>> row.task, row.metric, row.value, row.unit, row.split
    ('phase', 'accuracy', 53.12, 'percent', 'test')
    >>> model_index([row])[0].metric_name
    'zero-shot accuracy (%)'
    """
    from model_cards.eval_results import PublishedMetric

    wanted = list(metrics) if metrics is not None else list(HEADLINE_METRICS)
    rows = []
    for record in model_records(records, model_id, weights_hash):
        for name in wanted:
            value = published_value(name, record.metrics.get(name))
            if value is None:
                continue
            rows.append(PublishedMetric(
                benchmark=record.benchmark, protocol=record.protocol, task=task_kind(record), metric=name,
                value=round(value, 2), unit="rank" if metric_unit(name) == "rank" else "percent",
                split=_split(record), date=record.date, weights_hash=record.weights_hash,
                prompts_hash=record.prompts_hash,
            ))
    return rows


# -- everything at once ---------------------------------------------------------------------------------------------


UNITS_NOTE = ("Values in percent (every rate is stored as a fraction in [0, 1]); MedR/MnR are ranks. Rows are "
              "checkpoints (model id and the first digits of its weights hash). `n/a`: undefined metric; `–`: not "
              "evaluated.")


def render_leaderboard(results_file, out_dir=None, model_id: str | None = None, model_name: str | None = None,
                       dataset_ids: Mapping[str, str] | None = None) -> dict:
    """Render a results file: the markdown tables across all models and, for `model_id`, its card metadata (written
    by `model_cards.eval_results` from `published_metrics`).

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
    if model_id is not None:
        from model_cards import eval_results as hub

        rows = published_metrics(latest, model_id)
        name = model_name or str(model_id).rstrip("/").split("/")[-1]
        rendered["model_index"] = hub.model_index_yaml(rows, name, dataset_ids=dataset_ids)
        rendered["eval_results"] = hub.eval_results_yaml(rows, dataset_ids=dataset_ids)
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
        own_table = leaderboard_table(model_records(latest, model_id))
        hub.update_model_card(out / "README.md", rows, model_name, title=str(model_id),
                              evaluation_markdown=f"{own_table}\n\n{UNITS_NOTE}", dataset_ids=dataset_ids)
        rendered["readme"] = str(out / "README.md")
        rendered["eval_results_files"] = [str(p) for p in hub.write_eval_results(out, rows, dataset_ids=dataset_ids)]
    return rendered


__all__ = [
    "EvalRecord",
    "HEADLINE_METRICS",
    "RECORD_UNITS",
    "RecordList",
    "append_record",
    "format_value",
    "latest_records",
    "leaderboard_table",
    "metric_unit",
    "model_label",
    "model_records",
    "published_metrics",
    "published_value",
    "read_records",
    "render_leaderboard",
    "task_kind",
    "weights_hash",
]
