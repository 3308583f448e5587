"""Stage `encode`: plan the samples of a video and render them, re-encoded at training resolution and rate.

Decoding dominates CPU cost, so shards hold short clips already at the size and rate training reads
(`reference/hf-stack.md` §9):

- `clips`: every clip of a narrated video, short side `clip_short_side` (224), at the source rate capped at
  `clip_max_fps` (8 fps);
- `videos` (narrated) and `silent`: the whole video at short side `video_short_side` (128) and `video_fps` (1 fps),
  lowered for long videos so that no sample has more than `video_max_frames` frames (this also bounds memory: frames
  are held until the sample is encoded).

All samples of a video come from one forward decoding pass with PyAV, which skips ahead with a seek when the next
sample starts more than `seek_gap_seconds` after the current position (narration often leaves long unnarrated
stretches). For a time t the frame shown at t is taken (the first frame starting within half a source frame of it).
Frames are scaled by PyAV's own scaler (swscale, area averaging; measured ~7x faster than torch's antialiased
interpolation at 720p) to even sizes with the aspect ratio kept, never upscaled unless `upscale` is set, and encoded
with `media.encode_video` (H.264 in mp4), whose output is byte-reproducible (MB-tree off, one thread), so a resumed
build gives the same bytes as an uninterrupted one.

Rendering is lazy: `item.samples` yields `(SampleRequest, mp4 bytes)` as the pass reaches the end of each sample,
so the writer stores clips while the pass goes on. Samples already in the shards (a resumed build) are not rendered.
A sample that gets no frame, or that a decoding error cuts short, is dropped and counted.
"""

import logging
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..format import make_key
from ..media import encode_video
from .base import BaseStage, SampleRequest, VideoItem, setting


logger = logging.getLogger(__name__)


@dataclass
class EncodeSettings:
    clip_short_side: int = setting(224, "short side of clip samples, in pixels")
    clip_max_fps: float = setting(8.0, "highest frame rate of clip samples (the source rate when lower)")
    video_short_side: int = setting(128, "short side of whole-video samples (videos and silent), in pixels")
    video_fps: float = setting(1.0, "frame rate of whole-video samples")
    video_max_frames: int = setting(1024, "most frames in a whole-video sample (the rate drops for long videos)")
    upscale: bool = setting(False, "scale sources smaller than the target size up (default: keep their size)")
    crf: int = setting(23, "H.264 quality (lower is better and larger)")
    preset: str = setting("veryfast", "x264 speed preset (slower presets give smaller files)")
    seek_gap_seconds: float = setting(8.0, "seek instead of decoding through gaps longer than this between samples")

    def __post_init__(self):
        for name in ("clip_short_side", "clip_max_fps", "video_short_side", "video_fps", "video_max_frames"):
            if not getattr(self, name) > 0:
                raise ValueError(f"encode.{name} must be positive, got {getattr(self, name)!r}")


def output_size(width: int, height: int, short_side: int, upscale: bool = False) -> tuple[int, int]:
    """`(width, height)` with the short side at `short_side` (not above the source's unless `upscale`), both even."""
    scale = short_side / min(width, height)
    if scale > 1 and not upscale:
        scale = 1.0
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


@dataclass
class _Job:
    """A sample being collected: its output size and the frames taken so far."""

    request: SampleRequest
    size: tuple[int, int]
    frames: list

    @property
    def next_time(self) -> float:
        # From the frame count, not by adding 1/fps up: no drift over long whole-video samples.
        return self.request.start + len(self.frames) / self.request.fps


class EncodeStage(BaseStage):
    """Plan clips / videos / silent samples and render them from one decoding pass."""

    name = "encode"
    requires = ("probe",)
    Settings = EncodeSettings

    def __init__(self, settings=None, **overrides):
        super().__init__(settings, **overrides)
        self.progress = False  # set by the build; a display option, not a setting (it changes no output)

    def plan(self, item: VideoItem) -> list[SampleRequest]:
        """The samples of a video (see the module docstring)."""
        s, info = self.settings, item.probe
        whole_fps = min(s.video_fps, s.video_max_frames / max(info.duration, 1e-6), info.fps)
        requests = []
        if item.silent:
            record = {"video_id": item.video_id, "duration": round(info.duration, 3), "title": item.display_title}
            requests.append(SampleRequest("silent", item.key, record, 0.0, info.duration, whole_fps, s.video_short_side))
            return requests
        clip_fps = min(info.fps, s.clip_max_fps)
        for index, clip in enumerate(item.clips):
            record = {"video_id": item.video_id, "start": round(clip.start, 3), "end": round(clip.end, 3),
                      "narration": clip.narration, "sentence_ids": list(clip.sentence_ids)}
            requests.append(SampleRequest("clips", make_key(item.key, index), record, clip.start, clip.end, clip_fps,
                                          s.clip_short_side))
        if item.title_summary:
            record = {"video_id": item.video_id, "duration": round(info.duration, 3), "title": item.display_title,
                      "title_summary": item.title_summary}
            requests.append(SampleRequest("videos", item.key, record, 0.0, info.duration, whole_fps, s.video_short_side))
        else:
            item.drop("videos sample dropped: no title summary")
        return requests

    def __call__(self, item: VideoItem):
        item.requests = self.plan(item)
        pending = [r for r in item.requests if not item.already_written(r.subset, r.key)]
        item.samples = self.render(item, pending) if pending else iter(())
        return item

    def render(self, item: VideoItem, requests: list[SampleRequest]):
        """Yield `(request, mp4 bytes)` for `requests` from one forward pass over `item.path`."""
        import av

        s, info = self.settings, item.probe
        half_frame = 0.5 / info.fps
        queue = deque(sorted(requests, key=lambda r: (r.start, r.end)))
        active: list[_Job] = []
        position, seeked_to, failed = 0.0, -math.inf, False
        progress = _progress(self.progress and info.duration > 60, info.duration, item.video_id)
        with av.open(str(item.path)) as container, progress:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads: a forward pass decodes every frame
            origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
            exhausted = False
            while (queue or active) and not exhausted and not failed:
                if not active and queue and queue[0].start - position > s.seek_gap_seconds and queue[0].start > seeked_to:
                    seeked_to = queue[0].start
                    logger.debug("%s: seeking from %.2f s to %.2f s", item.path, position, seeked_to)
                    container.seek(int((seeked_to + origin) / stream.time_base), stream=stream, backward=True)
                exhausted = True
                try:
                    for frame in container.decode(stream):
                        if frame.time is None:
                            continue
                        t = frame.time - origin
                        progress.update(max(0.0, t - position))
                        position = t
                        while queue and queue[0].start <= t + half_frame:
                            r = queue.popleft()
                            size = output_size(frame.width, frame.height, r.short_side, s.upscale)
                            active.append(_Job(r, size, []))
                        scaled = {}
                        for job in active:
                            while job.next_time <= t + half_frame and job.next_time < job.request.end:
                                if job.size not in scaled:
                                    scaled[job.size] = frame.reformat(width=job.size[0], height=job.size[1], format="rgb24",
                                                                      interpolation="AREA").to_ndarray()
                                job.frames.append(scaled[job.size])
                        for job in [j for j in active if j.next_time >= j.request.end or t >= j.request.end]:
                            active.remove(job)
                            yield from self._finish(job, item)
                        if not active and queue and queue[0].start - t > s.seek_gap_seconds and queue[0].start > seeked_to:
                            exhausted = False  # leave the loop to seek ahead
                            break
                except av.error.FFmpegError as error:
                    logger.warning("%s: decoding stopped at %.1f s: %s", item.path, position, error)
                    failed = True
        # The stream ended (or broke): samples running to the end are complete unless decoding failed.
        for job in active:
            if failed:
                item.drop(f"{job.request.subset} sample dropped: decoding error")
            else:
                yield from self._finish(job, item)
        for request in queue:
            item.drop(f"{request.subset} sample dropped: " + ("decoding error" if failed else "no frames decoded"))

    def _finish(self, job: _Job, item: VideoItem):
        if not job.frames:
            item.drop(f"{job.request.subset} sample dropped: no frames decoded")
            return
        data = encode_video(np.stack(job.frames), job.request.fps, crf=self.settings.crf, preset=self.settings.preset)
        job.frames.clear()
        yield job.request, data


class _NoProgress:
    def update(self, n):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool, total: float, name: str):
    if not enabled:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=round(total, 1), unit="s", desc=f"encode {name}", leave=False,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s")
