"""The one OphVL shard reader: datasets' WebDataset machinery with our checks and skip counting added.

Every part of the project that reads OphVL tar shards reads them here: the `OphVL` streaming builder (and so
`load_ophvl`), the trainer's silent-video scan and memory bank, the retrieval protocol of `evaluate_suite`, and the
shard writer when it re-packs its own parts. What it adds to datasets' reader is what a long run over many samples
needs: a broken sample is skipped, counted by reason and named (key and shard), and the iteration goes on.

Built on two pieces of `datasets`:

- archive iteration: `datasets.utils.file_utils.ArchiveIterable` (what `dl_manager.iter_archive` returns) opens a
  local path or an `hf://` URL through `xopen` and reads the tar as a forward-only stream, so nothing is unpacked
  and remote shards are read sequentially. It drops members that are not regular files (directories, links, devices)
  and hidden files (`.x`, `__x`, e.g. macOS `._key.mp4` resource forks): they are never part of a sample, so a
  sample whose `.mp4` was a symlink arrives without it and is counted as `missing_mp4`.
- key grouping: the packaged `webdataset` builder's `_get_pipeline_from_tar`, which groups consecutive members by
  the WebDataset key (`<key>.<ext>`), with its field decoders switched off (our json is parsed and validated in
  `example_from_sample`, where a malformed one is one counted skip instead of an exception that ends the epoch).

Between the two sits `_checked_members`, which drops and counts what datasets' grouping would fail on or should not
hold in memory: unsafe or misnamed member names, a second member of the same field (datasets raises), an oversized
json, and a shard that ends early or is not a tar (datasets raises; here the samples read before are kept).

Plain `datasets.load_dataset(path, "clips", streaming=True)` uses the same two pieces without these checks (datasets 5
runs no dataset code and picks its generic `webdataset` builder from the `.tar` extension; a dataset's card cannot
name another builder), so there a truncated shard or a malformed json ends the iteration with an error.
"""

import functools
import json
import logging
import os
import re
import sys
import tarfile
import threading
from collections import Counter

from .format import record_text, validate_record


logger = logging.getLogger(__name__)

# A sample's json is a few hundred bytes; a member claiming megabytes is not one of ours and is not read into memory.
MAX_JSON_BYTES = 1 << 20
# The members a sample is made of; other extensions are ignored so that future fields do not break old readers.
SAMPLE_PARTS = ("mp4", "json")

# Why samples (or tar members) are skipped. Member-level reasons count members, the others count samples.
SKIP_REASONS = {
    "unsafe_member_path": "a tar member with an absolute path or a `..` component (never extracted)",
    "bad_member_name": "a tar member whose name is not `<key>.<ext>` (sub-folder, no extension)",
    "duplicate_member": "a sample with two members of the same extension",
    "duplicate_key": "a sample key that already appeared earlier in the same shard",
    "oversized_json": f"a json member larger than {MAX_JSON_BYTES} bytes",
    "missing_json": "a sample without its `.json` member",
    "missing_mp4": "a sample without its `.mp4` member (a link or a directory in its place counts here)",
    "empty_video": "a sample whose `.mp4` member is empty",
    "malformed_json": "a `.json` member that is not UTF-8 JSON",
    "invalid_record": "a json that breaks the subset's rules (`format.validate_record`)",
    "unreadable_shard": "a shard that is not a tar archive or ends early (the samples read before are kept)",
    # Set by the decoding stage of `load_ophvl`:
    "no_video_stream": "an mp4 without a decodable video stream (audio only, zero frames)",
    "undecodable_video": "an mp4 that cannot be opened (corrupt or truncated)",
    "zero_frames": "an mp4 whose video stream has no frames",
    "corrupt_video": "an mp4 whose sampled frames cannot be decoded",
    "oversized_frame": "an mp4 whose frames are larger than the decoding cap (`max_pixels`, checked before decoding)",
}


def process_name() -> str:
    """`rank R worker W` for log lines, so that summaries from parallel readers can be told apart."""
    parts = []
    if os.environ.get("WORLD_SIZE", "1") != "1":
        parts.append(f"rank {os.environ.get('RANK', '?')}")
    if "torch" in sys.modules:
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        if info is not None:
            parts.append(f"worker {info.id}")
    return " ".join(parts) or "main process"


class SkipCounter:
    """Counts of skipped OphVL samples by reason, in this process.

    Readers call `add` for every sample they drop. The first `max_warnings_per_reason` skips of each reason are
    logged as warnings with the sample key and shard, later ones at debug level (the per-shard summaries still count
    them), so a dataset with many bad samples cannot flood the logs.

    DataLoader workers and other ranks have their own counters; their counts reach the logs through the summary the
    builder writes at the end of each shard. In a single process, read them here:

    ```python
    >>> from datasets_ophvl import skip_counts
    >>> skip_counts.reset()
    >>> for example in dataset: ...
    >>> skip_counts.as_dict()
    {'malformed_json': 1, 'undecodable_video': 2}
    ```
    """

    def __init__(self, max_warnings_per_reason: int = 10):
        self.max_warnings_per_reason = max_warnings_per_reason
        self._counts = Counter()
        self._lock = threading.Lock()  # datasets may decode in threads

    def add(self, reason: str, detail: str = "", key: str | None = None, source: str | None = None) -> None:
        """Count one skipped sample (or member) and log why."""
        with self._lock:
            self._counts[reason] += 1
            count = self._counts[reason]
        message = skip_message(reason, detail, key, source)
        if count < self.max_warnings_per_reason:
            logger.warning(message)
        elif count == self.max_warnings_per_reason:
            logger.warning(message + f" [further `{reason}` skips in this process are logged at debug level]")
        else:
            logger.debug(message)

    def as_dict(self) -> dict[str, int]:
        """The counts so far, by reason."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def __getitem__(self, reason: str) -> int:
        with self._lock:
            return self._counts[reason]

    def __repr__(self) -> str:
        return f"SkipCounter({self.as_dict()})"


class SkipRecorder(SkipCounter):
    """A quiet counter that also keeps each skip by name, for reports that list what was skipped: `skipped` maps the
    sample key (or, for a shard-level problem, the shard) to `"reason: detail"`."""

    def __init__(self):
        super().__init__(max_warnings_per_reason=0)
        self.skipped: dict[str, str] = {}

    def add(self, reason: str, detail: str = "", key: str | None = None, source: str | None = None) -> None:
        super().add(reason, detail, key, source)
        self.skipped[key or source or reason] = f"{reason}: {detail}" if detail else reason


class BrokenShardError(ValueError):
    """A shard that must be read whole (our own parts, re-packed by the writer) has a broken sample."""


class RefuseBrokenSamples(SkipCounter):
    """A counter that refuses instead of skipping: for shards that must be read whole, where a skipped sample would be
    data lost without a trace (the shard writer re-packing the parts it wrote itself)."""

    def add(self, reason: str, detail: str = "", key: str | None = None, source: str | None = None) -> None:
        raise BrokenShardError(skip_message(reason, detail, key, source).replace("skipped", "cannot read", 1))


def skip_message(reason: str, detail: str = "", key: str | None = None, source: str | None = None) -> str:
    where = " ".join(part for part in (f"sample {key!r}" if key else "", f"in {source}" if source else "") if part)
    return f"OphVL: skipped {where or 'a sample'} ({reason})" + (f": {detail}" if detail else "")


# The counter of this process, shared by the builder and the decoding stage.
skip_counts = SkipCounter()


# -- reading tar shards -------------------------------------------------------------------------------------------

_DRIVE = re.compile(r"^[A-Za-z]:")


def _name_problem(name: str) -> tuple[str, str] | None:
    """Why a member name cannot be part of a sample, as `(reason, detail)`, or None for a usable `<key>.<ext>`."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts:
        return "unsafe_member_path", f"member {name!r}"
    key, dot, ext = _strip_dot_slash(name).partition(".")
    if "/" in key or "\\" in key or "/" in ext or not key or not dot or not ext:
        return "bad_member_name", f"member {name!r} is not named <key>.<ext>"
    return None


def _strip_dot_slash(name: str) -> str:
    # `tar -cf shard.tar ./*` stores `./key.mp4`; that prefix is harmless.
    while name.startswith("./"):
        name = name[2:]
    return name


def _checked_members(archive, problems: dict, counter: SkipCounter, source: str):
    """The members of `archive` (datasets' `(name, file)` pairs) that datasets' key grouping may see, as
    `("<key>.<ext>", file)`. A sample found broken here is noted in `problems[key]` (it still reaches the grouping,
    so that it is counted once, by key, with its other members); member-level problems are counted here."""
    key, fields = None, set()
    try:
        for name, f in archive:
            problem = _name_problem(name)
            if problem:
                counter.add(*problem, source=source)
                continue
            member_key, _, ext = _strip_dot_slash(name).partition(".")
            ext = ext.lower()
            if member_key != key:
                key, fields = member_key, set()
            if ext not in SAMPLE_PARTS:
                continue
            if ext in fields:  # datasets' grouping raises on a second field of the same name
                problems.setdefault(key, ("duplicate_member", f"two `.{ext}` members"))
                continue
            fields.add(ext)
            # Read here, inside the `try`: a shard cut inside a member fails on this read.
            data = f.read(MAX_JSON_BYTES + 1) if ext == "json" else f.read()
            if ext == "json" and len(data) > MAX_JSON_BYTES:
                problems.setdefault(key, ("oversized_json", f"json member of more than {MAX_JSON_BYTES} bytes"))
                continue
            yield f"{key}.{ext}", _Read(data)
    except (tarfile.TarError, EOFError) as error:
        # A truncated or non-tar shard costs the rest of that shard, never the epoch: ending here lets the grouping
        # hand over the samples read so far (the one cut short arrives incomplete and is counted). I/O errors (a
        # vanished file, a network failure after datasets' retries) are not swallowed: they are not a property of
        # one sample.
        counter.add("unreadable_shard", f"{type(error).__name__}: {error}", source=source)


class _Read:
    """Bytes already read, handed over as the file object datasets' grouping reads (without a copy)."""

    def __init__(self, data: bytes):
        self.data = data

    def read(self) -> bytes:
        return self.data


@functools.cache
def _webdataset_grouping():
    from datasets.packaged_modules.webdataset.webdataset import WebDataset

    class RawFields(WebDataset):
        DECODERS = {}  # bytes as stored: the json is parsed where a bad one is a counted skip

    return RawFields._get_pipeline_from_tar


def iter_shard_samples(url: str, download_config=None, counter: SkipCounter = skip_counts, source: str | None = None):
    """Yield `(key, parts, problem)` for the samples of one tar shard, streaming it (local path or `hf://` URL).

    `parts` maps the sample's members (`mp4`, `json`) to bytes; `problem` is `(reason, detail)` when the sample was
    found broken while reading it (duplicate key or member, oversized json), else None: pass it to
    `example_from_sample`, which also checks the record. Unsafe and misnamed members and unreadable shards are counted
    in `counter` here; nothing is ever written to disk.
    """
    from datasets.utils.file_utils import ArchiveIterable

    source = source or url
    problems, seen = {}, set()
    archive = ArchiveIterable.from_urlpath(url, download_config=download_config)
    for sample in _webdataset_grouping()(url, _checked_members(archive, problems, counter, source)):
        key = sample["__key__"]
        problem = problems.pop(key, None)
        if key in seen:
            problem = ("duplicate_key", f"key {key!r} appeared earlier in this shard")
        seen.add(key)
        yield key, {ext: sample[ext] for ext in SAMPLE_PARTS if ext in sample}, problem
    for key, problem in problems.items():  # samples none of whose members could be kept (a lone oversized json)
        yield key, {}, problem


def example_from_sample(subset: str, key: str, parts: dict, problem=None) -> tuple[dict | None, tuple[str, str] | None]:
    """Turn the parts of one sample into an example, or say why it must be skipped as `(reason, detail)`."""
    if problem:
        return None, problem
    if "json" not in parts:
        return None, ("missing_json", "no .json member")
    if "mp4" not in parts:
        return None, ("missing_mp4", "no .mp4 member")
    if not parts["mp4"]:
        return None, ("empty_video", "the .mp4 member is empty")
    try:
        record = json.loads(parts["json"].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # RecursionError: absurdly nested json
        return None, ("malformed_json", f"{type(error).__name__}: {error}")
    invalid = validate_record(subset, record)
    if invalid:
        return None, ("invalid_record", invalid)
    if subset == "clips":
        start, end = float(record["start"]), float(record["end"])
    else:  # a whole video spans its duration
        start, end = 0.0, float(record["duration"])
    example = {
        "key": key,
        "video": parts["mp4"],
        "text": record_text(subset, record),
        "video_id": record["video_id"],
        "start": start,
        "end": end,
        "duration": end - start,
        "title": record.get("title"),
        "metadata": json.dumps(record, ensure_ascii=False, sort_keys=True),
    }
    return example, None


def iter_shard_examples(subset: str, url: str, download_config=None, counter: SkipCounter = skip_counts,
                        source: str | None = None):
    """Yield the valid examples of one shard of `subset` (see `example_from_sample`); the others are counted in
    `counter` and named in the log."""
    source = source or url
    for key, parts, problem in iter_shard_samples(url, download_config, counter, source):
        example, why = example_from_sample(subset, key, parts, problem)
        if why:
            counter.add(*why, key=key, source=source)
            continue
        yield example


def member_offsets(url: str, download_config=None) -> dict[tuple[str, str], tuple[int, int]]:
    """Where the members of one shard lie, `{(key, ext): (offset of its bytes, size)}`, from the tar headers only (a
    local shard is seeked through, not read), for random access to samples the reader has validated and for counting
    samples without reading them. A shard that cannot be read gives what was found before the problem; which samples
    are usable is `iter_shard_samples`'s to say."""
    from datasets.utils.file_utils import xopen

    found = {}
    try:
        with xopen(url, "rb", download_config=download_config) as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for member in tar:
                if member.isreg() and _name_problem(member.name) is None:
                    key, _, ext = _strip_dot_slash(member.name).partition(".")
                    found.setdefault((key, ext.lower()), (member.offset_data, member.size))
    except (tarfile.TarError, EOFError):
        pass
    return found


__all__ = ["SKIP_REASONS", "SkipCounter", "SkipRecorder", "RefuseBrokenSamples", "BrokenShardError", "skip_counts",
           "iter_shard_samples", "example_from_sample", "iter_shard_examples", "member_offsets"]
