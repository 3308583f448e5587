"""What every command shares: errors, output checks, the device, loading a model, text and frame embeddings."""

import os
import sys
from pathlib import Path


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DEFAULT_TEMPLATE = "a surgical video of {}."


class CLIError(Exception):
    """An error to report as one line and exit 1."""


def _check_output(path, overwrite: bool, suffixes: tuple[str, ...] | None = None) -> Path:
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise CLIError(f"output {str(path)!r} must end with one of {', '.join(suffixes)}")
    if path.exists() and not overwrite:
        raise CLIError(f"output {str(path)!r} already exists; pass --overwrite to replace it")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _device(name: str | None):
    import torch

    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_ophclip(model_id: str, device=None, attn_implementation: str | None = None):
    """Load an OphCLIP model and processor from a folder or Hub id; refuse checkpoints of other architectures."""
    from evaluate_suite.model_path import ModelPathError, read_model_config

    try:
        config_dict = read_model_config(model_id)
    except ModelPathError as error:
        raise CLIError(str(error)) from None
    model_type = config_dict.get("model_type")
    if model_type != "ophclip":
        raise CLIError(f"{model_id!r} is not an OphCLIP checkpoint (config model_type is {model_type!r}, expected 'ophclip')")

    from modeling_ophclip import OphCLIPModel, OphCLIPProcessor

    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        model = OphCLIPModel.from_pretrained(model_id, **kwargs)
    except Exception as error:
        raise CLIError(f"cannot load the OphCLIP model from {model_id!r}: {error}") from None
    try:
        processor = OphCLIPProcessor.from_pretrained(model_id)
    except Exception as error:
        raise CLIError(f"cannot load the OphCLIP processor (tokenizer + video processor) from {model_id!r}: {error}") from None
    model.to(_device(device)).eval()
    return model, processor


class _silence_stderr:
    """Send file descriptor 2 to /dev/null for a while: FFmpeg and decord log failures from C, on several lines."""

    def __enter__(self):
        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except (OSError, ValueError):
            self._saved = None
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        return False


def _frames_to_pixels(processor, frames, model):
    """Decoded `(T, H, W, 3)` frames -> preprocessed `(T, 3, h, w)` on the model's device."""
    pixel_values = processor.video_processor(frames, return_tensors="pt")["pixel_values_videos"][0]
    return pixel_values.to(device=model.device, dtype=model.dtype)


def encode_texts(model, processor, texts: list[str]):
    """L2-normalised text embeddings `(len(texts), D)`."""
    import torch
    import torch.nn.functional as F

    inputs = processor(text=texts, return_tensors="pt")
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    with torch.no_grad():
        return F.normalize(model.get_text_features(**inputs).pooler_output.float(), dim=-1)


def encode_frames(model, processor, frames):
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        pixels = _frames_to_pixels(processor, frames, model)
        return F.normalize(model.get_image_features(pixels).pooler_output.float(), dim=-1)


def frame_embeddings(model, processor, reader, fps: float, batch_size: int, progress=None):
    """`(embeddings, times)`: the normalised embeddings `(N, D)` (on the CPU) of a video's frames sampled at `fps`,
    `batch_size` frames per forward, and their times in seconds; `progress(frames done)` after each batch."""
    import torch

    from .video import iter_fps_frames

    embeds, times = [], []
    for _, batch_times, frames in iter_fps_frames(reader, fps, batch_size):
        embeds.append(encode_frames(model, processor, frames).cpu())
        times.extend(batch_times)
        if progress is not None:
            progress(len(times))
    return torch.cat(embeds), times
