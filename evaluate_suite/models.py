"""Model adapters: one small interface over every dual encoder the protocols evaluate.

A protocol only needs five things from a model, and `VideoTextEncoder` is exactly those:

- `video_processor`: how a decoded frame becomes model input (size, crop, mean/std). It is an
  `OphCLIPVideoProcessor`-like object holding no weights, so DataLoader workers can preprocess while the model runs;
  `preprocess(frames)` applies it to `(T, H, W, 3)` uint8 frames and returns `(T, 3, H, W)` float pixels.
- `encode_frames(pixel_values (N, 3, H, W)) -> (N, D)` L2-normalised frame embeddings.
- `encode_texts(list[str]) -> (M, D)` L2-normalised text embeddings.
- `encode_videos(pixel_values_videos (B, T, 3, H, W), frame_mask) -> (B, D)` normalised video embeddings (by default
  the re-normalised mean of the frame embeddings of the real frames).
- `logit_scale` (the model's inverse temperature, `exp` already applied), `model_id` and `weights_hash`.

Two implementations ship: `OphCLIPEncoder` (any OphCLIP checkpoint, through this package's classes or
`trust_remote_code`) and `CLIPEncoder` (transformers' `CLIPModel` + `CLIPTokenizer`: the vanilla-CLIP baseline row).
`load_encoder(model_id)` picks one from the checkpoint's `config.model_type`.

```python
>>> from evaluate_suite.models import load_encoder
>>> encoder = load_encoder("path/to/ophclip-checkpoint")          # or "openai/clip-vit-base-patch16"
>>> frames = encoder.preprocess(decoded_uint8_frames)               # (T, 3, 224, 224)
>>> image = encoder.encode_frames(frames); text = encoder.encode_texts(["the rhexis phase."])
>>> (encoder.logit_scale * image @ text.T).softmax(-1)
```
"""

import abc
import json
from pathlib import Path

import torch
import torch.nn.functional as F


OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def preprocess_frames(video_processor, frames) -> torch.Tensor:
    """Decoded frames `(T, H, W, 3)` (uint8 array or tensor) -> model pixels `(T, 3, H, W)` float32."""
    return video_processor.preprocess(frames, return_tensors="pt")["pixel_values_videos"][0]


class VideoTextEncoder(abc.ABC):
    """The interface the evaluation protocols use (see the module docstring).

    Subclasses set `model_id`, `video_processor` and implement `encode_frames` and `encode_texts`; `encode_videos`,
    `logit_scale` and `weights_hash` have defaults that subclasses may override.
    """

    model_id: str = "unknown"
    video_processor = None
    text_batch_size: int = 64

    @abc.abstractmethod
    def encode_frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Frames `(N, 3, H, W)` -> L2-normalised embeddings `(N, D)` (float32, on CPU)."""

    @abc.abstractmethod
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Texts -> L2-normalised embeddings `(M, D)` (float32, on CPU)."""

    def preprocess(self, frames) -> torch.Tensor:
        """Decoded uint8 frames `(T, H, W, 3)` -> pixel values `(T, 3, H, W)` ready for `encode_frames`."""
        return preprocess_frames(self.video_processor, frames)

    def encode_videos(self, pixel_values_videos: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Videos `(B, T, 3, H, W)` -> `(B, D)`: the re-normalised mean of the real frames' normalised embeddings."""
        batch, frames = pixel_values_videos.shape[:2]
        if frame_mask is None:
            frame_mask = torch.ones(batch, frames, dtype=torch.bool)
        from modeling_ophclip import masked_frame_mean  # on use: the package loads transformers

        real = frame_mask.bool().flatten()
        embeds = self.encode_frames(pixel_values_videos.flatten(0, 1)[real])  # padded frames are never encoded
        per_frame = embeds.new_zeros(batch * frames, embeds.shape[-1])
        per_frame[real.nonzero().flatten()] = embeds
        return F.normalize(masked_frame_mean(per_frame.view(batch, frames, -1), frame_mask), dim=-1)

    @property
    def logit_scale(self) -> float:
        """Multiplier of the cosine similarities (1/τ) the model was trained with."""
        return 100.0

    @property
    def weights_hash(self) -> str:
        """A short hash of the weights, recorded with every result (see `leaderboard.weights_hash`)."""
        from .leaderboard import weights_hash

        if getattr(self, "_weights_hash", None) is None:
            self._weights_hash = weights_hash(self.model)
        return self._weights_hash

    def describe(self) -> dict:
        """What the results record about the model's preprocessing."""
        processor = self.video_processor
        return {
            "encoder": type(self).__name__,
            "size": getattr(processor, "size", None),
            "crop_size": getattr(processor, "crop_size", None),
            "image_mean": getattr(processor, "image_mean", None),
            "image_std": getattr(processor, "image_std", None),
        }


class _TransformersEncoder(VideoTextEncoder):
    """Shared plumbing of adapters around a transformers dual encoder: device, dtype, batching, normalisation."""

    def __init__(self, model, tokenizer, video_processor, model_id: str, max_text_length: int):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.video_processor = video_processor
        self.model_id = str(model_id)
        self.max_text_length = int(max_text_length)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device) -> "_TransformersEncoder":
        self.model.to(device)
        return self

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().float().exp())

    def _image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output

    def _text_features(self, inputs: dict) -> torch.Tensor:
        return self.model.get_text_features(**inputs).pooler_output

    @torch.inference_mode()
    def encode_frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixel_values = pixel_values.to(self.device, self.dtype, non_blocking=True)
        return F.normalize(self._image_features(pixel_values).float(), dim=-1).cpu()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("encode_texts takes a non-empty list of strings.")
        chunks = []
        for start in range(0, len(texts), self.text_batch_size):
            inputs = self.tokenizer(texts[start : start + self.text_batch_size], padding=True, truncation=True,
                                    max_length=self.max_text_length, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            chunks.append(F.normalize(self._text_features(inputs).float(), dim=-1).cpu())
        return torch.cat(chunks)


class OphCLIPEncoder(_TransformersEncoder):
    """Any OphCLIP checkpoint: frames through `get_image_features`, videos through `get_video_features` (mean of the
    frame features before the projection, as the model was trained), texts through `get_text_features`.

    Build it from a folder or Hub id with `from_pretrained`, or from objects: `OphCLIPEncoder(model, processor)`.
    """

    def __init__(self, model, processor, model_id: str | None = None):
        text_limit = model.config.text_config.max_position_embeddings
        max_length = min(int(getattr(processor.tokenizer, "model_max_length", text_limit) or text_limit), text_limit)
        super().__init__(model, processor.tokenizer, processor.video_processor,
                         model_id or getattr(model, "name_or_path", "") or "ophclip", max_length)

    @classmethod
    def from_pretrained(cls, folder_or_hub_id, trust_remote_code: bool = False, device=None, dtype=None,
                        **kwargs) -> "OphCLIPEncoder":
        """Load model and processor from a folder or Hub id.

        By default this package's classes are used (the checkpoint's `config.json` just has to be an OphCLIP one).
        With `trust_remote_code=True` the modeling and processing code saved with the checkpoint is run instead,
        whether or not this package is importable (transformers itself would prefer the locally registered classes).
        """
        from transformers import AutoModel, AutoProcessor

        import modeling_ophclip  # noqa: F401  (registers OphCLIP with the Auto classes)

        if trust_remote_code:
            model_class = _remote_class(folder_or_hub_id, "config.json", "AutoModel", **kwargs)
            processor_class = _remote_class(folder_or_hub_id, "processor_config.json", "AutoProcessor", **kwargs)
            model = model_class.from_pretrained(folder_or_hub_id, dtype=dtype, **kwargs)
            processor = processor_class.from_pretrained(folder_or_hub_id, **kwargs)
        else:
            model = AutoModel.from_pretrained(folder_or_hub_id, dtype=dtype, **kwargs)
            processor = AutoProcessor.from_pretrained(folder_or_hub_id, **kwargs)
        return cls(model, processor, model_id=str(folder_or_hub_id)).to(device or default_device())

    @torch.inference_mode()
    def encode_videos(self, pixel_values_videos: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        pixel_values_videos = pixel_values_videos.to(self.device, self.dtype)
        if frame_mask is not None:
            frame_mask = frame_mask.to(self.device)
        embeds = self.model.get_video_features(pixel_values_videos, frame_mask=frame_mask).pooler_output
        return F.normalize(embeds.float(), dim=-1).cpu()


def _remote_class(folder_or_hub_id, config_file: str, auto_class: str, **kwargs):
    """The class a checkpoint's `auto_map` names for `auto_class`, imported from the checkpoint's own code."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    from transformers.utils import cached_file

    path = cached_file(folder_or_hub_id, config_file, **kwargs)
    auto_map = json.loads(Path(path).read_text()).get("auto_map", {})
    if auto_class not in auto_map:
        raise ValueError(f"{str(folder_or_hub_id)!r} has no code for {auto_class} in its {config_file} (auto_map); "
                         "load it without trust_remote_code")
    return get_class_from_dynamic_module(auto_map[auto_class], folder_or_hub_id, **kwargs)


def clip_video_processor(image_size: int = 224, preprocessor_config: dict | None = None):
    """CLIP's preprocessing (resize the short side, centre crop, OpenAI mean/std) as a weight-free video processor.

    `preprocessor_config` (a checkpoint's `preprocessor_config.json`) overrides size, crop and mean/std. Resizing is
    bilinear with antialiasing (CLIP's image processor uses bicubic); the difference is negligible for evaluation.
    """
    from modeling_ophclip import OphCLIPVideoProcessor

    config = preprocessor_config or {}
    size = config.get("size", {"shortest_edge": image_size})
    crop = config.get("crop_size", {"height": image_size, "width": image_size})
    return OphCLIPVideoProcessor(
        size=size,
        crop_size=crop,
        image_mean=config.get("image_mean", OPENAI_CLIP_MEAN),
        image_std=config.get("image_std", OPENAI_CLIP_STD),
    )


class CLIPEncoder(_TransformersEncoder):
    """transformers' `CLIPModel` with its tokenizer: the vanilla-CLIP baseline.

    Frames are resized and centre-cropped to the vision tower's `image_size` (224 for the released models) and
    normalised with the OpenAI CLIP mean/std, unless the checkpoint's `preprocessor_config.json` says otherwise.
    """

    def __init__(self, model, tokenizer, video_processor=None, model_id: str | None = None):
        config = model.config
        video_processor = video_processor or clip_video_processor(config.vision_config.image_size)
        super().__init__(model, tokenizer, video_processor, model_id or getattr(model, "name_or_path", "") or "clip",
                         config.text_config.max_position_embeddings)

    @classmethod
    def from_pretrained(cls, folder_or_hub_id, device=None, dtype=None, **kwargs) -> "CLIPEncoder":
        from transformers import AutoTokenizer, CLIPModel

        model = CLIPModel.from_pretrained(folder_or_hub_id, dtype=dtype, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder_or_hub_id, **kwargs)
        preprocessor = _read_preprocessor_config(folder_or_hub_id, **kwargs)
        video_processor = clip_video_processor(model.config.vision_config.image_size, preprocessor)
        return cls(model, tokenizer, video_processor, model_id=str(folder_or_hub_id)).to(device or default_device())


def _read_preprocessor_config(folder_or_hub_id, **kwargs) -> dict | None:
    """The checkpoint's `preprocessor_config.json` as a dict, or None when it has none."""
    folder = Path(str(folder_or_hub_id))
    if folder.is_dir():
        path = folder / "preprocessor_config.json"
        return json.loads(path.read_text()) if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(str(folder_or_hub_id), "preprocessor_config.json", **{
            k: v for k, v in kwargs.items() if k in ("revision", "cache_dir", "token", "local_files_only")
        })).read_text())
    except Exception:  # no such file, or offline: fall back to the CLIP defaults
        return None


ENCODERS = {"ophclip": OphCLIPEncoder, "clip": CLIPEncoder}


def load_encoder(model_id, trust_remote_code: bool = False, device=None, **kwargs) -> VideoTextEncoder:
    """Load the adapter that fits the checkpoint at `model_id` (a folder or Hub id), chosen by `config.model_type`."""
    from transformers import AutoConfig

    import modeling_ophclip  # noqa: F401  (registers the "ophclip" model type)

    from .model_path import read_model_config

    read_model_config(model_id, **kwargs)  # one clear line for a path that is not a model
    try:
        config = AutoConfig.from_pretrained(model_id, trust_remote_code=trust_remote_code, **kwargs)
    except OSError as error:
        raise FileNotFoundError(f"cannot load a model config from {str(model_id)!r}: {error}") from None
    model_type = getattr(config, "model_type", None)
    if model_type == "ophclip":
        return OphCLIPEncoder.from_pretrained(model_id, trust_remote_code=trust_remote_code, device=device, **kwargs)
    if model_type == "clip":
        return CLIPEncoder.from_pretrained(model_id, device=device, **kwargs)
    raise ValueError(
        f"{str(model_id)!r} is a {model_type!r} model; the evaluation suite has adapters for {sorted(ENCODERS)}. "
        "Wrap other models in a `VideoTextEncoder` subclass."
    )


__all__ = [
    "CLIPEncoder",
    "ENCODERS",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "OphCLIPEncoder",
    "VideoTextEncoder",
    "clip_video_processor",
    "default_device",
    "load_encoder",
    "preprocess_frames",
]
