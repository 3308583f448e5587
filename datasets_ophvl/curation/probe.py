"""Stage `probe`: open each file with PyAV, learn its duration, size, rate and audio, and refuse what cannot be used.

Refused, each with its own counted reason: files the build may not read (`unreadable (permission denied)`); files
PyAV cannot open; files without a video stream (audio only); videos whose frames have more than `max_pixels` pixels
(checked from the stream's header before any frame is decoded: one 8192x8192 frame decodes to 200 MB); files whose
video stream has no packets or no decodable frame (zero-frame or corrupt); truncated files (their packets end well
before the duration the header claims); videos shorter or longer than the limits; videos whose short side is below
the minimum resolution.

The duration is measured from the video packets (last timestamp + its duration), not taken from the header, because
headers of cut or remuxed files are often wrong; reading packets does not decode them and costs little next to the
decoding later stages do.
"""

from dataclasses import dataclass

from ..media import MAX_FRAME_PIXELS
from .base import BaseStage, ProbeInfo, Skip, VideoItem, describe_os_error, setting


@dataclass
class ProbeSettings:
    min_duration: float = setting(5.0, "shortest video kept, in seconds")
    max_duration: float = setting(4 * 3600.0, "longest video kept, in seconds")
    min_short_side: int = setting(112, "smallest short side (pixels) kept; clips are re-encoded at encode.clip_short_side")
    max_pixels: int = setting(
        MAX_FRAME_PIXELS, "largest frame (width x height) decoded; larger videos are skipped before decoding"
    )
    truncation_tolerance: float = setting(
        0.1, "a file whose packets end more than this fraction (and 1 s) before its header's duration is truncated"
    )

    def __post_init__(self):
        if not self.max_pixels > 0:
            raise ValueError(f"probe.max_pixels must be positive, got {self.max_pixels!r}")


class ProbeError(Exception):
    """The file cannot be used; the message is the reason that gets counted."""


def probe_media(path, max_pixels: int | None = None) -> tuple[ProbeInfo, float | None]:
    """Return the file's `ProbeInfo` and the duration its header declares (None when it declares none).

    Raises `ProbeError(reason)` for unusable files, among them videos whose frames (as the stream's header gives
    their size) have more than `max_pixels` pixels, before any of their frames is decoded.
    """
    import av

    try:
        container = av.open(str(path))
    except PermissionError:  # av.error.PermissionError is one too (EACCES from FFmpeg)
        raise ProbeError("unreadable (permission denied)") from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as error:
        if isinstance(error, OSError) and describe_os_error(error) == "permission denied":
            raise ProbeError("unreadable (permission denied)") from None
        raise ProbeError("unreadable (not a media file PyAV can open)") from None
    with container:
        if not container.streams.video:
            raise ProbeError("no video stream (audio-only file)" if container.streams.audio else "no video stream")
        stream = container.streams.video[0]
        header_width, header_height = stream.codec_context.width, stream.codec_context.height
        if max_pixels is not None and header_width * header_height > max_pixels:
            raise ProbeError("frames larger than probe.max_pixels")
        has_audio = bool(container.streams.audio)
        time_base = stream.time_base
        origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
        last_end, packets = None, 0
        try:
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue  # the flushing packet at the end of the stream
                packets += 1
                end = float((packet.pts + (packet.duration or 0)) * time_base)
                last_end = end if last_end is None else max(last_end, end)
        except av.error.FFmpegError:
            raise ProbeError("corrupt (demuxing failed)") from None
        if packets == 0 or last_end is None:
            raise ProbeError("no video frames")
        duration = last_end - origin
        declared = container.duration / 1_000_000 if container.duration else None
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else (packets / duration if duration > 0 else 0.0)
    # Decode the first frame: a stream whose packets are garbage opens and demuxes fine but decodes nothing. The file
    # is opened again rather than rewound because not every container seeks back to 0.
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(container.streams.video[0]), None)
    except av.error.FFmpegError:
        frame = None
    if frame is None:
        raise ProbeError("corrupt (no decodable video frame)")
    if max_pixels is not None and frame.width * frame.height > max_pixels:  # a header that gave no or a wrong size
        raise ProbeError("frames larger than probe.max_pixels")
    width, height = width or frame.width, height or frame.height
    return ProbeInfo(duration=duration, width=width, height=height, fps=fps, has_audio=has_audio,
                     video_frames=packets), declared


class ProbeStage(BaseStage):
    """Probe the file and filter by readability, duration and resolution."""

    name = "probe"
    Settings = ProbeSettings

    def __call__(self, item: VideoItem):
        try:
            info, declared = probe_media(item.path, self.settings.max_pixels)
        except ProbeError as error:
            return Skip(str(error))
        s = self.settings
        if declared and declared - info.duration > max(1.0, s.truncation_tolerance * declared):
            return Skip("truncated (packets end before the declared duration)")
        if info.duration <= 0 or info.fps <= 0:
            return Skip("no video frames")
        if info.duration < s.min_duration:
            return Skip("shorter than probe.min_duration")
        if info.duration > s.max_duration:
            return Skip("longer than probe.max_duration")
        if min(info.width, info.height) < s.min_short_side:
            return Skip("resolution below probe.min_short_side")
        item.probe = info
        return item
