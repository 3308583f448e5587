"""The training data: one endless, resumable stream per level, and random access to the silent videos of the bank.

**Level streams.** `clips` (clip + narration) and `videos` (whole video + title summary) are read with
`datasets_ophvl.load_ophvl` (streaming, decoded, sampled frames) into a `DataLoader` that `accelerator.prepare`
shards between processes (with `dispatch_batches=False` it calls `IterableDataset.shard` itself; nothing else
splits the data). [`LevelStream`] turns a prepared loader into an endless iterator over epochs (`set_epoch` reshuffles
the shard order deterministically) and knows its exact position: the collator ([`SnapshotCollator`]) attaches to
every batch the `state_dict()` of the dataset copy that produced it (the main process's, or the DataLoader worker's),
taken right after the batch's examples were read. The position of the last batch the training loop *consumed* is
therefore known exactly, whatever accelerate and the DataLoader have prefetched, and resuming loads it back with
`IterableDataset.load_state_dict` (in every worker through [`WorkerStateLoader`]).

**Silent videos.** The memory bank is refreshed row by row (`SilentVideoBank.rows_for_refresh`), so the silent subset
is read by row, not streamed: [`scan_silent_videos`] lists every silent video once (the tar headers and the small json
members, through the same `xopen` paths as the builder, local or `hf://`) with the byte range of its mp4, and
[`SilentVideoDataset`] decodes any set of rows. The rows a process encodes are chosen by `objectives.refresh_bank`
(`SilentVideoBank.shard_rows`), so this DataLoader is deliberately *not* prepared by accelerate.

**Checking first.** [`check_ophvl`] runs before the model is built: the subsets a run needs ([`required_subsets`])
must have shards and, locally, a sample that parses and decodes, so that a wrong `--data_path` or unreadable shards
are a clear error instead of a failure at the first step of that level. Single bad samples stay counted skips.
"""

import logging
import os

import torch
from torch.utils.data import DataLoader, get_worker_info


logger = logging.getLogger(__name__)

STATE_KEY = "_data_state"
TEXT_LEVELS = {"clip": "clips", "video": "videos"}  # level -> OphVL subset


# -- level streams --------------------------------------------------------------------------------------------------


class SnapshotCollator:
    """Collate with `OphVLCollator` and attach the reading position: `batch[STATE_KEY] = (worker id or None,
    dataset.state_dict())`, taken right after the batch's examples were read.

    Args:
        collate_fn: the collator (an `OphVLCollator`).
        dataset: the dataset the main process iterates (set after `accelerator.prepare`; unused in workers, which
            use their own copy).
    """

    def __init__(self, collate_fn, dataset=None):
        self.collate_fn = collate_fn
        self.dataset = dataset

    def __call__(self, examples):
        batch = dict(self.collate_fn(examples))
        info = get_worker_info()
        dataset = info.dataset if info is not None else self.dataset
        state = dataset.state_dict() if dataset is not None else None
        batch[STATE_KEY] = (info.id if info is not None else None, state)
        return batch


class WorkerStateLoader:
    """`worker_init_fn` that makes each DataLoader worker resume at its own saved position (`states[worker id]`)."""

    def __init__(self):
        self.states = None

    def __call__(self, worker_id: int):
        if self.states and worker_id in self.states and self.states[worker_id] is not None:
            get_worker_info().dataset.load_state_dict(self.states[worker_id])


class LevelStream:
    """An endless iterator of collated batches of one level, over epochs, with an exact, saveable position.

    Args:
        name: `"clip"` or `"video"` (for messages).
        loader: the DataLoader prepared by accelerate (a `DataLoaderShard` over this process's shards).
        collator: its `SnapshotCollator`.
        worker_init: its `WorkerStateLoader`.
        batch_size: per-process batch size (for messages).
    """

    def __init__(self, name: str, loader, collator: SnapshotCollator, worker_init: WorkerStateLoader, batch_size: int):
        self.name = name
        self.loader = loader
        self.collator = collator
        self.worker_init = worker_init
        self.batch_size = batch_size
        self.epoch = 0
        self.batches_in_epoch = 0
        self.worker_states: dict = {}
        self._iterator = None
        self._resume_states = None

    def _start_epoch(self):
        self.loader.set_epoch(self.epoch)
        states = self._resume_states
        self._resume_states = None
        if self.loader.num_workers == 0:
            if states and states.get(None) is not None:
                self.loader.dataset.load_state_dict(states[None])
            self.worker_init.states = None
        else:
            self.worker_init.states = states
        self._iterator = iter(self.loader)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        while True:
            if self._iterator is None:
                self._start_epoch()
            try:
                batch = next(self._iterator)
            except StopIteration:
                self._iterator = None
                if self.batches_in_epoch == 0:
                    raise RuntimeError(
                        f"the {self.name} stream of this process gave no full batch of {self.batch_size} in epoch "
                        f"{self.epoch}: lower the {self.name} batch size or use more data (each process reads "
                        "its own shards)"
                    ) from None
                self.epoch += 1
                self.batches_in_epoch = 0
                self.worker_states = {}
                continue
            worker, state = batch.pop(STATE_KEY)
            self.worker_states[worker] = state
            self.batches_in_epoch += 1
            return batch

    def state_dict(self) -> dict:
        """`{"epoch", "batches_in_epoch", "workers": [[worker id or None, dataset state], ...]}` (JSON-able)."""
        return {
            "epoch": self.epoch,
            "batches_in_epoch": self.batches_in_epoch,
            "workers": [[worker, state] for worker, state in self.worker_states.items()],
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue after the last batch consumed when `state` was taken (takes effect at the next batch)."""
        self.epoch = int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])
        self.worker_states = {worker: s for worker, s in state["workers"]}
        self._resume_states = dict(self.worker_states) if self.worker_states else None
        self._iterator = None


def build_level_stream(level: str, data_path, processor, data_args, seed: int, max_length: int, accelerator,
                       batch_size: int) -> LevelStream:
    """The prepared, resumable stream of one level (`"clip"` -> OphVL `clips`, `"video"` -> `videos`)."""
    from datasets_ophvl import OphVLCollator, load_ophvl

    dataset = load_ophvl(data_path, TEXT_LEVELS[level], processor=processor, num_frames=data_args.num_frames,
                         shuffle_buffer=data_args.shuffle_buffer, seed=seed, decoder=data_args.decoder,
                         cache_dir=data_args.cache_dir)
    # The video ids travel with the batch (retrieval quality is scored per video against a hidden ground truth).
    collator = SnapshotCollator(OphVLCollator(processor, max_length=max_length, id_column="video_id"))
    worker_init = WorkerStateLoader()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collator, drop_last=True,
                        num_workers=data_args.dataloader_num_workers, worker_init_fn=worker_init,
                        # a private generator: creating an iterator must not draw from the global RNG
                        generator=torch.Generator().manual_seed(seed))
    loader = accelerator.prepare(loader)
    collator.dataset = loader.dataset
    return LevelStream(level, loader, collator, worker_init, batch_size)


def split_batch(batch: dict, parts: int) -> list[dict]:
    """Split a collated batch into `parts` equal micro-batches (texts stay padded to the batch's longest)."""
    if parts == 1:
        return [batch]
    chunks = {key: value.chunk(parts) if isinstance(value, torch.Tensor) else None for key, value in batch.items()}
    return [{key: value[i] for key, value in chunks.items() if value is not None} for i in range(parts)]


# -- checking the data before a run --------------------------------------------------------------------------------

# Samples (a shard that gives none counts as one) the readability check looks at per subset before it gives up. A
# healthy dataset passes at its first sample. Bad samples are skips, not errors, so a dataset whose first samples
# happen to be bad is not declared unreadable: past this budget the check only warns and training finds out.
CHECK_SAMPLE_BUDGET = 32


def required_subsets(pattern, retrieval: bool) -> dict[str, str]:
    """The OphVL subsets a run reads, each with the reason (for error messages): `clips` / `videos` when the schedule
    has clip / video steps, `silent` when the memory bank is built (retrieval on and video steps)."""
    needed = {}
    if "clip" in pattern:
        needed["clips"] = "the schedule has clip steps"
    if "video" in pattern:
        needed["videos"] = "the schedule has video steps"
        if retrieval:
            needed["silent"] = "retrieval is on (the memory bank is built from the silent videos)"
    return needed


def _list_subset_shards(data_path: str, subset: str, why: str) -> list[str]:
    """The shard URLs of one subset, listed as the builder lists them (`xglob`, local or `hf://`); an error naming
    the folder, the subset and the reason when there are none or they cannot be listed."""
    from datasets.utils.file_utils import xglob, xjoin

    from datasets_ophvl.format import SPLIT, shard_glob

    pattern = xjoin(data_path, *shard_glob(subset).split("/"))
    folder = pattern.rsplit("/", 1)[0] + "/"
    try:
        urls = sorted(xglob(pattern))
    except (OSError, ValueError) as error:  # a Hub repository that does not exist or cannot be reached
        raise OSError(f"cannot list the OphVL shards for subset {subset!r} under {folder} "
                                f"({type(error).__name__}: {error}); {why}") from error
    if not urls:
        raise FileNotFoundError(f"no OphVL shards for subset {subset!r} under {folder} (expected {SPLIT}-*.tar); "
                                f"{why}")
    return urls


def _find_readable_sample(urls: list[str], subset: str, sampler, num_frames: int, decoder: str, counter,
                          budget: int) -> tuple[str, int]:
    """Read the shards in order until one sample parses and its video decodes, as the training stream would.

    Returns `(outcome, samples examined)`, `outcome` being `"found"`, `"gave up"` (`budget` bad samples in a row) or
    `"none"` (every shard read to its end, no readable sample). The skipped samples are counted in `counter`.
    """
    from contextlib import closing

    from datasets_ophvl import VideoDecodeError, decode_sampled_frames
    from datasets_ophvl.reader import example_from_sample, iter_shard_samples

    examined = 0
    for url in urls:
        source = f"{subset}/{url.rsplit('/', 1)[-1]}"
        before = examined
        try:
            with closing(iter_shard_samples(url, counter=counter, source=source)) as samples:
                for key, parts, problem in samples:
                    examined += 1
                    example, why = example_from_sample(subset, key, parts, problem)
                    if why is None:
                        try:
                            decode_sampled_frames(example["video"], sampler, num_frames, decoder=decoder)
                            return "found", examined
                        except VideoDecodeError as error:
                            why = (error.reason, error.detail)
                    counter.add(*why, key=key, source=source)
                    if examined >= budget:
                        return "gave up", examined
        except OSError as error:
            # Not a bad sample: a shard that cannot be opened at all (permissions, a vanished file) would stop the
            # training stream too (the builder does not swallow I/O errors).
            raise OSError(f"cannot read the OphVL shard {url} (subset {subset!r}): {error}") from error
        examined += examined == before  # a shard that gave no sample (not a tar, empty) costs one of the budget
        if examined >= budget and url != urls[-1]:
            return "gave up", examined
    return "none", examined


def check_ophvl(data_path: str, subsets: dict[str, str], num_frames: int = 8, decoder: str = "decord",
                budget: int = CHECK_SAMPLE_BUDGET) -> None:
    """Fail fast, naming the path, the subset and what was expected, when OphVL at `data_path` cannot feed a run.

    Called before the model is built, so that a wrong `--data_path` costs seconds rather than a model build, a bank
    and a first step (an unreadable video subset used to surface only at the first video step).

    - A local `data_path` must be an existing folder.
    - Every needed subset (`required_subsets`) must have shards, `data/<subset>/train-*.tar`, listed the way the
      builder lists them (also for `hf://` paths).
    - Locally, each needed subset must hold a sample that parses and decodes: the shards are read in order until one
      does, so a healthy dataset costs one sample per subset. A dataset whose every shard is garbage or whose every
      sample is broken is an error; one bad sample or shard among good ones stays a skip, counted by the stream as
      before. After `budget` bad samples in a row the check gives up with a warning rather than read a whole
      dataset; training then skips and reports them. Remote (`hf://`) datasets are only listed: reading a sample
      there is a network round trip per subset, and the streams still report unreadable samples.

    Args:
        data_path: the resolved dataset root (`datasets_ophvl.streaming.resolve_path`).
        subsets: `{subset: why the run needs it}`.
        num_frames, decoder: how the training streams sample and decode frames.

    Raises:
        FileNotFoundError: a missing folder, or a subset without shards.
        NotADirectoryError: a local `data_path` that is a file.
        ValueError: a subset with no readable sample.
        OSError: shards that cannot be listed (an unknown or unreachable Hub repository) or opened.
    """
    from datasets_ophvl.reader import SkipCounter

    remote = "://" in data_path
    if not remote and not os.path.exists(data_path):
        raise FileNotFoundError(f"--data_path {data_path} does not exist; expected an OphVL folder (data/clips, "
                                "data/videos, data/silent holding train-*.tar shards), hf://datasets/<org>/<name> or "
                                "a Hub dataset id <org>/<name>")
    if not remote and not os.path.isdir(data_path):
        raise NotADirectoryError(f"--data_path {data_path} is a file; expected an OphVL folder (data/clips, "
                                 "data/videos, data/silent holding train-*.tar shards)")
    shards = {subset: _list_subset_shards(data_path, subset, why) for subset, why in subsets.items()}
    if remote:
        return
    from modeling_ophclip import OphCLIPVideoProcessor

    # Frame sampling as the training streams do it (only the number of frames matters for whether a video decodes).
    sampler = OphCLIPVideoProcessor(num_frames=num_frames)
    for subset, why in subsets.items():
        # Private and quiet (debug-level logs): the training streams count and report these samples themselves.
        counter = SkipCounter(max_warnings_per_reason=0)
        outcome, examined = _find_readable_sample(shards[subset], subset, sampler, num_frames, decoder, counter,
                                                  budget)
        folder = shards[subset][0].rsplit("/", 1)[0] + "/"
        if outcome == "found":
            continue
        if outcome == "gave up":
            logger.warning(f"OphVL: the first {examined} samples of subset {subset!r} under {folder} are all "
                           f"unreadable ({counter.as_dict()}); training skips the bad ones")
            continue
        skipped = ", ".join(f"{reason}: {count}" for reason, count in sorted(counter.as_dict().items()))
        raise ValueError(f"no readable OphVL sample in subset {subset!r} under {folder}: its {len(shards[subset])} "
                         f"shard(s) were read to the end and every sample was skipped ({skipped}; see "
                         "datasets_ophvl.SKIP_REASONS); expected tar shards of <key>.mp4 + <key>.json samples with "
                         f"decodable videos (datasets_ophvl.format); {why}")


def count_samples(data_path: str, subset: str, enough: int | None = None) -> int | None:
    """The number of samples (distinct keys with a json member) in a local subset's shards, from the tar headers
    only, or `enough` as soon as that many are found (a check needs no more, and a large dataset is not read to its
    end); None for a remote dataset (counting would read every shard)."""
    if "://" in data_path:
        return None
    from datasets_ophvl.reader import member_offsets

    keys = set()
    for url in _list_subset_shards(data_path, subset, ""):
        try:
            keys.update(key for key, ext in member_offsets(url) if ext == "json")
        except OSError:
            continue  # unreadable shards are check_ophvl's and the stream's business
        if enough is not None and len(keys) >= enough:
            return enough
    return len(keys)


def check_settings_fit_data(data_path: str, pattern, data_args, objectives, world_size: int) -> None:
    """One up-front check of the data against the run's settings, listing every problem with the setting to change
    (raises `ValueError`): each process needs a full batch of every level it trains (it reads its own share of the
    shards, about 1/world_size of the samples), a video batch must give the video-level loss negatives, and
    retrieval needs at least K silent videos. Local datasets only (remote ones are not counted)."""
    problems = []
    levels = {"clip": ("clips", data_args.clip_batch_size, "--clip_batch_size"),
              "video": ("videos", data_args.video_batch_size, "--video_batch_size")}
    for level, (subset, batch_size, option) in levels.items():
        if level not in pattern:
            continue
        count = count_samples(data_path, subset, enough=batch_size * world_size)
        if count is not None and count // world_size < batch_size:
            problems.append(f"{subset}: {count} samples give each of {world_size} process(es) about "
                            f"{count // world_size}, fewer than {option} {batch_size} (lower {option} or add data)")
    if "video" in pattern and data_args.video_batch_size * world_size < 2:
        problems.append(f"a global video batch of {data_args.video_batch_size * world_size} has no negatives: the "
                        "video-level loss is 0 (raise --video_batch_size to 2 or more)")
    if "video" in pattern and objectives.retrieval:
        count = count_samples(data_path, "silent", enough=objectives.retrieval_k)
        if count is not None and count < objectives.retrieval_k:
            problems.append(f"silent: {count} silent videos, fewer than --retrieval_k {objectives.retrieval_k} "
                            "(lower --retrieval_k, add silent videos, or --retrieval false)")
    if problems:
        raise ValueError(f"the data under {data_path} does not fit this run's settings: " + "; ".join(problems))


# -- silent videos, by row ------------------------------------------------------------------------------------------


SILENT_COLUMNS = ("video_id", "title", "duration", "shard", "offset", "size")


def _shard_urls(data_path: str, subset: str = "silent") -> list[str]:
    from datasets.utils.file_utils import xglob, xjoin

    from datasets_ophvl.format import shard_glob

    pattern = xjoin(data_path, *shard_glob(subset).split("/"))
    urls = sorted(xglob(pattern))
    if not urls:
        raise FileNotFoundError(f"no OphVL silent shards match {pattern}")
    return urls


def _relative(url: str, data_path: str) -> str:
    prefix = data_path.rstrip("/") + "/"
    return url[len(prefix):] if url.startswith(prefix) else url


def scan_silent_videos(data_path: str) -> dict[str, list]:
    """List the silent videos of OphVL at `data_path` with the byte range of each mp4 in its shard.

    The samples are read and checked by the project's one shard reader (`datasets_ophvl.reader`), so a sample the
    builder skips is skipped here, for the same reason and counted in `datasets_ophvl.skip_counts`; a second sample
    with the same `video_id` is skipped too. The byte ranges (for random access by row) come from the tar headers.

    Returns:
        Columns `video_id`, `title`, `duration`, `shard` (relative to `data_path` when under it), `offset`, `size`,
        in shard order then tar order (the same on every process).
    """
    from datasets_ophvl.reader import iter_shard_examples, member_offsets, skip_counts

    columns = {name: [] for name in SILENT_COLUMNS}
    seen = set()
    for url in _shard_urls(data_path):
        source = f"silent/{url.rsplit('/', 1)[-1]}"
        offsets = member_offsets(url)
        for example in iter_shard_examples("silent", url, counter=skip_counts, source=source):
            if example["video_id"] in seen:
                skip_counts.add("invalid_record", f"duplicate video_id {example['video_id']!r}", key=example["key"],
                                source=source)
                continue
            seen.add(example["video_id"])
            offset, size = offsets[(example["key"], "mp4")]
            columns["video_id"].append(example["video_id"])
            columns["title"].append(example["title"])
            columns["duration"].append(example["duration"])
            columns["shard"].append(_relative(url, data_path))
            columns["offset"].append(int(offset))
            columns["size"].append(int(size))
    if not columns["video_id"]:
        raise ValueError(f"no usable silent video under {data_path}")
    return columns


class SilentVideoDataset(torch.utils.data.Dataset):
    """Decoded, sampled frames of chosen silent videos (map-style; item `i` is bank row `rows[i]`).

    Args:
        data_path: the OphVL root the `shard` column is relative to.
        table: the bank's metadata columns (`shard`, `offset`, `size`), e.g. `bank.dataset.to_dict()`.
        rows: the bank rows to read.
        video_processor: an `OphCLIPVideoProcessor` (frame sampling).
        num_frames: frames per video.
        decoder: `"decord"` or `"pyav"`.
    """

    def __init__(self, data_path: str, table: dict, rows, video_processor, num_frames: int, decoder: str = "decord"):
        self.data_path = data_path
        self.shards = [table["shard"][r] for r in rows]
        self.offsets = [table["offset"][r] for r in rows]
        self.sizes = [table["size"][r] for r in rows]
        self.rows = [int(r) for r in rows]
        self.video_processor = video_processor
        self.num_frames = num_frames
        self.decoder = decoder

    def __len__(self) -> int:
        return len(self.rows)

    def _url(self, shard: str) -> str:
        if "://" in shard or os.path.isabs(shard):
            return shard
        from datasets.utils.file_utils import xjoin

        return xjoin(self.data_path, *shard.split("/"))

    def _read(self, i: int) -> bytes:
        from datasets.utils.file_utils import xopen

        with xopen(self._url(self.shards[i]), "rb") as f:
            f.seek(self.offsets[i])
            return f.read(self.sizes[i])

    def __getitem__(self, i: int) -> dict:
        from datasets_ophvl import VideoDecodeError, decode_sampled_frames, skip_counts

        try:
            frames, _, _ = decode_sampled_frames(self._read(i), self.video_processor, self.num_frames,
                                                 decoder=self.decoder)
        except (VideoDecodeError, OSError) as error:
            reason = getattr(error, "reason", "undecodable_video")
            skip_counts.add(reason, str(error), key=f"bank row {self.rows[i]}", source=self.shards[i])
            frames = None
        return {"row": self.rows[i], "frames": frames}


class SilentCollator:
    """Collate `SilentVideoDataset` items: `pixel_values_videos`, `frame_mask`, `rows` (decoded) and `failed` rows."""

    def __init__(self, video_processor):
        self.video_processor = video_processor

    def __call__(self, items: list[dict]) -> dict:
        good = [item for item in items if item["frames"] is not None]
        batch = {"rows": [item["row"] for item in good], "failed": [item["row"] for item in items if item["frames"] is None]}
        if good:
            batch.update(self.video_processor([item["frames"] for item in good], return_tensors="pt"))
        return batch


def silent_loader(data_path: str, table: dict, rows, processor, data_args) -> DataLoader:
    """A plain (not prepared) DataLoader over `rows` of the bank: the rows are already this process's share."""
    video_processor = processor.video_processor
    dataset = SilentVideoDataset(data_path, table, rows, video_processor, data_args.num_frames, data_args.decoder)
    return DataLoader(dataset, batch_size=data_args.bank_batch_size, shuffle=False,
                      num_workers=min(data_args.dataloader_num_workers, max(1, len(rows))) if len(rows) else 0,
                      collate_fn=SilentCollator(video_processor))


__all__ = [
    "LevelStream",
    "STATE_KEY",
    "SilentCollator",
    "SilentVideoDataset",
    "SnapshotCollator",
    "WorkerStateLoader",
    "build_level_stream",
    "check_ophvl",
    "check_settings_fit_data",
    "count_samples",
    "required_subsets",
    "scan_silent_videos",
    "silent_loader",
    "split_batch",
]
