"""Reading videos and images: decoding in batches at a frame rate, finding the videos of a folder."""

import os
from pathlib import Path

from .common import CLIError, VIDEO_EXTENSIONS, _silence_stderr


def open_video(path):
    """A decord `VideoReader` for `path`, or a CLIError that says why it cannot be read."""
    try:
        from decord import VideoReader, cpu
    except ImportError:
        raise CLIError("reading videos needs decord: pip install decord") from None
    path = str(path)
    if not os.path.isfile(path):
        raise CLIError(f"video {path!r} does not exist")
    try:
        with _silence_stderr():
            reader = VideoReader(path, ctx=cpu(0), num_threads=1)
        if len(reader) == 0:
            raise ValueError("no frames")
        fps = reader.get_avg_fps()
    except CLIError:
        raise
    except Exception as error:
        raise CLIError(f"cannot read video {path!r}: {' '.join(str(error).split())[:200]}") from None
    if not fps or fps <= 0:
        raise CLIError(f"video {path!r} reports a frame rate of {fps}")
    return reader


def iter_fps_frames(reader, fps: float, batch_size: int):
    """Yield `(indices, times, frames)` batches of the frames at 0, 1/fps, 2/fps, ... without decoding them all."""
    from modeling_ophclip.video_processing_ophclip import fps_frame_indices

    video_fps = reader.get_avg_fps()
    indices = fps_frame_indices(len(reader), video_fps, fps)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        frames = reader.get_batch(chunk).asnumpy()
        yield chunk, [i / video_fps for i in chunk], frames


def _collect_videos(inputs: list[str]) -> list[Path]:
    """The videos named or found (recursively) in folders, each once (a file given with its folder is not taken
    twice), in the order given."""
    videos, seen = [], set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise CLIError(f"folder {item!r} holds no video ({', '.join(VIDEO_EXTENSIONS)})")
        else:
            found = [path]
        for video in found:
            key = video.resolve()
            if key not in seen:
                seen.add(key)
                videos.append(video)
    return videos


def _read_image(path: Path):
    import numpy as np

    try:
        from PIL import Image

        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except ImportError:
        pass
    except Exception as error:
        raise CLIError(f"cannot read image {str(path)!r}: {error}") from None
    try:
        import matplotlib.image as mpimg

        image = mpimg.imread(str(path))
    except Exception as error:
        raise CLIError(f"cannot read image {str(path)!r}: {' '.join(str(error).split())}") from None
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3]
