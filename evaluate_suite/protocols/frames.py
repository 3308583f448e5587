"""Frame features of labelled benchmark videos: sampling, parallel decoding, checks, batching through the encoder.

`extract_frame_features` samples each video at `fps` (1 by default, the SurgVLP/OphCLIP protocol) from its native
frame rate, decodes and preprocesses the sampled frames in DataLoader workers (one item = one chunk of consecutive
sampled frames of one video, so decoding overlaps the model) and embeds each chunk with the encoder.

Bad videos are skipped, counted and listed with a reason, never scored as zeros:

- the file cannot be opened or decoded (decord error), or decodes to zero frames;
- its decoded frame count disagrees with its labels by more than `max(FRAME_TOLERANCE, FRAME_TOLERANCE_FRACTION *
  labelled frames)`, i.e. more than 2 frames *and* more than 2% of the labelled length. Within that tolerance the
  labels are trusted frame by frame from the start: sampled frames past the decoded end are dropped with their
  labels, decoded frames past the labelled end are never sampled;
- no labelled (scorable) frame remains after sampling (reported by the protocol).

Sampling (`sampling`): `"fps"` samples at `fps` as above; `"labelled"` takes exactly the frames that carry a label
(`VideoAnnotation.labelled_frames()`), for datasets whose labels are sparse (CaDIS: one mask every 10 frames; a 1-fps
grid would miss most of them). With `"labelled"` the labels only bound the video's length from below, so the frame
count check is one-sided: the video may be longer than its last labelled frame, not shorter (beyond the tolerance).

Datasets published as still images (`VideoAnnotation.frame_files`) are read image by image (Pillow) instead of
through decord; each image is preprocessed on its own (their sizes may differ).
"""

from dataclasses import dataclass, field

import numpy as np
import torch
from modeling_ophclip.video_processing_ophclip import fps_frame_indices

from ..models import preprocess_frames
from ..progress import progress_bar
from ..spec import IGNORE_INDEX, VideoAnnotation
from .common import load_split
from .defaults import SAMPLINGS


FRAME_TOLERANCE = 2
FRAME_TOLERANCE_FRACTION = 0.02


def frame_count_problem(decoded: int, labelled: int, at_least: bool = False) -> str | None:
    """Why a video whose container has `decoded` frames cannot carry labels for `labelled` frames, or None.
    `at_least=True`: the labels only bound the length from below (sparse labels), so a longer video is fine."""
    if decoded <= 0:
        return "the video decodes to zero frames"
    tolerance = max(FRAME_TOLERANCE, FRAME_TOLERANCE_FRACTION * labelled)
    if (labelled - decoded if at_least else abs(decoded - labelled)) > tolerance:
        return (f"frame count mismatch: the video has {decoded} frames but its labels cover {labelled} "
                f"(tolerance {tolerance:g})")
    return None


def sample_frame_indices(num_frames: int, video_fps: float, fps: float | None) -> np.ndarray:
    """Native frame indices at times 0, 1/fps, 2/fps, ... (the processor's `fps_frame_indices`; every frame when
    `fps` is None). The labelled frame count and rate come from the annotations, never from the container."""
    if fps is None:
        return np.arange(num_frames)
    return np.unique(np.asarray(fps_frame_indices(num_frames, video_fps, fps), dtype=np.int64))


def _short(error: Exception, limit: int = 200) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


class FrameChunks(torch.utils.data.Dataset):
    """Chunks of sampled frames: item i decodes and preprocesses `chunk_size` sampled frames of one video.

    Returns `{"video": int, "start": int, "positions": LongTensor, "pixel_values": (n, 3, H, W)}` or, when the video
    cannot be used, `{"video", "start", "error": str}`. Each worker keeps the reader of the last video it opened, so
    consecutive chunks of a video are not re-indexed.
    """

    def __init__(self, paths, labelled_frames, frame_indices, video_processor, chunk_size: int = 32,
                 frame_files=None, at_least: bool = False):
        self.paths = [str(p) for p in paths]
        self.frame_files = list(frame_files) if frame_files is not None else [None] * len(self.paths)
        self.at_least = at_least
        self.labelled_frames = list(labelled_frames)
        self.frame_indices = [np.asarray(ix, dtype=np.int64) for ix in frame_indices]
        self.video_processor = video_processor
        self.items = [(v, start) for v, ix in enumerate(self.frame_indices) for start in range(0, len(ix), chunk_size)]
        self.chunk_size = chunk_size
        self._reader = (None, None)

    def __len__(self):
        return len(self.items)

    def _open(self, video: int):
        if self._reader[0] != video:
            from decord import VideoReader, cpu

            self._reader = (None, None)  # a failed open must not leave the previous reader in place
            self._reader = (video, VideoReader(self.paths[video], ctx=cpu(0), num_threads=1))
        return self._reader[1]

    def __getitem__(self, i):
        video, start = self.items[i]
        item = {"video": video, "start": start}
        if self.frame_files[video] is not None:
            return self._images(item, video, start)
        try:
            reader = self._open(video)
        except Exception as error:  # decord raises RuntimeError/DECORDError for unreadable files
            return {**item, "error": f"cannot decode the video: {_short(error)}"}
        problem = frame_count_problem(len(reader), self.labelled_frames[video], self.at_least)
        if problem:
            return {**item, "error": problem}
        indices = self.frame_indices[video][start : start + self.chunk_size]
        keep = indices < len(reader)
        if not keep.any():
            return {**item, "positions": torch.empty(0, dtype=torch.long), "pixel_values": None}
        try:
            frames = reader.get_batch(indices[keep].tolist()).asnumpy()
        except Exception as error:
            return {**item, "error": f"cannot decode frames {indices[keep][[0, -1]].tolist()}: {_short(error)}"}
        positions = torch.arange(start, start + len(indices))[torch.from_numpy(keep)]
        return {**item, "positions": positions, "pixel_values": preprocess_frames(self.video_processor, frames)}

    def _images(self, item: dict, video: int, start: int) -> dict:
        from PIL import Image

        indices = self.frame_indices[video][start : start + self.chunk_size]
        pixels = []
        for index in indices.tolist():
            path = self.frame_files[video][index]
            try:
                with Image.open(path) as image:
                    frame = np.array(image.convert("RGB"))
            except (OSError, ValueError) as error:
                return {**item, "error": f"cannot read frame image {path}: {_short(error)}"}
            pixels.append(preprocess_frames(self.video_processor, frame[None]))
        positions = torch.arange(start, start + len(indices))
        return {**item, "positions": positions, "pixel_values": torch.cat(pixels)}


@dataclass
class VideoFeatures:
    """Sampled frames of one video: native `frame_indices`, their `features` (n, D) and `labels` (n,) or (n, C)."""

    annotation: VideoAnnotation
    frame_indices: np.ndarray
    features: np.ndarray
    labels: np.ndarray

    @property
    def video_id(self) -> str:
        return self.annotation.video_id


@dataclass
class FrameFeatures:
    """The result of `extract_frame_features`: usable videos in benchmark order, and the skipped ones with reasons."""

    videos: list[VideoFeatures]
    skipped: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0


def _labels(annotation: VideoAnnotation) -> np.ndarray:
    return annotation.labels


def extract_frame_features(encoder, annotations: list[VideoAnnotation], fps: float | None = 1.0,
                           batch_size: int = 32, num_workers: int = 0, prefetch_factor: int = 2,
                           sampling: str = "fps") -> FrameFeatures:
    """Embed the frames of every video sampled at `fps` (`sampling="fps"`) or exactly its labelled frames
    (`sampling="labelled"`); see the module docstring for what is skipped and why."""
    import time

    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    began = time.perf_counter()
    if sampling == "labelled":
        indices = [a.labelled_frames() for a in annotations]
    else:
        indices = [sample_frame_indices(a.num_frames, a.fps, fps) for a in annotations]
    dataset = FrameChunks([a.path for a in annotations], [a.num_frames for a in annotations], indices,
                          encoder.video_processor, chunk_size=batch_size,
                          frame_files=[a.frame_files for a in annotations], at_least=sampling == "labelled")
    device = getattr(encoder, "device", None)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=num_workers,
        prefetch_factor=prefetch_factor if num_workers else None,
        pin_memory=device is not None and torch.device(device).type == "cuda",
    )
    features: dict[int, np.ndarray] = {}
    filled: dict[int, np.ndarray] = {}
    skipped: dict[int, str] = {}
    bar = progress_bar(loader, total=len(dataset), desc=f"frames of {len(annotations)} videos", unit="chunk")
    for item in bar:
        video = item["video"]
        if video in skipped:
            continue
        if "error" in item:
            skipped[video] = item["error"]
            continue
        if item["pixel_values"] is None:
            continue
        embeds = encoder.encode_frames(item["pixel_values"]).numpy()
        if video not in features:
            features[video] = np.zeros((len(indices[video]), embeds.shape[1]), dtype=np.float32)
            filled[video] = np.zeros(len(indices[video]), dtype=bool)
        features[video][item["positions"].numpy()] = embeds
        filled[video][item["positions"].numpy()] = True

    result = FrameFeatures(videos=[])
    for v, annotation in enumerate(annotations):
        if v in skipped:
            result.skipped[annotation.video_id] = skipped[v]
            continue
        if v not in features:
            result.skipped[annotation.video_id] = "no sampled frame could be decoded"
            continue
        keep = filled[v]
        frame_indices = indices[v][keep]
        result.videos.append(VideoFeatures(annotation, frame_indices, features[v][keep],
                                           _labels(annotation)[frame_indices]))
        result.frames += int(keep.sum())
    result.seconds = time.perf_counter() - began
    return result


def scorable(video: VideoFeatures) -> np.ndarray:
    """Mask of the sampled frames that carry a label (phase != IGNORE_INDEX, or any known instrument label)."""
    if video.labels.ndim == 1:
        return video.labels != IGNORE_INDEX
    return ~np.isnan(video.labels).all(axis=1)


def split_frame_features(encoder, spec, root, split: str, *, fps: float, batch_size: int, num_workers: int,
                         sampling: str):
    """The labelled frames of one split of a benchmark, embedded: `(extracted, skipped, notes)` with the
    `FrameFeatures` of the kept videos, the videos the loader or the decoding skipped (`{video_id: reason}`) and the
    loader's notes on kept videos."""
    notes = {}
    annotations, skipped = load_split(spec, root, split, notes)
    extracted = extract_frame_features(encoder, annotations, fps=fps, batch_size=batch_size, num_workers=num_workers,
                                       sampling=sampling)
    skipped.update(extracted.skipped)
    return extracted, skipped, notes


__all__ = [
    "FRAME_TOLERANCE",
    "FRAME_TOLERANCE_FRACTION",
    "FrameChunks",
    "FrameFeatures",
    "SAMPLINGS",
    "VideoFeatures",
    "extract_frame_features",
    "frame_count_problem",
    "sample_frame_indices",
    "scorable",
    "split_frame_features",
]
