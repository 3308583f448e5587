"""OphCLIP: a video–language CLIP for ophthalmic surgery (ICCV 2025), on transformers.

A per-frame vision tower (ResNet-50 by default, any `AutoModel` vision tower such as a CLIP ViT through the config),
mean-pooled over the real frames of each video, and a BERT text tower pooled as SurgVLP does, both projected into one
joint space and compared by a scaled cosine similarity.

This file travels to the Hub as remote code: it imports nothing of the project except through single-dot relative
imports, so `save_pretrained` copies it next to the weights.
"""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple

from .configuration_ophclip import OphCLIPConfig


try:
    from transformers.utils.output_capturing import maybe_install_capturing_hooks
except ImportError:  # a transformers version without lazily installed output-capturing hooks
    maybe_install_capturing_hooks = None


def contrastive_loss_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row of a square logits matrix against the matching column (item i pairs with item i).
    (The training objectives' `contrastive_loss_from_embeddings` takes the embeddings of a distributed batch.)"""
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def ophclip_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a square text × video similarity matrix."""
    return (contrastive_loss_from_logits(logits_per_text) + contrastive_loss_from_logits(logits_per_text.t())) / 2.0


def surgvlp_text_pooling(
    hidden_states: tuple[torch.Tensor, ...], attention_mask: torch.Tensor, num_layers: int
) -> torch.Tensor:
    """Sentence embedding of SurgVLP / HecVL / PeskaVLP, vectorised.

    Their `BertEncoder` merges word pieces into words by summing them, zero-pads to the padded length `L`, takes the
    mean over the `L` positions of each of the last `num_layers` layers, and sums the layers. Regrouping pieces into
    words does not change their sum, so the result is `sum_layers(sum_{real tokens} h) / L`, computed here in one
    masked reduction instead of a Python loop over tokens.
    """
    layers = hidden_states[-num_layers:]
    mask = attention_mask.to(layers[0].dtype).unsqueeze(1)  # (B, 1, L)
    # One masked reduction per layer as a batched mat-vec, (B, 1, L) @ (B, L, D): reads each layer once, where stacking
    # the layers first would copy num_layers x B x L x D.
    pooled = sum(torch.bmm(mask, layer) for layer in layers).squeeze(1)
    return pooled / layers[0].shape[1]


def masked_mean_pooling(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states that the attention mask marks as real."""
    mask = attention_mask.to(last_hidden_state.dtype)
    return torch.einsum("bld,bl->bd", last_hidden_state, mask) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)


def masked_frame_mean(frame_features: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the frames of each video `(B, T, D) -> (B, D)`, counting only those `frame_mask` `(B, T)` marks
    (all when it is None). Padded frames are excluded with `torch.where`, so whatever finite values they hold cannot
    change the mean, and nothing depends on the mask's values (no device sync, compiles with `fullgraph=True`)."""
    if frame_mask is None:
        return frame_features.mean(dim=1)
    real = frame_mask.to(device=frame_features.device, dtype=torch.bool).unsqueeze(-1)  # (B, T, 1)
    counts = real.sum(dim=1).clamp(min=1).to(frame_features.dtype)
    return torch.where(real, frame_features, 0.0).sum(dim=1) / counts


def _selected_indices(output_hidden_states) -> list[int] | None:
    """The hidden-state indices an `output_hidden_states` selection names, or `None` for a plain flag."""
    if output_hidden_states is None or isinstance(output_hidden_states, bool):
        return None
    if isinstance(output_hidden_states, int):
        return [output_hidden_states]
    return list(output_hidden_states)


def _keep_requested_hidden_states(hidden_states, requested):
    """Drop the hidden states the caller did not ask for (the SurgVLP pooling captures its last layers regardless)."""
    if hidden_states is None or not requested:
        return None
    selected = _selected_indices(requested)
    if selected is None:
        return hidden_states
    count = len(hidden_states)
    keep = {index % count for index in selected if -count <= index < count}
    return tuple(state if index in keep else None for index, state in enumerate(hidden_states))


def set_frozen_batchnorm_to_eval(module: nn.Module) -> None:
    """Put every BatchNorm layer of `module` whose affine parameters are all frozen (`requires_grad=False`) in eval mode.

    Such a layer normalises with its running statistics and does not update them, so a frozen tower does not drift
    while the rest of the model trains (LoRA, linear probing). BatchNorm layers without parameters are left alone.
    """
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.training:
            parameters = list(layer.parameters(recurse=False))
            if parameters and not any(parameter.requires_grad for parameter in parameters):
                layer.eval()


@dataclass
class OphCLIPOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss=True`):
        Symmetric video–text contrastive loss.
    logits_per_video (`torch.FloatTensor` of shape `(video_batch_size, text_batch_size)`):
        Scaled cosine similarities between every video and every text.
    logits_per_text (`torch.FloatTensor` of shape `(text_batch_size, video_batch_size)`):
        The transpose of `logits_per_video`.
    text_embeds (`torch.FloatTensor` of shape `(text_batch_size, projection_dim)`):
        L2-normalised text embeddings.
    video_embeds (`torch.FloatTensor` of shape `(video_batch_size, projection_dim)`):
        L2-normalised video embeddings.
    text_model_output (`BaseModelOutputWithPooling`):
        Output of [`OphCLIPModel.get_text_features`] (hidden states and attentions of the text tower when asked for).
    vision_model_output (`BaseModelOutputWithPooling`):
        Output of [`OphCLIPModel.get_video_features`] (per-video `(batch_size, num_frames, ...)` tensors).
    """

    loss: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(value.to_tuple() if isinstance(value, ModelOutput) else value for value in self.values())


@dataclass
class OphCLIPVideoClassifierOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
        Classification loss (cross-entropy, or binary cross-entropy for `problem_type="multi_label_classification"`).
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        Classification scores.
    video_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        The un-normalised video embeddings the classifier reads.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
        The vision tower's hidden states, one row per frame: `(batch_size * num_frames, ...)` each, row
        `i * num_frames + t` for frame `t` of video `i` (see [`~OphCLIPModel.get_video_features`]).
    attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True` and the tower has
        attention layers):
        The vision tower's attention weights, `(batch_size * num_frames, num_heads, seq_len, seq_len)` each.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def _check_video_inputs(pixel_values_videos: torch.Tensor, frame_mask: torch.Tensor | None, num_channels: int):
    """Shape checks (free: no tensor values are read) and, where that costs no device sync, the frame-mask values."""
    if not isinstance(pixel_values_videos, torch.Tensor) or pixel_values_videos.dim() != 5:
        shape = tuple(pixel_values_videos.shape) if isinstance(pixel_values_videos, torch.Tensor) else type(pixel_values_videos)
        raise ValueError(
            f"pixel_values_videos must be a tensor of shape (batch_size, num_frames, channels, height, width), got {shape}."
        )
    batch_size, num_frames, channels = pixel_values_videos.shape[:3]
    if batch_size == 0 or num_frames == 0:
        raise ValueError(
            f"pixel_values_videos must hold at least one video of at least one frame, got shape {tuple(pixel_values_videos.shape)}."
        )
    if channels != num_channels:
        raise ValueError(f"pixel_values_videos must have {num_channels} channels in dimension 2, got {channels}.")
    if frame_mask is None:
        return
    if tuple(frame_mask.shape) != (batch_size, num_frames):
        raise ValueError(
            f"frame_mask must have shape (batch_size, num_frames) = {(batch_size, num_frames)}, got {tuple(frame_mask.shape)}."
        )
    # Reading the mask's values is free only for an eager CPU tensor. On an accelerator it would stall the host on every
    # forward, and inside torch.compile / torch.export it is a data-dependent branch, so it is skipped there: the
    # processor never produces a video without frames, and such a video would get a zero embedding.
    if frame_mask.device.type == "cpu" and not torch.compiler.is_compiling():
        empty = (frame_mask.sum(dim=1) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"frame_mask marks no real frame for video(s) {empty}; every video needs at least one frame.")


def _check_text_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, max_positions: int):
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids)
        raise ValueError(f"input_ids must be a tensor of shape (batch_size, sequence_length), got {shape}.")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must hold at least one text of at least one token, got shape {tuple(input_ids.shape)}.")
    if input_ids.shape[1] > max_positions:
        raise ValueError(
            f"input_ids has {input_ids.shape[1]} tokens but the text tower has {max_positions} positions; tokenize with "
            f"truncation=True, max_length<={max_positions}."
        )
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}."
        )


class OphCLIPPreTrainedModel(PreTrainedModel):
    r"""
    Base class of the OphCLIP models: weight initialisation, the Auto-class hooks, and BatchNorm handling for frozen
    towers.

    Attention implementations (`attn_implementation="eager" | "sdpa" | "flash_attention_2" | "flex_attention"`, or a
    dict per sub-config) are passed on to the towers, each of which uses what it supports: BERT and CLIP-ViT towers
    default to SDPA; a ResNet tower has no attention layers and ignores the setting.

    Frozen BatchNorm: while the model trains, every BatchNorm layer whose parameters are all frozen
    (`requires_grad=False`, e.g. the vision tower under LoRA or linear probing) stays in eval mode, i.e. it normalises
    with its running statistics and does not update them. `train()` applies this, and so does each training forward of
    the vision tower (eager mode), so the order of `train()` and `get_peft_model(...)` does not matter. A frozen tower
    thus computes the same function during and after training, and a LoRA adapter saved without the tower's buffers
    reloads exactly. Set `model.keep_frozen_batchnorm_in_eval = False` to let such layers update their statistics
    (e.g. for test-time BatchNorm adaptation).
    """

    config: OphCLIPConfig
    config_class = OphCLIPConfig
    base_model_prefix = "ophclip"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    # OphCLIP adds no attention layer of its own: the towers are transformers models that check the requested
    # implementation themselves (see `_build_vision_side` for towers without attention).
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _no_split_modules = ["BertLayer", "CLIPEncoderLayer", "ResNetStage"]

    keep_frozen_batchnorm_in_eval = True

    def _init_weights(self, module):
        # The towers are PreTrainedModels with their own `_init_weights` (CLIP scales its attention and MLP layers,
        # ResNet uses Kaiming), so only OphCLIP's own layers are initialised here, found through their owner: a rule
        # for every `nn.Linear` would also reach the towers' layers when missing weights are initialised on load.
        if not isinstance(module, OphCLIPVideoEncoderMixin):
            return
        std = self.config.initializer_range
        for name in ("visual_projection", "text_projection", "classifier"):
            layer = getattr(module, name, None)
            if isinstance(layer, nn.Linear):
                init.normal_(layer.weight, mean=0.0, std=std)
                if layer.bias is not None:
                    init.zeros_(layer.bias)
        if isinstance(module, OphCLIPModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    @classmethod
    def is_custom_code(cls) -> bool:
        # transformers assumes that custom (registered / remote) code may initialise weights without
        # `transformers.initialization`, and then, when it initialises the weights a checkpoint lacks, skips every
        # module whose own tensors are all set, which also skips the towers' composite layers (CLIP scales q/k/v/MLP
        # weights from `CLIPAttention` / `CLIPMLP`, which have no tensors of their own) and leaves them at the default
        # init. OphCLIP's `_init_weights` uses `transformers.initialization`, ties no modules and needs no weight
        # conversions, so it is handled like library code.
        return False

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.keep_frozen_batchnorm_in_eval:
            set_frozen_batchnorm_to_eval(self)
        return self


class OphCLIPVideoEncoderMixin:
    """The vision side shared by [`OphCLIPModel`] and [`OphCLIPForVideoClassification`].

    Both keep the tower as `vision_model` and the projection as `visual_projection`, so a classifier loads the vision
    weights of an `OphCLIPModel` checkpoint by name.
    """

    def _build_vision_side(self, config: OphCLIPConfig):
        try:
            tower_class = AutoModel._model_mapping[type(config.vision_config)]
        except KeyError:  # AutoModel.from_config below raises the clear error
            tower_class = None
        if tower_class is not None and not (
            tower_class._supports_sdpa or tower_class._supports_flash_attn or tower_class._supports_flex_attn
        ):
            # A tower without attention layers (ResNet) would refuse a model-wide `attn_implementation="sdpa"`, which
            # transformers propagates to every sub-config ("does not support ... sdpa"): let it pick its default.
            config.vision_config._attn_implementation_internal = None
        self.vision_model = AutoModel.from_config(config.vision_config)
        self.visual_projection = nn.Linear(
            config.vision_hidden_size, config.projection_dim, bias=config.visual_projection_bias
        )
        # ResNet towers have no per-layer checkpointing of their own; this flag (set by
        # `activation_checkpointing_enable`) makes `_vision_tower` checkpoint each ResNet stage.
        self.gradient_checkpointing = False

    def _vision_tower(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        """Run the tower on frames `(N, C, H, W)`; `pooler_output` is `(N, hidden)` whatever the tower."""
        if self.training and self.keep_frozen_batchnorm_in_eval and not torch.compiler.is_compiling():
            # Also covers a tower frozen after `train()` was called (e.g. `get_peft_model` on a model in train mode).
            set_frozen_batchnorm_to_eval(self.vision_model)
        if self.config.vision_config.model_type == "resnet" and self.gradient_checkpointing and self.training:
            tower = self.vision_model
            output_hidden_states = kwargs.get("output_hidden_states")
            if output_hidden_states is None:
                output_hidden_states = tower.config.output_hidden_states
            hidden = tower.embedder(pixel_values)
            hidden_states = (hidden,) if output_hidden_states else None
            for stage in tower.encoder.stages:
                hidden = self._gradient_checkpointing_func(stage.__call__, hidden)
                if output_hidden_states:
                    hidden_states += (hidden,)
            outputs = BaseModelOutputWithPooling(
                last_hidden_state=hidden, pooler_output=tower.pooler(hidden), hidden_states=hidden_states
            )
        else:
            outputs = self.vision_model(pixel_values=pixel_values, return_dict=True, **kwargs)
        # ResNet pools to (N, C, 1, 1); ViT towers already give (N, hidden).
        outputs.pooler_output = outputs.pooler_output.flatten(1)
        return outputs

    @can_return_tuple
    def get_image_features(
        self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple | BaseModelOutputWithPooling:
        r"""
        Embed single frames.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(num_frames, num_channels, height, width)`):
                Preprocessed frames.
            kwargs (`output_hidden_states`, `output_attentions`, `return_dict`):
                Passed on to the vision tower, as in transformers' `CLIPModel.get_image_features`.

        Returns:
            The vision tower's output (a `BaseModelOutputWithPooling`, or a tuple with `return_dict=False`) whose
            `pooler_output` `(num_frames, projection_dim)` holds the projected, un-normalised frame embeddings (as
            transformers' `CLIPModel.get_image_features`); `last_hidden_state` and `hidden_states` are the tower's, one
            row per frame.
        """
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)
            raise ValueError(f"pixel_values must be a tensor of shape (num_frames, channels, height, width), got {shape}.")
        outputs = self._vision_tower(pixel_values, **kwargs)
        outputs.pooler_output = self.visual_projection(outputs.pooler_output)
        return outputs

    @can_return_tuple
    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | BaseModelOutputWithPooling:
        r"""
        Embed videos: every frame goes through the vision tower, the pooled frame features are averaged over the real
        frames of each video (those `frame_mask` marks) and projected.

        Args:
            pixel_values_videos (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, height, width)`):
                Preprocessed frames, e.g. from [`OphCLIPVideoProcessor`].
            frame_mask (`torch.LongTensor` or `torch.BoolTensor` of shape `(batch_size, num_frames)`, *optional*):
                1 for real frames, 0 for padding. Padded frames are excluded from the mean (with `torch.where`, so
                whatever finite values they hold cannot change the embedding). They still run through the tower: the
                forward has no data-dependent shapes or branches, so it compiles (`fullgraph=True`) and exports
                with a mask, and never waits for the device. In eval mode every frame is processed on its own; in
                train mode a BatchNorm tower that is not frozen computes its batch statistics over all frames,
                padding included.
            kwargs (`output_hidden_states`, `output_attentions`, `return_dict`):
                Passed on to the vision tower.

        Returns:
            `BaseModelOutputWithPooling` (a tuple with `return_dict=False`):
            - `pooler_output` `(batch_size, projection_dim)`: the projected, un-normalised video embeddings;
            - `last_hidden_state`: the tower's last hidden state per video, `(batch_size, num_frames, ...)`, i.e.
              `(batch_size, num_frames, seq_len, hidden_size)` for a ViT tower and
              `(batch_size, num_frames, channels, height, width)` for a ResNet tower; `last_hidden_state[i, t]` belongs
              to frame `t` of video `i`, and positions where `frame_mask` is 0 hold the tower's output on the padding;
            - `hidden_states` / `attentions` (when asked for): the tower's own tensors, one row per frame,
              `(batch_size * num_frames, ...)` with row `i * num_frames + t` for frame `t` of video `i`
              (`.unflatten(0, (batch_size, num_frames))` gives them per video). They are the tensors the tower
              computed with, so `retain_grad()` on them works (e.g. for gradient-based attribution).

        Example:

        ```python
        >>> import torch
        >>> from transformers import BertConfig, ResNetConfig
        >>> from modeling_ophclip import OphCLIPConfig, OphCLIPModel

        >>> config = OphCLIPConfig(
        ...     vision_config=ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1]),
        ...     text_config=BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
        ...                            intermediate_size=37),
        ...     projection_dim=32)
        >>> model = OphCLIPModel(config).eval()
        >>> videos = torch.randn(2, 4, 3, 32, 32)  # (batch, frames, channels, height, width)
        >>> frame_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])  # the second video has two real frames
        >>> with torch.no_grad():
        ...     out = model.get_video_features(videos, frame_mask=frame_mask, output_hidden_states=True)
        >>> out.pooler_output.shape  # one embedding per video
        torch.Size([2, 32])
        >>> out.last_hidden_state.shape  # (batch, frames, channels, height, width) of the ResNet's last stage
        torch.Size([2, 4, 32, 4, 4])
        >>> len(out.hidden_states), out.hidden_states[0].shape  # stem + 2 stages, one row per frame
        (3, torch.Size([8, 8, 8, 8]))
        ```
        """
        _check_video_inputs(pixel_values_videos, frame_mask, self.config.vision_config.num_channels)
        batch_size, num_frames = pixel_values_videos.shape[:2]
        outputs = self._vision_tower(pixel_values_videos.flatten(0, 1), **kwargs)
        pooled = masked_frame_mean(outputs.pooler_output.unflatten(0, (batch_size, num_frames)), frame_mask)

        # The projection is affine, so projecting the mean of the frame features equals the mean of the projected
        # frame embeddings (the predecessors' order) at a T-th of the cost.
        return BaseModelOutputWithPooling(
            last_hidden_state=outputs.last_hidden_state.unflatten(0, (batch_size, num_frames)),
            pooler_output=self.visual_projection(pooled),
            # The tower's own tensors (not reshaped views), so that `retain_grad()` on them works.
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )


class OphCLIPModel(OphCLIPVideoEncoderMixin, OphCLIPPreTrainedModel):
    r"""
    OphCLIP dual encoder: video tower + text tower + projections + logit scale.

    `output_hidden_states=True` / `output_attentions=True` (in the call or the config) return the towers' hidden
    states / attention weights in `text_model_output` and `vision_model_output`; `return_dict=False` returns a tuple.
    See [`OphCLIPPreTrainedModel`] for attention implementations and frozen BatchNorm layers during training.

    Example:

    ```python
    >>> import torch
    >>> from transformers import BertConfig, ResNetConfig
    >>> from modeling_ophclip import OphCLIPConfig, OphCLIPModel

    >>> config = OphCLIPConfig(
    ...     vision_config=ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1]),
    ...     text_config=BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
    ...                            intermediate_size=37),
    ...     projection_dim=32)
    >>> model = OphCLIPModel(config).eval()
    >>> input_ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    >>> attention_mask = (input_ids != 0).long()
    >>> videos = torch.randn(3, 4, 3, 32, 32)
    >>> with torch.no_grad():
    ...     out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=videos,
    ...                 output_hidden_states=True)
    >>> out.logits_per_video.shape  # 3 videos x 2 texts
    torch.Size([3, 2])
    >>> probs = out.logits_per_video.softmax(dim=-1)  # zero-shot: which text fits each video
    >>> len(out.text_model_output.hidden_states)  # embeddings + 4 BERT layers
    5
    ```
    """

    main_input_name = "input_ids"

    def __init__(self, config: OphCLIPConfig):
        super().__init__(config)
        self.text_model = AutoModel.from_config(config.text_config, add_pooling_layer=False)
        if maybe_install_capturing_hooks is not None:
            # The SurgVLP pooling always captures the text tower's hidden states. transformers installs the capturing
            # hooks on first use, under a lock that torch.compile cannot trace (a graph break, or an error with
            # fullgraph=True, on the first compiled call): install them now.
            maybe_install_capturing_hooks(self.text_model)
        self.text_projection = (
            nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
            if config.use_text_projection
            else nn.Identity()
        )
        self._build_vision_side(config)
        logit_scale = torch.tensor(float(config.logit_scale_init_value))
        if config.learnable_logit_scale:
            self.logit_scale = nn.Parameter(logit_scale)
        else:
            # A buffer, not a frozen Parameter: from_pretrained re-creates parameters with requires_grad=True, which
            # would silently train the predecessors' fixed temperature. The state-dict key is the same either way.
            self.register_buffer("logit_scale", logit_scale)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        """The text tower's word embeddings (so `resize_token_embeddings` can extend the vocabulary, and
        `enable_input_require_grads` works for PEFT with reentrant checkpointing)."""
        return self.text_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.text_model.set_input_embeddings(value)

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | BaseModelOutputWithPooling:
        r"""
        Embed texts with the configured pooling (`config.text_pooling`).

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                Token ids from the processor's BERT tokenizer.
            attention_mask (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 for real tokens, 0 for padding. Without it every position counts as real.
            token_type_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                BERT segment ids.
            kwargs (`output_hidden_states`, `output_attentions`, `return_dict`, ...):
                Passed on to the text tower. `output_hidden_states` may be `True` or a selection of layer indices, as
                for any transformers model.

        Returns:
            `BaseModelOutputWithPooling` (a tuple with `return_dict=False`) whose `pooler_output`
            `(batch_size, projection_dim)` holds the un-normalised text embeddings and `last_hidden_state`
            `(batch_size, sequence_length, hidden_size)` the text tower's last layer. `hidden_states` and `attentions`
            are set only when asked for (the SurgVLP pooling reads the last layers internally either way).
        """
        _check_text_inputs(input_ids, attention_mask, self.config.text_config.max_position_embeddings)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        pooling = self.config.text_pooling
        requested = kwargs.pop("output_hidden_states", None)
        if requested is None:
            requested = self.config.output_hidden_states or self.text_model.config.output_hidden_states
        capture = requested
        if pooling == "surgvlp" and requested is not True:
            # Capture the last `text_pooling_layers` hidden states the pooling reads (plus any selected ones).
            needed = range(-self.config.text_pooling_layers, 0)
            capture = sorted(set(needed) | set(_selected_indices(requested) or ()))
        outputs = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=capture,
            return_dict=True,
            **kwargs,
        )
        if pooling == "surgvlp":
            pooled = surgvlp_text_pooling(outputs.hidden_states, attention_mask, self.config.text_pooling_layers)
        elif pooling == "cls":
            pooled = outputs.last_hidden_state[:, 0]
        else:
            pooled = masked_mean_pooling(outputs.last_hidden_state, attention_mask)
        return BaseModelOutputWithPooling(
            last_hidden_state=outputs.last_hidden_state,
            pooler_output=self.text_projection(pooled),
            hidden_states=_keep_requested_hidden_states(outputs.hidden_states, requested),
            attentions=outputs.attentions,
        )

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | OphCLIPOutput:
        r"""
        Args:
            input_ids, attention_mask, token_type_ids: as in [`~OphCLIPModel.get_text_features`].
            pixel_values_videos, frame_mask: as in [`~OphCLIPModel.get_video_features`].
            return_loss (`bool`, *optional*):
                Whether to return the symmetric contrastive loss; text i pairs with video i, so both batches must have
                the same size.
            kwargs (`output_hidden_states`, `output_attentions`, `return_dict`):
                Passed on to both towers; their hidden states / attentions are in `text_model_output` and
                `vision_model_output`.

        Returns:
            [`OphCLIPOutput`] (a tuple with `return_dict=False`) with L2-normalised `text_embeds` and `video_embeds`
            and the similarities scaled by `exp(logit_scale)` (1/τ).
        """
        if input_ids is None or pixel_values_videos is None:
            raise ValueError(
                "OphCLIPModel.forward needs both input_ids and pixel_values_videos; use get_text_features or "
                "get_video_features to embed one modality."
            )
        if return_loss and input_ids.shape[0] != pixel_values_videos.shape[0]:
            raise ValueError(
                f"return_loss=True pairs text i with video i, so the batch sizes must match; got {input_ids.shape[0]} "
                f"texts and {pixel_values_videos.shape[0]} videos."
            )
        text_outputs = self.get_text_features(input_ids, attention_mask, token_type_ids, return_dict=True, **kwargs)
        video_outputs = self.get_video_features(pixel_values_videos, frame_mask, return_dict=True, **kwargs)
        text_embeds = F.normalize(text_outputs.pooler_output, dim=-1)
        video_embeds = F.normalize(video_outputs.pooler_output, dim=-1)
        logits_per_text = text_embeds @ video_embeds.t() * self.logit_scale.exp()
        logits_per_video = logits_per_text.t()
        loss = ophclip_loss(logits_per_text) if return_loss else None
        return OphCLIPOutput(
            loss=loss,
            logits_per_video=logits_per_video,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            video_embeds=video_embeds,
            text_model_output=text_outputs,
            vision_model_output=video_outputs,
        )


class OphCLIPForVideoClassification(OphCLIPVideoEncoderMixin, OphCLIPPreTrainedModel):
    r"""
    OphCLIP's video tower with a linear classifier on the video embedding, for fine-tuning and linear probing on
    labelled videos (phases: `problem_type="single_label_classification"`; instruments:
    `problem_type="multi_label_classification"`). Loading an [`OphCLIPModel`] checkpoint keeps its vision weights and
    starts a fresh classifier; the text tower is not built.

    For linear probing, freeze the tower (`model.vision_model.requires_grad_(False)`): its BatchNorm layers then stay in
    eval mode while the classifier trains (see [`OphCLIPPreTrainedModel`]).

    Example:

    ```python
    >>> import torch
    >>> from transformers import BertConfig, ResNetConfig
    >>> from modeling_ophclip import OphCLIPConfig, OphCLIPForVideoClassification

    >>> config = OphCLIPConfig(
    ...     vision_config=ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1]),
    ...     text_config=BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
    ...                            intermediate_size=37),
    ...     projection_dim=32, num_labels=3)
    >>> model = OphCLIPForVideoClassification(config)
    >>> out = model(pixel_values_videos=torch.randn(2, 4, 3, 32, 32), labels=torch.tensor([0, 2]))
    >>> out.logits.shape
    torch.Size([2, 3])
    ```
    """

    main_input_name = "pixel_values_videos"
    input_modalities = ("video",)
    # An OphCLIPModel checkpoint carries the text side, which this model does not build.
    _keys_to_ignore_on_load_unexpected = [r"^text_model\.", r"^text_projection\.", r"^logit_scale$"]

    def __init__(self, config: OphCLIPConfig):
        super().__init__(config)
        self._build_vision_side(config)
        self.classifier = nn.Linear(config.projection_dim, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values_videos: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | OphCLIPVideoClassifierOutput:
        r"""
        Args:
            pixel_values_videos, frame_mask: as in [`~OphCLIPModel.get_video_features`].
            labels (`torch.LongTensor` of shape `(batch_size,)` or `torch.FloatTensor` of shape
                `(batch_size, num_labels)` for multi-label problems, *optional*):
                Targets for the loss.
            kwargs (`output_hidden_states`, `output_attentions`, `return_dict`):
                Passed on to the vision tower; its hidden states / attentions come back one row per frame,
                `(batch_size * num_frames, ...)`.
        """
        if pixel_values_videos is None:
            raise ValueError("OphCLIPForVideoClassification.forward needs pixel_values_videos.")
        video_outputs = self.get_video_features(pixel_values_videos, frame_mask, return_dict=True, **kwargs)
        video_embeds = video_outputs.pooler_output
        logits = self.classifier(video_embeds)
        loss = None
        if labels is not None:
            if labels.shape[0] != logits.shape[0]:
                raise ValueError(
                    f"labels has {labels.shape[0]} rows but pixel_values_videos holds {logits.shape[0]} videos."
                )
            loss = self.loss_function(labels, logits, self.config)
        return OphCLIPVideoClassifierOutput(
            loss=loss,
            logits=logits,
            video_embeds=video_embeds,
            hidden_states=video_outputs.hidden_states,
            attentions=video_outputs.attentions,
        )


def build_zero_shot_classifier(encode_texts, classes, templates=None, batch_size: int = 256) -> torch.Tensor:
    r"""
    Class names × prompt templates → one L2-normalised text embedding per class, the zero-shot classifier (the
    weights that `logit_scale.exp() * video_embeds @ classifier.T` scores with).

    Every prompt is embedded (in batches of `batch_size`), L2-normalised, averaged over its class and re-normalised,
    as CLIP's prompt ensembling does. The `ophclip` command, the evaluation protocols and the pipeline all build their
    classes with it.

    Args:
        encode_texts (`Callable[[list[str]], torch.Tensor]`):
            A batch of texts → their embeddings `(n, dim)`, e.g.
            `lambda t: model.get_text_features(**processor(text=t, return_tensors="pt")).pooler_output`.
        classes (`list[str]`, or `list[list[str]]` / `dict[str, list[str]]`):
            Class names, each written into every template; or, per class, its prompts as they are.
        templates (`list[str]`, *optional*):
            Format strings with one `{}` for the class name; required with class names.
        batch_size (`int`, *optional*, defaults to 256):
            Prompts embedded per call of `encode_texts`.

    Returns:
        `torch.FloatTensor` of shape `(num_classes, dim)`, float32, rows of unit norm.
    """
    if isinstance(classes, dict):
        classes = list(classes.values())
    classes = list(classes)
    if not classes:
        raise ValueError("build_zero_shot_classifier: no classes given")
    if all(isinstance(c, str) for c in classes):
        if not templates or any("{}" not in t for t in templates):
            raise ValueError("build_zero_shot_classifier: class names need templates, each with '{}' for the name")
        prompts = [[template.format(name) for template in templates] for name in classes]
    else:
        prompts = [list(texts) for texts in classes]
        empty = [i for i, texts in enumerate(prompts) if not texts]
        if empty:
            raise ValueError(f"build_zero_shot_classifier: no prompt for class(es) at position {empty}")
    flat = [text for texts in prompts for text in texts]
    with torch.no_grad():
        embeds = torch.cat([torch.as_tensor(encode_texts(flat[i : i + batch_size])).float()
                            for i in range(0, len(flat), batch_size)])
    embeds = F.normalize(embeds, dim=-1)
    means = torch.stack([chunk.mean(dim=0) for chunk in embeds.split([len(texts) for texts in prompts])])
    return F.normalize(means, dim=-1)


__all__ = [
    "build_zero_shot_classifier",
    "OphCLIPPreTrainedModel",
    "OphCLIPModel",
    "OphCLIPForVideoClassification",
    "OphCLIPOutput",
    "OphCLIPVideoClassifierOutput",
    "set_frozen_batchnorm_to_eval",
]
