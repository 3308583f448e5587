"""The OphVL streaming builder: a `datasets.GeneratorBasedBuilder` over the WebDataset tar shards of one subset.

datasets 5 runs no loading scripts, so the builder is a class of this package, instantiated directly:

```python
>>> from datasets_ophvl import OphVL
>>> ds = OphVL(config_name="clips", base_path="hf://datasets/<org>/<name>").as_streaming_dataset(split="train")
>>> next(iter(ds))["text"]
```

`base_path` is a local folder laid out like the Hub repo or an `hf://datasets/...` path (optionally `@revision`);
both go through the same code (`xglob`/`xjoin` to list shards, `xopen` + a stream-mode tar reader to read them), so
nothing is unpacked to disk and remote shards are read sequentially.

Each example holds the raw mp4 bytes (`video`) with the sample's text and metadata; `load_ophvl` (streaming.py)
adds decoding and frame sampling on top. Bad samples never stop an epoch: they are skipped, counted by reason in
`skip_counts` (this process) and logged (the first few of each reason one by one, then a summary at the end of every
shard, which is how counts from DataLoader workers and other ranks reach the logs).
"""

import json
import logging
import os
import re
import sys
import tarfile
import threading
from collections import Counter
from dataclasses import dataclass

import datasets
from datasets.builder import Key

from .format import SUBSETS, SPLIT, record_text, shard_glob, validate_record


logger = logging.getLogger(__name__)

# A sample's json is a few hundred bytes; a member claiming megabytes is not one of ours and is not read into memory.
MAX_JSON_BYTES = 1 << 20
# The members a sample is made of; other extensions are ignored so that future fields do not break old readers.
SAMPLE_PARTS = ("mp4", "json")

# Why samples (or tar members) are skipped. Member-level reasons count members, the others count samples.
SKIP_REASONS = {
    "unsafe_member_path": "a tar member with an absolute path or a `..` component (never extracted)",
    "non_file_member": "a tar member that is not a regular file (directory, link, device, fifo)",
    "bad_member_name": "a tar member whose name is not `<key>.<ext>` (hidden file, sub-folder, no extension)",
    "duplicate_member": "a sample with two members of the same extension",
    "duplicate_key": "a sample key that already appeared earlier in the same shard",
    "oversized_json": f"a json member larger than {MAX_JSON_BYTES} bytes",
    "missing_json": "a sample without its `.json` member",
    "missing_mp4": "a sample without its `.mp4` member",
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


def _process_name() -> str:
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
        where = " ".join(part for part in (f"sample {key!r}" if key else "", f"in {source}" if source else "") if part)
        message = f"OphVL: skipped {where or 'a sample'} ({reason})" + (f": {detail}" if detail else "")
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


# The counter of this process, shared by the builder and the decoding stage.
skip_counts = SkipCounter()


# -- reading tar shards -------------------------------------------------------------------------------------------

_DRIVE = re.compile(r"^[A-Za-z]:")


def _member_problem(member: tarfile.TarInfo) -> tuple[str, str] | None:
    """Why a tar member cannot be part of a sample, as `(reason, detail)`, or None for a usable member."""
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts:
        return "unsafe_member_path", f"member {name!r}"
    if not member.isreg():
        kind = "directory" if member.isdir() else "link" if member.issym() or member.islnk() else "special file"
        return "non_file_member", f"{kind} member {name!r}"
    base = _strip_dot_slash(name)
    key, dot, ext = base.partition(".")
    if "/" in base or "\\" in base or not key or not dot or not ext:
        return "bad_member_name", f"member {name!r} is not named <key>.<ext>"
    return None


def _strip_dot_slash(name: str) -> str:
    # `tar -cf shard.tar ./*` stores `./key.mp4`; that prefix is harmless.
    while name.startswith("./"):
        name = name[2:]
    return name


def iter_shard_samples(url: str, download_config=None, counter: SkipCounter = skip_counts, source: str | None = None):
    """Yield `(key, parts, problem)` for the samples of one tar shard, streaming it (local path or `hf://` URL).

    `parts` maps the wanted extensions (`mp4`, `json`) to bytes; `problem` is `(reason, detail)` when the sample was
    found broken while reading it (duplicate or oversized member), else None. Unsafe, non-file and misnamed members
    are dropped and counted here; nothing is ever written to disk.
    """
    from datasets.utils.file_utils import xopen

    source = source or url
    key, parts, problem, seen = None, {}, None, set()
    try:
        with xopen(url, "rb", download_config=download_config, block_size=0) as f:
            # "r|*" reads the archive as a forward-only stream (any compression), as remote files must be read.
            with tarfile.open(fileobj=f, mode="r|*") as tar:
                for member in tar:
                    tar.members = []  # a stream-mode TarFile keeps every header otherwise; shards can be long
                    member_problem = _member_problem(member)
                    if member_problem:
                        counter.add(*member_problem, source=source)
                        continue
                    member_key, _, ext = _strip_dot_slash(member.name).partition(".")
                    if member_key != key:
                        if key is not None:
                            yield key, parts, problem
                        if member_key in seen:
                            problem = ("duplicate_key", f"key {member_key!r} appeared earlier in this shard")
                        else:
                            problem = None
                        key, parts = member_key, {}
                        seen.add(member_key)
                    ext = ext.lower()
                    if ext not in SAMPLE_PARTS:
                        continue
                    if ext in parts:
                        problem = problem or ("duplicate_member", f"two `.{ext}` members")
                    elif ext == "json" and member.size > MAX_JSON_BYTES:
                        problem = problem or ("oversized_json", f"json member of {member.size} bytes")
                    else:
                        parts[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError) as error:
        # A truncated or non-tar shard costs the rest of that shard, never the epoch. I/O errors (a vanished file,
        # a network failure after datasets' retries) are not swallowed: they are not a property of one sample.
        counter.add("unreadable_shard", f"{type(error).__name__}: {error}", source=source)
    if key is not None:
        yield key, parts, problem


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


# -- the builder --------------------------------------------------------------------------------------------------

@dataclass
class OphVLConfig(datasets.BuilderConfig):
    """One OphVL subset: `clips` (narrated clips), `videos` (whole videos + title summaries) or `silent`."""

    subset: str = "clips"

    def __post_init__(self):
        super().__post_init__()
        if self.subset not in SUBSETS:
            raise ValueError(f"unknown OphVL subset {self.subset!r}; expected one of {SUBSETS}")


_VERSION = datasets.Version("1.0.0")
_DESCRIPTION = {
    "clips": "Narrated surgical clips (pre-cut) paired with their narration.",
    "videos": "Whole ophthalmic surgery videos paired with their structured title summary.",
    "silent": "Whole silent surgical videos with their title (the retrieval knowledge base).",
}


class OphVL(datasets.GeneratorBasedBuilder):
    """OphVL from WebDataset tar shards under `base_path/data/<subset>/train-*.tar` (local folder or `hf://`).

    Features: `key`, `video` (mp4 bytes), `text` (narration, title summary or title: `format.record_text`),
    `video_id`, `start`, `end`, `duration` (seconds; a whole video spans `0..duration`), `title` (None for clips),
    `metadata` (the sample's json, as a string) and `shard` (the tar file the sample came from).

    Args (to the constructor, besides those of `datasets.DatasetBuilder`):
        config_name: `"clips"` (default), `"videos"` or `"silent"`.
        base_path: the dataset root, a local folder or `hf://datasets/<org>/<name>[@revision]`.
    """

    VERSION = _VERSION
    BUILDER_CONFIG_CLASS = OphVLConfig
    BUILDER_CONFIGS = [OphVLConfig(name=subset, subset=subset, version=_VERSION, description=_DESCRIPTION[subset])
                       for subset in SUBSETS]
    DEFAULT_CONFIG_NAME = "clips"

    def _info(self) -> datasets.DatasetInfo:
        string, seconds = datasets.Value("string"), datasets.Value("float32")
        return datasets.DatasetInfo(
            description=self.config.description,
            features=datasets.Features({
                "key": string,
                "video": datasets.Value("binary"),  # not `Video()`: its decoding needs torchcodec
                "text": string,
                "video_id": string,
                "start": seconds,
                "end": seconds,
                "duration": seconds,
                "title": string,
                "metadata": string,
                "shard": string,
            }),
        )

    def _split_generators(self, dl_manager):
        from datasets.utils.file_utils import xglob, xjoin

        if not self.base_path:
            raise ValueError("OphVL needs base_path: a local dataset folder or hf://datasets/<org>/<name>")
        pattern = xjoin(self.base_path, *shard_glob(self.config.subset).split("/"))
        download_config = getattr(dl_manager, "download_config", None)
        shards = sorted(xglob(pattern, download_config=download_config))
        if not shards:
            raise FileNotFoundError(f"no OphVL shards match {pattern}")
        shards = dl_manager.download(shards)
        # Parallel lists are split together when datasets shards the work between processes and DataLoader workers;
        # `shard_ids` keeps each shard's original index for the example keys.
        return [datasets.SplitGenerator(name=SPLIT, gen_kwargs={
            "shards": shards, "shard_ids": list(range(len(shards))), "download_config": download_config})]

    def _generate_shards(self, shards, shard_ids, download_config):
        yield from shards

    def _generate_examples(self, shards, shard_ids, download_config):
        subset = self.config.subset
        for shard_id, url in zip(shard_ids, shards):
            source = f"{subset}/{url.rsplit('/', 1)[-1]}"
            yielded = 0
            before = skip_counts.as_dict()
            for key, parts, problem in iter_shard_samples(url, download_config, skip_counts, source):
                example, why = example_from_sample(subset, key, parts, problem)
                if why:
                    skip_counts.add(*why, key=key, source=source)
                    continue
                example["shard"] = source
                yield Key(shard_id, yielded), example
                yielded += 1
            self._log_shard_summary(source, yielded, before)

    @staticmethod
    def _log_shard_summary(source: str, yielded: int, before: dict) -> None:
        """Log what this process skipped while the shard was read (decoding skips of this process included)."""
        now = skip_counts.as_dict()
        new = {reason: count - before.get(reason, 0) for reason, count in now.items() if count != before.get(reason, 0)}
        if new:
            logger.warning(
                f"OphVL ({_process_name()}): {source}: {yielded} samples read; skipped since the shard started: "
                f"{new}; skipped in this process so far: {now}"
            )
        else:
            logger.info(f"OphVL ({_process_name()}): {source}: {yielded} samples read, none skipped")


__all__ = ["OphVL", "OphVLConfig", "SKIP_REASONS", "SkipCounter", "skip_counts", "iter_shard_samples"]
