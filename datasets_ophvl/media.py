"""Encoding frames to the mp4 bytes stored in OphVL shards (PyAV, H.264, in memory), and the frame-size cap that
decoding checks first.

Decoding allocates width x height x 3 bytes per RGB frame whatever the file's size: a 200 KB mp4 holding one
8192x8192 frame decodes to 200 MB, and 8 sampled frames to 1.5 GiB. So readers look at the frame size the file's
header declares before decoding anything (`video_frame_size`) and skip videos above `max_frame_pixels()`.
"""

import io
import os
import struct

import numpy as np


# The default cap: 4096 x 4096 pixels, which admits 4K (3840x2160 and 4096x2160) sources; 8 RGB frames at the cap
# take 400 MB. Change it per call (`max_pixels=`), with `--set probe.max_pixels=N` in the build, or for every reader
# of a process (DataLoader workers included) with the environment variable below.
MAX_FRAME_PIXELS = 4096 * 4096
MAX_FRAME_PIXELS_ENV = "OPHVL_MAX_FRAME_PIXELS"


def max_frame_pixels(max_pixels: int | None = None) -> int:
    """The frame-size cap in pixels: `max_pixels` when given, else `$OPHVL_MAX_FRAME_PIXELS`, else
    `MAX_FRAME_PIXELS`."""
    source = "max_pixels"
    if max_pixels is None:
        text = os.environ.get(MAX_FRAME_PIXELS_ENV, "").strip()
        if not text:
            return MAX_FRAME_PIXELS
        source = MAX_FRAME_PIXELS_ENV
        try:
            max_pixels = int(text)
        except ValueError:
            raise ValueError(f"{MAX_FRAME_PIXELS_ENV}={text!r}; expected a positive whole number of pixels") from None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"{source}={max_pixels!r}; expected a positive whole number of pixels")
    return max_pixels


_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _boxes(data: bytes, start: int, end: int):
    """`(type, payload start, payload end)` of the ISO-BMFF boxes in `data[start:end]`; stops at a malformed box."""
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            if start + 16 > end:
                return
            size, header = struct.unpack_from(">Q", data, start + 8)[0], 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            return
        yield kind, start + header, start + size
        start += size


def mp4_frame_size(data: bytes) -> tuple[int, int] | None:
    """`(width, height)` of the largest video sample entry an MP4/MOV file declares (its `stsd` boxes), read from
    the header without decoding; None when `data` is not such a file or declares no video track."""
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data)
    found = None

    def handler_type(start, end):
        for kind, payload, stop in _boxes(data, start, end):
            if kind == b"mdia":
                for inner, inner_payload, inner_stop in _boxes(data, payload, stop):
                    if inner == b"hdlr" and inner_stop - inner_payload >= 12:
                        return bytes(data[inner_payload + 8:inner_payload + 12])
        return None

    def visit(start, end, handler, depth):
        nonlocal found
        if depth > 8:  # moov/trak/mdia/minf/stbl is 5 deep: boxes nested deeper are not a real file's
            return
        for kind, payload, stop in _boxes(data, start, end):
            if kind == b"trak":
                visit(payload, stop, handler_type(payload, stop), depth + 1)
            elif kind in _CONTAINERS:
                visit(payload, stop, handler, depth + 1)
            elif kind == b"stsd" and handler == b"vide" and stop - payload >= 8:
                # full box header (4), entry count (4), then sample entries: box header (8), reserved (6),
                # data reference index (2), pre-defined and reserved (16), width (2), height (2)
                for _, entry, entry_end in _boxes(data, payload + 8, stop):
                    if entry_end - entry >= 28:
                        width, height = struct.unpack_from(">HH", data, entry + 24)
                        if found is None or width * height > found[0] * found[1]:
                            found = (width, height)

    visit(0, len(data), None, 0)
    return found


def video_frame_size(data: bytes) -> tuple[int, int] | None:
    """`(width, height)` of the frames of the video in `data` as its header declares them, decoding nothing when
    the file is an MP4/MOV (`mp4_frame_size`); other containers are asked through PyAV when it is installed (which
    may decode one frame). None when neither can tell."""
    size = mp4_frame_size(data)
    if size is not None:
        return size
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                return None
            codec = container.streams.video[0].codec_context
            return (codec.width, codec.height) if codec.width and codec.height else None
    except Exception:  # noqa: BLE001 - not readable here: the decoder says why when it tries
        return None


def encode_video(frames: np.ndarray, fps: float, crf: int = 23, preset: str = "veryfast", threads: int = 1) -> bytes:
    """Encode RGB frames `(T, H, W, 3)` uint8 as an H.264 mp4 held in memory.

    H.264 with yuv420p needs even sides; odd frame sizes are cropped by one pixel. The output is byte-reproducible for
    a given FFmpeg/x264 build: x264's macroblock-tree rate control (on by default) gave different bytes for the same
    frames from run to run (2-14 distinct outputs in 400 encodes of a small clip; none with `mbtree=0`), and one
    thread keeps the bytes independent of the core count. Pass `threads=0` (x264 picks) for speed on large videos.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty (T, H, W, 3) uint8 array, got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    if height == 0 or width == 0:
        raise ValueError(f"frames of {frames.shape[1]}x{frames.shape[2]} pixels are too small to encode")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=_as_rate(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset, "threads": str(threads), "x264-params": "mbtree=0"}
        for frame in frames:
            image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def _as_rate(fps: float):
    from fractions import Fraction

    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return Fraction(fps).limit_denominator(1001)
