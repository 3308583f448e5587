"""Video processor for OphCLIP: frame sampling, decoding and torch-only resize / crop / normalise.

transformers' `BaseVideoProcessor` and `AutoVideoProcessor` need torchvision, whose PyPI builds need CUDA and do not
import against a CPU torch. This processor therefore derives from the backend-free `VideoProcessorMixin` and does its
transforms with `torch.nn.functional`. Decoding uses decord, imported lazily inside a `try:` so that loading with
`trust_remote_code=True` does not require it (transformers checks every import of a remote-code file).
"""

import io
import os
from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from transformers.video_processing_utils import VideoProcessorMixin


def uniform_frame_indices(total_frames: int, num_frames: int) -> list[int]:
    """Indices of the centre frames of `num_frames` equal segments of a video of `total_frames` frames."""
    if total_frames <= 0:
        raise ValueError(f"cannot sample frames from a video with {total_frames} frames.")
    edges = np.linspace(0, total_frames, num_frames + 1)
    return ((edges[:-1] + edges[1:]) / 2).astype(np.int64).clip(0, total_frames - 1).tolist()


def fps_frame_indices(total_frames: int, video_fps: float, fps: float, max_frames: int | None = None) -> list[int]:
    """Indices of the frames at times 0, 1/fps, 2/fps, ... (at most `max_frames`, spread uniformly if more)."""
    if total_frames <= 0:
        raise ValueError(f"cannot sample frames from a video with {total_frames} frames.")
    if not video_fps or video_fps <= 0:
        raise ValueError(f"the video reports a frame rate of {video_fps}; cannot sample at {fps} fps.")
    duration = total_frames / video_fps
    times = np.arange(0.0, duration, 1.0 / fps)
    indices = np.minimum(np.round(times * video_fps).astype(np.int64), total_frames - 1)
    if max_frames is not None and len(indices) > max_frames:
        indices = indices[uniform_frame_indices(len(indices), max_frames)]
    return indices.tolist()


def _size_dict(size, name: str) -> dict | None:
    if size is None:
        return None
    if isinstance(size, int):
        return {"shortest_edge": size} if name == "size" else {"height": size, "width": size}
    if isinstance(size, dict) and (set(size) == {"shortest_edge"} or set(size) == {"height", "width"}):
        return dict(size)
    raise ValueError(f"{name} must be an int, {{'shortest_edge': int}} or {{'height': int, 'width': int}}, got {size!r}.")


# Reuse transformers' annotations (and their validators) for the keys OphCLIP shares with every video processor.
_SHARED = VideosKwargs.__annotations__


class OphCLIPVideosKwargs(TypedDict, total=False):
    """The keyword arguments [`OphCLIPVideoProcessor`] accepts at call time (each overrides the attribute of the same
    name for one call; `None` keeps the attribute). [`OphCLIPProcessor`] routes them to the video processor.

    do_sample_frames (`bool`, *optional*):
        `None` (default): sample frames when decoding a path, file object or `bytes`, and use already-decoded frames
        as given. `True`: also sample already-decoded frames (uniformly; `fps` needs the source frame rate, so it only
        applies to files). `False`: decode every frame of a file.
    num_frames, fps, max_frames: frame sampling (see [`OphCLIPVideoProcessor`]).
    do_resize, size, do_center_crop, crop_size, do_rescale, rescale_factor, do_normalize, image_mean, image_std:
        the transforms.
    return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"` or `"np"`.
    """

    do_sample_frames: bool | None
    num_frames: _SHARED["num_frames"]
    fps: _SHARED["fps"]
    max_frames: _SHARED["num_frames"]
    do_resize: _SHARED["do_resize"]
    size: _SHARED["size"]
    do_center_crop: _SHARED["do_center_crop"]
    crop_size: _SHARED["crop_size"]
    do_rescale: _SHARED["do_rescale"]
    rescale_factor: _SHARED["rescale_factor"]
    do_normalize: _SHARED["do_normalize"]
    image_mean: _SHARED["image_mean"]
    image_std: _SHARED["image_std"]
    return_tensors: _SHARED["return_tensors"]


class OphCLIPVideoProcessor(VideoProcessorMixin):
    r"""
    Turns videos into `pixel_values_videos` `(batch, frames, 3, H, W)` and a `frame_mask` `(batch, frames)`.

    A video is a path, a file object, raw `bytes` (decoded with decord and sampled), or already-decoded frames
    (a `(T, H, W, 3)` / `(T, 3, H, W)` array or tensor, or a list of `(H, W, 3)` frames), which are used as given.
    Videos of different lengths are zero-padded to the longest and the padding is marked 0 in `frame_mask`; every
    video has at least one frame, so every row of `frame_mask` has a 1 (the model relies on it).

    Every argument below is also accepted at call time for one call (see [`OphCLIPVideosKwargs`]), e.g.
    `video_processor(videos, num_frames=16, do_normalize=False)`.

    Args:
        num_frames (`int`, *optional*, defaults to 8):
            Frames sampled per decoded video: the centres of `num_frames` equal segments.
        fps (`float`, *optional*):
            If set, sample frames at this rate instead (e.g. 1.0 for the 1-fps evaluation protocol), at most
            `max_frames` of them.
        max_frames (`int`, *optional*):
            Cap on the number of frames sampled with `fps`.
        do_sample_frames (`bool`, *optional*):
            See [`OphCLIPVideosKwargs`]; by default files are sampled and decoded frames used as given.
        do_resize (`bool`, defaults to `True`), size (`dict`, defaults to `{"shortest_edge": 224}`):
            Resize so the shorter side is `size["shortest_edge"]` (aspect ratio kept), or to exactly
            `size["height"] x size["width"]` (the predecessors resized to 360x640).
        do_center_crop (`bool`, defaults to `True`), crop_size (`dict`, defaults to 224x224):
            Centre crop after resizing.
        do_rescale (`bool`, defaults to `True`), rescale_factor (`float`, defaults to 1/255):
            Scale uint8 values to [0, 1].
        do_normalize (`bool`, defaults to `True`), image_mean, image_std (defaults: ImageNet):
            Per-channel normalisation.
    """

    model_input_names = ["pixel_values_videos", "frame_mask"]
    valid_kwargs = OphCLIPVideosKwargs

    def __init__(
        self,
        num_frames: int = 8,
        fps: float | None = None,
        max_frames: int | None = None,
        do_sample_frames: bool | None = None,
        do_resize: bool = True,
        size: dict | int | None = None,
        do_center_crop: bool = True,
        crop_size: dict | int | None = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        **kwargs,
    ):
        # Saving a processor records its own `auto_map` in every sub-processor's entry; it names the processor, not
        # this class, so it is not kept (the processor's save writes it again).
        for key in ("auto_map", "processor_class", "_processor_class", "video_processor_type"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        _check_sampling(num_frames, fps, max_frames)
        self.num_frames = num_frames
        self.fps = fps
        self.max_frames = max_frames
        self.do_sample_frames = do_sample_frames
        self.do_resize = do_resize
        self.size = _size_dict(size if size is not None else {"shortest_edge": 224}, "size")
        self.do_center_crop = do_center_crop
        self.crop_size = _size_dict(crop_size if crop_size is not None else {"height": 224, "width": 224}, "crop_size")
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean if image_mean is not None else IMAGENET_DEFAULT_MEAN)
        self.image_std = list(image_std if image_std is not None else IMAGENET_DEFAULT_STD)

    def _options(self, kwargs: dict) -> dict:
        """The settings of one call: the call's keyword arguments over the attributes (`None` keeps the attribute)."""
        unknown = sorted(set(kwargs) - set(OphCLIPVideosKwargs.__annotations__))
        if unknown:
            raise TypeError(
                f"unexpected arguments for OphCLIPVideoProcessor: {unknown}; valid ones are "
                f"{sorted(OphCLIPVideosKwargs.__annotations__)}"
            )
        options = {key: getattr(self, key, None) for key in OphCLIPVideosKwargs.__annotations__}
        options["return_tensors"] = "pt"
        options.update({key: value for key, value in kwargs.items() if value is not None})
        _check_sampling(options["num_frames"], options["fps"], options["max_frames"])
        options["size"] = _size_dict(options["size"], "size")
        options["crop_size"] = _size_dict(options["crop_size"], "crop_size")
        return options

    # -- sampling and decoding -------------------------------------------------------------------------------------

    def sample_indices(self, total_frames: int, video_fps: float | None = None, num_frames: int | None = None,
                       fps: float | None = None, max_frames: int | None = None) -> list[int]:
        """The frame indices this processor decodes from a video of `total_frames` frames at `video_fps`.

        Datasets call this too, so that training and inference sample alike.
        """
        fps = fps if fps is not None else self.fps
        if fps is not None:
            return fps_frame_indices(total_frames, video_fps, fps, max_frames if max_frames is not None else self.max_frames)
        return uniform_frame_indices(total_frames, num_frames or self.num_frames)

    def decode(self, video, num_frames: int | None = None, fps: float | None = None, max_frames: int | None = None,
               do_sample_frames: bool | None = None) -> np.ndarray:
        """Decode the sampled frames (all frames with `do_sample_frames=False`) of a path, file object or `bytes` to
        a `(T, H, W, 3)` uint8 array."""
        try:
            from decord import VideoReader, cpu
        except ImportError as error:
            raise ImportError("decoding video files needs decord: pip install decord") from error
        source = io.BytesIO(video) if isinstance(video, (bytes, bytearray, memoryview)) else video
        if isinstance(source, os.PathLike):
            source = os.fspath(source)
        try:
            reader = VideoReader(source, ctx=cpu(0), num_threads=1)
        except Exception as error:  # decord raises its own DECORDError / RuntimeError types
            name = video if isinstance(video, (str, os.PathLike)) else type(video).__name__
            raise ValueError(f"could not decode video {name}: {error}") from error
        if do_sample_frames is False:
            indices = list(range(len(reader)))
        else:
            indices = self.sample_indices(len(reader), reader.get_avg_fps(), num_frames, fps, max_frames)
        return reader.get_batch(indices).asnumpy()

    # -- transforms ------------------------------------------------------------------------------------------------

    @staticmethod
    def _frames_to_tensor(video) -> torch.Tensor:
        """A decoded video as a float `(T, 3, H, W)` tensor with values in its original range."""
        if isinstance(video, (list, tuple)):
            video = np.stack([np.asarray(frame) for frame in video])
        frames = torch.as_tensor(np.asarray(video) if not isinstance(video, torch.Tensor) else video)
        if frames.dim() != 4:
            raise ValueError(
                f"decoded video frames must have 4 dimensions (T, H, W, 3) or (T, 3, H, W), got shape {tuple(frames.shape)}."
            )
        if frames.shape[0] == 0:
            raise ValueError("a video has zero frames; expected at least one.")
        if frames.shape[-1] == 3 and frames.shape[1] != 3:
            frames = frames.permute(0, 3, 1, 2)
        elif frames.shape[1] != 3:
            raise ValueError(f"decoded video frames must have 3 colour channels, got shape {tuple(frames.shape)}.")
        return frames.float()

    def _transform(self, frames: torch.Tensor, options: dict | None = None) -> torch.Tensor:
        options = options if options is not None else self._options({})
        if options["do_resize"]:
            size = options["size"]
            height, width = frames.shape[-2:]
            if "shortest_edge" in size:
                scale = size["shortest_edge"] / min(height, width)
                target = (max(1, round(height * scale)), max(1, round(width * scale)))
            else:
                target = (size["height"], size["width"])
            if target != (height, width):
                frames = F.interpolate(frames, size=target, mode="bilinear", antialias=True, align_corners=False)
        if options["do_center_crop"]:
            height, width = frames.shape[-2:]
            crop_h, crop_w = options["crop_size"]["height"], options["crop_size"]["width"]
            if crop_h > height or crop_w > width:
                pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
                frames = F.pad(frames, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
                height, width = frames.shape[-2:]
            top, left = (height - crop_h) // 2, (width - crop_w) // 2
            frames = frames[..., top : top + crop_h, left : left + crop_w]
        # Rescale and normalise in one affine step: (x * r - mean) / std.
        scale = torch.full((3,), float(options["rescale_factor"]) if options["do_rescale"] else 1.0)
        shift = torch.zeros(3)
        if options["do_normalize"]:
            std = torch.tensor(options["image_std"], dtype=torch.float32).expand(3)
            mean = torch.tensor(options["image_mean"], dtype=torch.float32).expand(3)
            scale, shift = scale / std, -mean / std
        return frames * scale.view(1, 3, 1, 1) + shift.view(1, 3, 1, 1)

    @staticmethod
    def _as_batch(videos) -> list:
        """Tell one video from a batch of videos."""
        if isinstance(videos, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(videos, "read"):
            return [videos]
        if isinstance(videos, (np.ndarray, torch.Tensor)):
            if videos.ndim == 4:
                return [videos]
            if videos.ndim == 5:
                return list(videos)
            raise ValueError(f"a video array must have 4 dimensions (or 5 for a batch), got shape {tuple(videos.shape)}.")
        if isinstance(videos, (list, tuple)):
            if len(videos) == 0:
                raise ValueError("videos is an empty list; expected at least one video.")
            first = videos[0]
            if isinstance(first, (np.ndarray, torch.Tensor)) and first.ndim == 3:
                return [videos]  # a list of frames is one video
            return list(videos)
        try:  # PIL images and other frame objects
            return [[np.asarray(frame) for frame in videos]]
        except TypeError:
            raise ValueError(f"cannot interpret videos of type {type(videos).__name__}") from None

    def preprocess(self, videos, **kwargs: Unpack[OphCLIPVideosKwargs]) -> BatchFeature:
        """Decode (if needed), sample, resize, crop and normalise a video or a batch of videos.

        Keyword arguments (see [`OphCLIPVideosKwargs`]) override the processor's attributes for this call.
        """
        options = self._options(kwargs)
        processed = []
        for video in self._as_batch(videos):
            if isinstance(video, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(video, "read"):
                video = self.decode(video, num_frames=options["num_frames"], fps=options["fps"],
                                    max_frames=options["max_frames"], do_sample_frames=options["do_sample_frames"])
            elif options["do_sample_frames"]:
                if options["fps"] is not None:
                    raise ValueError("fps sampling needs the source frame rate; it only applies to video files, not to "
                                     "decoded frames (sample them with num_frames, or before calling the processor).")
                video = self._frames_to_tensor(video)
                video = video[uniform_frame_indices(len(video), options["num_frames"])]
            processed.append(self._transform(self._frames_to_tensor(video), options))
        longest = max(len(frames) for frames in processed)
        pixel_values = processed[0].new_zeros((len(processed), longest, *processed[0].shape[1:]))
        frame_mask = torch.zeros(len(processed), longest, dtype=torch.long)
        for i, frames in enumerate(processed):
            if frames.shape[1:] != processed[0].shape[1:]:
                raise ValueError(
                    f"video {i} produced frames of shape {tuple(frames.shape[1:])} but video 0 produced "
                    f"{tuple(processed[0].shape[1:])}; enable do_resize / do_center_crop to batch videos of different sizes."
                )
            pixel_values[i, : len(frames)] = frames
            frame_mask[i, : len(frames)] = 1
        return BatchFeature({"pixel_values_videos": pixel_values, "frame_mask": frame_mask},
                            tensor_type=options["return_tensors"])

    def __call__(self, videos, **kwargs: Unpack[OphCLIPVideosKwargs]) -> BatchFeature:
        return self.preprocess(videos, **kwargs)


def _check_sampling(num_frames, fps, max_frames):
    if not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}.")
    if fps is not None and not (isinstance(fps, (int, float)) and fps > 0):
        raise ValueError(f"fps must be a positive number or None, got {fps!r}.")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}.")


__all__ = ["OphCLIPVideoProcessor", "OphCLIPVideosKwargs", "uniform_frame_indices", "fps_frame_indices"]
