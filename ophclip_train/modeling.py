"""What is trained: building the OphCLIP model and processor from the options, the training module that DDP wraps,
the optimiser's parameter groups, and the torch-only augmentations of the SimSiam views."""

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn


logger = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100.0)


# -- model and processor --------------------------------------------------------------------------------------------


def preset_config(name: str):
    """`"default"`: ResNet-50 + BERT-base (Bio_ClinicalBERT shapes), 768-d; `"tiny"`: a two-stage ResNet and a
    four-layer BERT of width 64 for smoke tests."""
    from transformers import BertConfig, ResNetConfig

    from modeling_ophclip import OphCLIPConfig

    if name == "default":
        return OphCLIPConfig()
    if name == "tiny":
        return OphCLIPConfig(
            vision_config=ResNetConfig(embedding_size=16, hidden_sizes=[32, 64], depths=[1, 1]),
            text_config=BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                   intermediate_size=128, max_position_embeddings=512),
            projection_dim=64,
        )
    raise ValueError(f"unknown model preset {name!r}; expected 'tiny', 'default' or a JSON file")


def _load_config(model_config: str):
    import os

    from modeling_ophclip import OphCLIPConfig

    if os.path.isfile(model_config):
        return OphCLIPConfig.from_json_file(model_config)
    if os.path.isdir(model_config):
        return OphCLIPConfig.from_pretrained(model_config)
    return preset_config(model_config)


def _tower_class(config):
    from transformers import AutoModel

    return AutoModel._model_mapping[type(config)]


def _pretrained_vision_config(path: str):
    """The vision config of a checkpoint: the whole config for a vision model, `vision_config` for a dual encoder
    (e.g. a CLIP checkpoint)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    return getattr(config, "vision_config", None) or config


def _load_tower(tower: nn.Module, path: str, name: str) -> None:
    """Load the weights of a pretrained tower into `tower` (same architecture), strictly."""
    loaded = type(tower).from_pretrained(path)
    missing, unexpected = tower.load_state_dict(loaded.state_dict(), strict=False)
    if missing:
        raise ValueError(f"the {name} tower from {path!r} lacks weights for {missing[:5]}{'...' if len(missing) > 5 else ''}")
    if unexpected:
        logger.info(f"{name} tower from {path}: ignored {len(unexpected)} unused weights")
    logger.info(f"loaded the {name} tower from {path}")


def build_processor(model_args, data_args, tokenizer_path: str | None, base_processor=None):
    """An `OphCLIPProcessor`: the checkpoint's (sampling `num_frames`, resized to `image_size` when given), or a new
    one from a BERT tokenizer."""
    from transformers import BertTokenizer

    from modeling_ophclip import OphCLIPProcessor, OphCLIPVideoProcessor

    if base_processor is not None and tokenizer_path is None:
        processor = base_processor
        processor.video_processor.num_frames = data_args.num_frames
        if model_args.image_size:
            processor.video_processor.size = {"shortest_edge": model_args.image_size}
            processor.video_processor.crop_size = {"height": model_args.image_size, "width": model_args.image_size}
        return processor
    if tokenizer_path is None:
        raise ValueError("no tokenizer: give --tokenizer_name_or_path (a BERT tokenizer folder or Hub id), or "
                         "--text_model_name_or_path / --model_name_or_path that include one")
    size = model_args.image_size or 224
    video_processor = OphCLIPVideoProcessor(num_frames=data_args.num_frames, size=size, crop_size=size)
    return OphCLIPProcessor(video_processor, BertTokenizer.from_pretrained(tokenizer_path))


def build_model_and_processor(model_args, data_args):
    """The `OphCLIPModel` to train and its `OphCLIPProcessor`, as the options say (see `ModelArguments`)."""
    import modeling_ophclip  # noqa: F401  (registers OphCLIP with the Auto classes)
    from modeling_ophclip import OphCLIPModel, OphCLIPProcessor

    if model_args.model_name_or_path:
        model = OphCLIPModel.from_pretrained(model_args.model_name_or_path)
        base = None
        if model_args.tokenizer_name_or_path is None:
            base = OphCLIPProcessor.from_pretrained(model_args.model_name_or_path)
        processor = build_processor(model_args, data_args, model_args.tokenizer_name_or_path, base)
        if model_args.learnable_logit_scale is not None and model_args.learnable_logit_scale != model.config.learnable_logit_scale:
            _set_learnable_logit_scale(model, model_args.learnable_logit_scale)
    else:
        config = _load_config(model_args.model_config)
        if model_args.vision_model_name_or_path:
            config.vision_config = _pretrained_vision_config(model_args.vision_model_name_or_path)
        if model_args.text_model_name_or_path:
            from transformers import AutoConfig

            config.text_config = AutoConfig.from_pretrained(model_args.text_model_name_or_path)
        if model_args.projection_dim:
            config.projection_dim = model_args.projection_dim
        if model_args.learnable_logit_scale is not None:
            config.learnable_logit_scale = model_args.learnable_logit_scale
        if not config.use_text_projection and config.text_config.hidden_size != config.projection_dim:
            config.use_text_projection = True  # a text tower of another width needs the projection
        tokenizer_path = model_args.tokenizer_name_or_path or model_args.text_model_name_or_path
        processor = build_processor(model_args, data_args, tokenizer_path)
        vocab = len(processor.tokenizer)
        if vocab != config.text_config.vocab_size:
            if model_args.text_model_name_or_path:
                raise ValueError(f"the tokenizer has {vocab} tokens but the text tower "
                                 f"{model_args.text_model_name_or_path!r} has {config.text_config.vocab_size}")
            logger.info(f"text tower vocabulary set to the tokenizer's {vocab} tokens (was "
                        f"{config.text_config.vocab_size}); its embeddings are newly initialised anyway")
            config.text_config.vocab_size = vocab
        config._check_values()
        model = OphCLIPModel(config)
        if model_args.vision_model_name_or_path:
            _load_tower(model.vision_model, model_args.vision_model_name_or_path, "vision")
        if model_args.text_model_name_or_path:
            _load_tower(model.text_model, model_args.text_model_name_or_path, "text")
    if model_args.activation_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model, processor


def _set_learnable_logit_scale(model, learnable: bool) -> None:
    value = model.logit_scale.detach().clone()
    del model.logit_scale
    if learnable:
        model.logit_scale = nn.Parameter(value)
    else:
        model.register_buffer("logit_scale", value)
    model.config.learnable_logit_scale = learnable


def max_text_length(processor, model, requested: int | None) -> int:
    """Token limit for the collators: the request, else the tokenizer's limit, never above the text positions."""
    positions = model.config.text_config.max_position_embeddings
    tokenizer_limit = getattr(processor.tokenizer, "model_max_length", positions) or positions
    return int(min(requested or tokenizer_limit, positions))


# -- the module DDP wraps -------------------------------------------------------------------------------------------


class OphCLIPPretrainingModule(nn.Module):
    """The trained module: an `OphCLIPModel` (+ the SimSiam predictor). Its `forward` returns L2-normalised embeddings
    (and the logit scale), so DDP sees one forward call per pass and synchronises every parameter used in it; the
    losses are computed outside, on embeddings gathered across processes.

    Args:
        model: the `OphCLIPModel`.
        simsiam_head: the SimSiam predictor, or None.
    """

    def __init__(self, model: nn.Module, simsiam_head: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.simsiam_head = simsiam_head

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values_videos=None,
                frame_mask=None, views=None) -> dict:
        """Embed what is given.

        Returns a dict with `text_embeds` (texts given), `video_embeds` (videos given), and with `views` (a pair of
        augmented copies of `pixel_values_videos`, each `(B, T, C, H, W)`) the SimSiam `p1, z1, p2, z2`; always
        `logit_scale` (the log inverse temperature, a parameter or buffer of the model).
        """
        out = {"logit_scale": self.model.logit_scale}
        if input_ids is not None:
            text = self.model.get_text_features(input_ids, attention_mask, token_type_ids).pooler_output
            out["text_embeds"] = F.normalize(text, dim=-1)
        if pixel_values_videos is not None:
            batch = pixel_values_videos.shape[0]
            videos, masks = [pixel_values_videos], [frame_mask]
            if views is not None:
                videos += list(views)
                masks += [frame_mask] * len(views)
            stacked = torch.cat(videos) if len(videos) > 1 else pixel_values_videos
            mask = None if frame_mask is None else (torch.cat(masks) if len(masks) > 1 else frame_mask)
            embeds = self.model.get_video_features(stacked, frame_mask=mask).pooler_output
            out["video_embeds"] = F.normalize(embeds[:batch], dim=-1)
            if views is not None:
                z1, z2 = embeds[batch : 2 * batch], embeds[2 * batch : 3 * batch]
                out.update(p1=self.simsiam_head(z1), z1=z1, p2=self.simsiam_head(z2), z2=z2)
        return out


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on weight matrices (and conv kernels) only; none on biases, norm layers, the logit
    scale or any other 1-D parameter."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        lowered = name.lower()
        if param.ndim < 2 or "bias" in lowered or "norm" in lowered or "logit_scale" in lowered:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def clamp_logit_scale(model: nn.Module, max_value: float = MAX_LOGIT_SCALE) -> None:
    """Keep a learnable logit scale in [0, ln(100)] (CLIP's clamp), after every optimiser step."""
    scale = getattr(model, "logit_scale", None)
    if isinstance(scale, nn.Parameter):
        scale.clamp_(0.0, max_value)


# -- SimSiam views --------------------------------------------------------------------------------------------------


class VideoAugment:
    """Torch-only augmentation of normalised videos `(B, T, C, H, W)`: random resized crop (area in
    `[crop_scale, 1]`, aspect ratio in [3/4, 4/3]), horizontal flip with probability 1/2, and brightness / contrast /
    saturation jitter of strength `color_jitter`. One set of parameters per video, applied to all its frames, so a
    view stays a coherent clip. Randomness comes only from the `generator` passed to each call.

    Args:
        mean, std: the processor's normalisation, undone for the colour jitter and redone after it.
        crop_scale: smallest crop area as a fraction of the frame.
        color_jitter: jitter strength (0 disables).
    """

    def __init__(self, mean, std, crop_scale: float = 0.4, color_jitter: float = 0.4):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.crop_scale = crop_scale
        self.color_jitter = color_jitter

    def _uniform(self, generator, low, high):
        return low + (high - low) * torch.rand((), generator=generator).item()

    def _crop_box(self, height, width, generator):
        area = height * width
        for _ in range(10):
            target = area * self._uniform(generator, self.crop_scale, 1.0)
            ratio = math.exp(self._uniform(generator, math.log(3 / 4), math.log(4 / 3)))
            w = int(round(math.sqrt(target * ratio)))
            h = int(round(math.sqrt(target / ratio)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (), generator=generator))
                left = int(torch.randint(0, width - w + 1, (), generator=generator))
                return top, left, h, w
        return 0, 0, height, width

    def _one(self, frames: torch.Tensor, generator) -> torch.Tensor:
        # frames: (T, C, H, W), normalised
        height, width = frames.shape[-2:]
        top, left, h, w = self._crop_box(height, width, generator)
        out = frames[..., top : top + h, left : left + w]
        if (h, w) != (height, width):
            out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        if torch.rand((), generator=generator).item() < 0.5:
            out = out.flip(-1)
        if self.color_jitter > 0:
            mean, std = self.mean.to(out), self.std.to(out)
            pixels = out * std + mean
            s = self.color_jitter
            brightness = self._uniform(generator, 1 - s, 1 + s)
            contrast = self._uniform(generator, 1 - s, 1 + s)
            saturation = self._uniform(generator, 1 - s, 1 + s)
            pixels = pixels * brightness
            grey = (0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2]).unsqueeze(1)
            pixels = (pixels - grey.mean(dim=(-1, -2, -3), keepdim=True)) * contrast + grey.mean(dim=(-1, -2, -3), keepdim=True)
            grey = (0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2]).unsqueeze(1)
            pixels = (pixels - grey) * saturation + grey
            out = (pixels.clamp(0, 1) - mean) / std
        return out

    def __call__(self, videos: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([self._one(video, generator) for video in videos.float()]).to(videos.dtype)


__all__ = [
    "MAX_LOGIT_SCALE",
    "OphCLIPPretrainingModule",
    "VideoAugment",
    "build_model_and_processor",
    "build_processor",
    "clamp_logit_scale",
    "max_text_length",
    "parameter_groups",
    "preset_config",
]
