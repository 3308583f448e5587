"""Streaming OphVL as decoded, sampled frames, and collating them into OphCLIP model inputs.

```python
>>> from torch.utils.data import DataLoader
>>> from datasets_ophvl import OphVLCollator, load_ophvl
>>> ds = load_ophvl("hf://datasets/<org>/<name>", "clips", processor=processor, shuffle_buffer=1000, seed=42)
>>> loader = DataLoader(ds, batch_size=32, num_workers=4, collate_fn=OphVLCollator(processor))
>>> for epoch in range(epochs):
...     ds.set_epoch(epoch)  # with Accelerate: prepared_loader.set_epoch(epoch)
...     for batch in loader:
...         outputs = model(**batch, return_loss=True)
```

Each example is the builder's example (`key`, `text`, `video_id`, `start`, `end`, `duration`, `title`, `metadata`,
`shard`) with the mp4 bytes replaced by `frames`, a uint8 `(T, H, W, 3)` array decoded straight from the tar member
bytes (in memory, never unpacked to disk) at the indices `OphCLIPVideoProcessor.sample_indices` picks, so training
samples frames exactly as inference does, plus `frame_indices` and `video_fps`. Decoding uses decord, like the
processor, or PyAV with `decoder="pyav"`, which decodes only the frames the sampled ones depend on and gives
bit-identical frames faster. Resizing and normalising are left to the collator, which runs in the DataLoader workers.

Distributed training: with `Accelerator(dataloader_config=DataLoaderConfiguration(dispatch_batches=False))`,
`accelerator.prepare(DataLoader(ds, ...))` gives each process its own shards (`IterableDataset.shard`) and the
DataLoader gives each worker its own subset of those; do not call `split_dataset_by_node` as well. Use the same `seed`
on every process, and a shard count that is a multiple of processes x workers so that every reader gets the same
number of shards.
"""

import importlib.util
import io
import logging
import os
import re

import numpy as np

from .builder import OphVL
from .reader import skip_counts


logger = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?$")


class VideoDecodeError(ValueError):
    """A video that cannot be decoded; `reason` is one of `builder.SKIP_REASONS`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _first_line(error: Exception, limit: int = 200) -> str:
    # decord's messages carry a C++ backtrace; the first line says what went wrong.
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:limit]


DECODERS = ("decord", "pyav")


def decode_sampled_frames(video: bytes, sampler, num_frames: int | None = None, fps: float | None = None,
                          decoder: str = "decord", max_pixels: int | None = None):
    """Decode the frames `sampler.sample_indices` picks from mp4 bytes, in memory.

    Args:
        video: the mp4 bytes (a tar member's content).
        sampler: an `OphCLIPVideoProcessor` (its `sample_indices` decides which frames).
        num_frames, fps: override the processor's sampling.
        decoder: `"decord"` (what `OphCLIPVideoProcessor.decode` uses) or `"pyav"`, which decodes only the frames
            the sampled ones need and gives bit-identical frames, faster (see `benchmarks/bench_data.py`).
        max_pixels: the largest frame (width x height) decoded; default `$OPHVL_MAX_FRAME_PIXELS`, else
            `datasets_ophvl.media.MAX_FRAME_PIXELS` (4096 x 4096). The size the file's header declares is checked
            before anything is decoded, so a small file with huge frames cannot take GiBs of memory.

    Returns:
        `(frames, indices, video_fps)`: uint8 `(T, H, W, 3)` RGB frames, their indices in the video, its frame rate.

    Raises:
        VideoDecodeError: with `reason` `no_video_stream`, `undecodable_video`, `zero_frames`, `corrupt_video` or
            `oversized_frame`.
    """
    from .media import MAX_FRAME_PIXELS_ENV, max_frame_pixels, video_frame_size

    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; expected one of {DECODERS}")
    limit = max_frame_pixels(max_pixels)
    size = video_frame_size(video)
    if size is not None and size[0] * size[1] > limit:
        raise VideoDecodeError(
            "oversized_frame", f"{size[0]}x{size[1]} frames ({size[0] * size[1]} pixels) exceed max_pixels={limit}; "
            f"expected at most {limit} pixels per frame (raise it with max_pixels= or {MAX_FRAME_PIXELS_ENV})")
    if decoder == "pyav":
        frames, indices, video_fps = _decode_pyav(video, sampler, num_frames, fps)
    elif decoder == "decord":
        frames, indices, video_fps = _decode_decord(video, sampler, num_frames, fps)
    else:
        raise ValueError(f"unknown decoder {decoder!r}; expected one of {DECODERS}")
    if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideoDecodeError("corrupt_video", f"decoded frames of shape {frames.shape} / {frames.dtype}")
    if frames.shape[1] * frames.shape[2] > limit:  # a header that declared no size or a smaller one
        raise VideoDecodeError("oversized_frame", f"{frames.shape[2]}x{frames.shape[1]} frames exceed "
                               f"max_pixels={limit} (the header declared {size})")
    return frames, indices, video_fps


# decord 0.6 cannot copy out frames of some narrow widths (16, 24, 48, 72 px: its row padding does not match) and
# says so with this message; such videos are fine, so they are decoded with PyAV instead when it is installed.
_DECORD_COPY_BUG = "DECORDArrayCopyFromTo"


def _decode_decord(video: bytes, sampler, num_frames, fps):
    from decord import VideoReader, cpu

    try:
        # One decoding thread: DataLoader workers are the parallelism, and extra threads only contend with them.
        reader = VideoReader(io.BytesIO(video), ctx=cpu(0), num_threads=1)
    except Exception as error:  # decord raises DECORDError / RuntimeError
        reason = "no_video_stream" if "video stream" in str(error) else "undecodable_video"
        raise VideoDecodeError(reason, _first_line(error)) from None
    total = len(reader)
    if total <= 0:
        raise VideoDecodeError("zero_frames", "the video stream has no frames")
    try:
        video_fps = float(reader.get_avg_fps())
        indices = sampler.sample_indices(total, video_fps, num_frames=num_frames, fps=fps)
        return reader.get_batch(indices).asnumpy(), indices, video_fps
    except Exception as error:
        if _DECORD_COPY_BUG in str(error):
            try:
                return _decode_pyav(video, sampler, num_frames, fps)
            except ImportError:
                pass
        raise VideoDecodeError("corrupt_video", _first_line(error)) from None


def _decode_pyav(video: bytes, sampler, num_frames, fps):
    """Decode with PyAV only what the sampled frames need: the frames they refer to, and themselves.

    The packets are read first (cheap: no decoding) to count the frames and order them by presentation time, which
    gives the sampled indices. Then a packet is fully decoded only if it is a sampled frame; for the others the
    decoder is told to drop frames that no other frame refers to (`skip_frame="NONREF"`, most B-frames), and only the
    sampled frames are converted to RGB. Sampled frames are therefore decoded exactly as by decoding everything.
    """
    import av

    try:
        container = av.open(io.BytesIO(video))
    except Exception as error:  # av.error.InvalidDataError and friends
        raise VideoDecodeError("undecodable_video", _first_line(error)) from None
    with container:
        if not container.streams.video:
            raise VideoDecodeError("no_video_stream", "the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_count = 1  # one thread per DataLoader worker, as for decord
        try:
            packets = [packet for packet in container.demux(stream) if packet.size]
        except Exception as error:
            raise VideoDecodeError("undecodable_video", _first_line(error)) from None
        if not packets:
            raise VideoDecodeError("zero_frames", "the video stream has no frames")
        if any(packet.pts is None for packet in packets):
            raise VideoDecodeError("corrupt_video", "video packets without timestamps")
        presentation = sorted(packet.pts for packet in packets)
        try:
            video_fps = float(stream.average_rate or stream.guessed_rate or 0)
            indices = sampler.sample_indices(len(presentation), video_fps, num_frames=num_frames, fps=fps)
            wanted = {presentation[i] for i in indices}
            frames = _decode_wanted(stream.codec_context, packets, wanted)
        except Exception as error:  # av.error.* from corrupt data, ValueError from sampling
            raise VideoDecodeError("corrupt_video", _first_line(error)) from None
    if len(frames) != len(wanted):
        raise VideoDecodeError("corrupt_video", f"{len(frames)} of the {len(wanted)} sampled frames were decoded")
    return np.stack([frames[presentation[i]] for i in indices]), indices, video_fps


def _decode_wanted(codec, packets, wanted: set) -> dict:
    """`{pts: RGB frame}` for the frames whose pts is in `wanted`, skipping unreferenced frames that are not."""
    frames = {}

    def keep(decoded):
        for frame in decoded:
            if frame.pts in wanted:
                frames[frame.pts] = frame.to_ndarray(format="rgb24")

    for packet in packets:
        codec.skip_frame = "DEFAULT" if packet.pts in wanted else "NONREF"
        keep(codec.decode(packet))
        if len(frames) == len(wanted):
            return frames
    codec.skip_frame = "DEFAULT"
    keep(codec.decode(None))  # flush the frames the decoder still holds for reordering
    return frames


def _decode_example(example: dict, sampler, num_frames, fps, decoder) -> dict:
    """The `.map` step: decoded frames for a good video, `frames=None` (dropped by the next step) for a bad one."""
    try:
        frames, indices, video_fps = decode_sampled_frames(example["video"], sampler, num_frames, fps, decoder)
    except VideoDecodeError as error:
        skip_counts.add(error.reason, error.detail, key=example.get("key"), source=example.get("shard"))
        return {"frames": None, "frame_indices": None, "video_fps": None}
    return {"frames": frames, "frame_indices": indices, "video_fps": video_fps}


def _is_decoded(example: dict) -> bool:
    return example["frames"] is not None


def _video_processor(processor, num_frames: int | None):
    """The `OphCLIPVideoProcessor` that decides frame sampling."""
    from modeling_ophclip import OphCLIPVideoProcessor

    if processor is None:
        return OphCLIPVideoProcessor(num_frames=num_frames or 8)
    video_processor = getattr(processor, "video_processor", processor)
    if not hasattr(video_processor, "sample_indices"):
        raise TypeError("processor must be an OphCLIPProcessor or OphCLIPVideoProcessor, got "
                        f"{type(processor).__name__}")
    return video_processor


def resolve_path(path) -> str:
    """A local folder as an absolute path, `hf://...` unchanged, and `org/name[@rev]` (not a local folder) as
    `hf://datasets/org/name[@rev]`."""
    path = os.fspath(path)
    if "://" in path:
        return path
    if not os.path.exists(path) and _REPO_ID.match(path):
        return f"hf://datasets/{path}"
    return os.path.abspath(path)


def _warn_on_uneven_shards(num_shards: int) -> None:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and num_shards % world_size:
        logger.warning(
            f"OphVL has {num_shards} shards for {world_size} processes: some processes get one more shard than the "
            "others (or, with fewer shards than processes, every process reads everything). Write a multiple of "
            "processes x DataLoader workers shards (`ShardWriter.finalize(shard_multiple=...)`)."
        )


def load_ophvl(path, subset: str = "clips", processor=None, num_frames: int | None = None, fps: float | None = None,
               shuffle_buffer: int = 0, seed: int | None = None, decoder: str = "decord", split: str = "train",
               cache_dir=None, token=None):
    """Stream an OphVL subset as decoded, sampled frames.

    Args:
        path: a local folder laid out like the Hub repo, `hf://datasets/<org>/<name>[@revision]`, or `<org>/<name>`.
        subset: `"clips"`, `"videos"` or `"silent"`.
        processor: an `OphCLIPProcessor` or `OphCLIPVideoProcessor` whose `sample_indices` picks the frames
            (default: 8 uniformly spread segment centres).
        num_frames, fps: override the processor's frame sampling.
        shuffle_buffer: examples held in the shuffle buffer (the raw mp4 bytes are buffered; decoding happens after
            the buffer). 0 or 1: no example shuffling.
        seed: the shuffling seed; the same on every process. With `shuffle_buffer` > 1 it defaults to 0; with no
            buffer, a seed still shuffles the shard order. `set_epoch(e)` on the returned dataset reshuffles
            deterministically per epoch.
        decoder: `"decord"` or `"pyav"` (bit-identical frames, decodes only what the sampled frames need; needs
            PyAV). See `decode_sampled_frames`.
        cache_dir, token: passed to the `OphVL` builder (`token` for private `hf://` repos).

    Returns:
        A `datasets.IterableDataset` of dicts with `frames` (uint8 `(T, H, W, 3)`), `frame_indices`, `video_fps`,
        `key`, `text`, `video_id`, `start`, `end`, `duration`, `title`, `metadata` and `shard`. Samples that cannot
        be read or decoded are skipped and counted in `datasets_ophvl.skip_counts` (per process) and in the logs.

    Resuming: `state_dict()` / `load_state_dict()` resume mid-epoch exactly where the state was taken, except that
    the examples held in the shuffle buffer at that time are not replayed (datasets' behaviour; they come back next
    epoch). Without a buffer, resuming yields exactly the remaining examples.
    """
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; expected one of {DECODERS}")
    if decoder == "pyav" and importlib.util.find_spec("av") is None:
        raise ImportError('decoder="pyav" needs PyAV: pip install av')
    builder = OphVL(config_name=subset, base_path=resolve_path(path), cache_dir=cache_dir, token=token)
    ds = builder.as_streaming_dataset(split=split)
    _warn_on_uneven_shards(ds.num_shards)
    if shuffle_buffer and shuffle_buffer > 1:
        ds = ds.shuffle(seed=0 if seed is None else seed, buffer_size=shuffle_buffer)
    elif seed is not None:
        # Shard order only: a one-example buffer holds nothing back, so resuming stays exact.
        ds = ds.shuffle(seed=seed, buffer_size=1, max_buffer_input_shards=1)
    sampler = _video_processor(processor, num_frames)
    ds = ds.map(_decode_example, remove_columns=["video"],
                fn_kwargs={"sampler": sampler, "num_frames": num_frames, "fps": fps, "decoder": decoder})
    return ds.filter(_is_decoded)


class OphVLCollator:
    """Collate `load_ophvl` examples into OphCLIP model inputs.

    Returns a `BatchFeature` with `input_ids`, `attention_mask`, `token_type_ids` (from the tokenizer) and
    `pixel_values_videos` `(B, T, 3, H, W)`, `frame_mask` `(B, T)` (from the video processor; videos with fewer frames
    are padded and masked). Pass it as a DataLoader's `collate_fn` so the transforms run in the workers.

    Args:
        processor: an `OphCLIPProcessor`.
        max_length: truncate texts to this many tokens (default: the tokenizer's `model_max_length`).
        text_column: the example field holding the text.
        id_column: an example field (e.g. `"video_id"`) whose values are passed on as a list under the same name.
    """

    def __init__(self, processor, max_length: int | None = None, text_column: str = "text",
                 id_column: str | None = None):
        if not hasattr(processor, "tokenizer") or not hasattr(processor, "video_processor"):
            raise TypeError("OphVLCollator needs an OphCLIPProcessor (tokenizer + video processor), got "
                            f"{type(processor).__name__}")
        self.processor = processor
        self.max_length = max_length
        self.text_column = text_column
        self.id_column = id_column

    def __call__(self, examples: list[dict]):
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        text_kwargs = {"max_length": self.max_length} if self.max_length else {}
        batch = self.processor(
            text=[example[self.text_column] for example in examples],
            videos=[example["frames"] for example in examples],
            return_tensors="pt",
            **text_kwargs,
        )
        if self.id_column:
            batch[self.id_column] = [example.get(self.id_column) for example in examples]
        return batch


__all__ = ["DECODERS", "OphVLCollator", "VideoDecodeError", "decode_sampled_frames", "load_ophvl", "resolve_path"]
