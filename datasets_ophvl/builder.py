"""The OphVL streaming builder: a `datasets.GeneratorBasedBuilder` over the WebDataset tar shards of one subset.

datasets 5 runs no loading scripts, so the builder is a class of this package, instantiated directly:

```python
>>> from datasets_ophvl import OphVL
>>> ds = OphVL(config_name="clips", base_path="hf://datasets/<org>/<name>").as_streaming_dataset(split="train")
>>> next(iter(ds))["text"]
```

`base_path` is a local folder laid out like the Hub repo or an `hf://datasets/...` path (optionally `@revision`);
both go through the same code (`xglob`/`xjoin` to list shards, datasets' streaming archive iteration to read them),
so nothing is unpacked to disk and remote shards are read sequentially.

Each example holds the raw mp4 bytes (`video`) with the sample's text and metadata; `load_ophvl` (streaming.py)
adds decoding and frame sampling on top. Shards are read by `reader.iter_shard_examples`, the project's one shard
reader (datasets' archive iteration and WebDataset key grouping, with our checks): bad samples never stop an epoch;
they are skipped, counted by reason in `skip_counts` (this process) and logged (the first few of each reason one by
one, then a summary at the end of every shard, which is how counts from DataLoader workers and other ranks reach the
logs).
"""

import logging
from dataclasses import dataclass

import datasets
from datasets.builder import Key

from .format import SUBSETS, SPLIT, shard_glob
from .reader import iter_shard_examples, process_name, skip_counts


logger = logging.getLogger(__name__)


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
            for example in iter_shard_examples(subset, url, download_config, skip_counts, source):
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
                f"OphVL ({process_name()}): {source}: {yielded} samples read; skipped since the shard started: "
                f"{new}; skipped in this process so far: {now}"
            )
        else:
            logger.info(f"OphVL ({process_name()}): {source}: {yielded} samples read, none skipped")


__all__ = ["OphVL", "OphVLConfig"]
