"""Stage `write`: store rendered samples in the OphVL shards, through one `ShardWriter` per subset.

`ShardWriter` writes parts atomically and knows, after a restart, which keys its finished parts hold
(`shards.py`). The stage adds what a build needs around it: `contains(subset, key)` (already written, perhaps in the
part still open) for planning, `flushed(subset, key)` (in a finished part, so it survives a kill) for recording a
video as done, and `finalize` to turn parts into `train-XXXXX-of-NNNNN.tar` shards.
"""

from dataclasses import dataclass

from ..format import SUBSETS
from ..shards import ShardWriter
from .base import BaseStage, VideoItem, setting


@dataclass
class WriteSettings:
    samples_per_part: int = setting(64, "samples per tar part while writing (a kill loses at most the open part)")

    def __post_init__(self):
        if self.samples_per_part < 1:
            raise ValueError(f"write.samples_per_part must be >= 1, got {self.samples_per_part}")


class WriteStage(BaseStage):
    """Write each rendered sample to its subset's shards."""

    name = "write"
    requires = ("encode",)
    Settings = WriteSettings

    def __init__(self, settings=None, **overrides):
        super().__init__(settings, **overrides)
        self.writers: dict[str, ShardWriter] = {}

    def open(self, root) -> None:
        """Open (or reopen, resuming) the writers under `root/data/<subset>/`."""
        self.writers = {subset: ShardWriter(root, subset, self.settings.samples_per_part) for subset in SUBSETS}

    def contains(self, subset: str, key: str) -> bool:
        return key in self.writers[subset]

    def flushed(self, subset: str, key: str) -> bool:
        return key in self.writers[subset].done_keys

    def __call__(self, item: VideoItem):
        if not self.writers:
            raise RuntimeError("WriteStage.open(root) must be called before writing")
        for request, data in item.samples or ():
            self.writers[request.subset].write(request.key, data, request.record)
            item.written[request.subset] += 1
        return item

    def flush(self) -> None:
        for writer in self.writers.values():
            writer.flush()

    def finalize(self, shard_multiple: int = 1) -> dict:
        """Finish every subset's shards; return `{subset: {"samples": n, "shards": n}}`."""
        stats = {}
        for subset, writer in self.writers.items():
            shards = writer.finalize(shard_multiple)
            stats[subset] = {"samples": len(writer.done_keys), "shards": len(shards)}
        return stats
