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
from transformers.utils import ModelOutput

from .configuration_ophclip import OphCLIPConfig


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row against the matching column (item i pairs with item i)."""
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def ophclip_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a square text × video similarity matrix."""
    return (contrastive_loss(logits_per_text) + contrastive_loss(logits_per_text.t())) / 2.0


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
        Output of [`OphCLIPModel.get_text_features`].
    vision_model_output (`BaseModelOutputWithPooling`):
        Output of [`OphCLIPModel.get_video_features`].
    """

    loss: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(
            self[k] if k not in ("text_model_output", "vision_model_output") else getattr(self, k).to_tuple()
            for k in self.keys()
        )


@dataclass
class OphCLIPVideoClassifierOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
        Classification loss (cross-entropy, or binary cross-entropy for `problem_type="multi_label_classification"`).
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        Classification scores.
    video_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        The un-normalised video embeddings the classifier reads.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None


def _check_video_inputs(pixel_values_videos: torch.Tensor, frame_mask: torch.Tensor | None, num_channels: int):
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
    if frame_mask is not None:
        if tuple(frame_mask.shape) != (batch_size, num_frames):
            raise ValueError(
                f"frame_mask must have shape (batch_size, num_frames) = {(batch_size, num_frames)}, got {tuple(frame_mask.shape)}."
            )
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
    config: OphCLIPConfig
    config_class = OphCLIPConfig
    base_model_prefix = "ophclip"
    main_input_name = "pixel_values_videos"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _no_split_modules = ["BertLayer", "CLIPEncoderLayer", "ResNetStage"]

    def _init_weights(self, module):
        # The towers are PreTrainedModels and initialise themselves; only our own layers are handled here.
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        if isinstance(module, OphCLIPModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)


class OphCLIPVideoEncoderMixin:
    """The vision side shared by [`OphCLIPModel`] and [`OphCLIPForVideoClassification`].

    Both keep the tower as `vision_model` and the projection as `visual_projection`, so a classifier loads the vision
    weights of an `OphCLIPModel` checkpoint by name.
    """

    def _build_vision_side(self, config: OphCLIPConfig):
        if config.vision_config.model_type == "resnet":
            # A ResNet has no attention: a model-wide `attn_implementation="sdpa"`, which transformers propagates to
            # every sub-config, would make ResNetModel refuse to build ("does not support ... sdpa").
            config.vision_config._attn_implementation_internal = None
        self.vision_model = AutoModel.from_config(config.vision_config)
        self.visual_projection = nn.Linear(
            config.vision_hidden_size, config.projection_dim, bias=config.visual_projection_bias
        )
        # ResNet towers have no per-layer checkpointing of their own; this flag (set by
        # `activation_checkpointing_enable`) makes `_vision_tower` checkpoint each ResNet stage.
        self.gradient_checkpointing = False

    def _vision_tower(self, pixel_values: torch.Tensor) -> BaseModelOutputWithPooling:
        """Run the tower on frames `(N, C, H, W)`; `pooler_output` is `(N, hidden)` whatever the tower."""
        if self.config.vision_config.model_type == "resnet" and self.gradient_checkpointing and self.training:
            tower = self.vision_model
            hidden = tower.embedder(pixel_values)
            for stage in tower.encoder.stages:
                hidden = self._gradient_checkpointing_func(stage.__call__, hidden)
            outputs = BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=tower.pooler(hidden))
        else:
            outputs = self.vision_model(pixel_values=pixel_values, return_dict=True)
        # ResNet pools to (N, C, 1, 1); ViT towers already give (N, hidden).
        outputs.pooler_output = outputs.pooler_output.flatten(1)
        return outputs

    def get_image_features(self, pixel_values: torch.Tensor) -> BaseModelOutputWithPooling:
        r"""
        Embed single frames.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(num_frames, num_channels, height, width)`):
                Preprocessed frames.

        Returns:
            `BaseModelOutputWithPooling` whose `pooler_output` `(num_frames, projection_dim)` holds the projected,
            un-normalised frame embeddings (as transformers' `CLIPModel.get_image_features`).
        """
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)
            raise ValueError(f"pixel_values must be a tensor of shape (num_frames, channels, height, width), got {shape}.")
        outputs = self._vision_tower(pixel_values)
        outputs.pooler_output = self.visual_projection(outputs.pooler_output)
        return outputs

    def get_video_features(
        self, pixel_values_videos: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> BaseModelOutputWithPooling:
        r"""
        Embed videos: every real frame goes through the vision tower, the pooled frame features are averaged over
        the real frames of each video and projected.

        Args:
            pixel_values_videos (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, height, width)`):
                Preprocessed frames, e.g. from [`OphCLIPVideoProcessor`].
            frame_mask (`torch.LongTensor` or `torch.BoolTensor` of shape `(batch_size, num_frames)`, *optional*):
                1 for real frames, 0 for padding. Padded frames are never run through the tower, so they cannot
                change the embedding.

        Returns:
            `BaseModelOutputWithPooling` whose `pooler_output` `(batch_size, projection_dim)` holds the projected,
            un-normalised video embeddings.

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
        ...     video_embeds = model.get_video_features(videos, frame_mask=frame_mask).pooler_output
        >>> video_embeds.shape
        torch.Size([2, 32])
        ```
        """
        _check_video_inputs(pixel_values_videos, frame_mask, self.config.vision_config.num_channels)
        batch_size, num_frames = pixel_values_videos.shape[:2]
        frames = pixel_values_videos.flatten(0, 1)
        if frame_mask is None or bool(frame_mask.all()):
            outputs = self._vision_tower(frames)
            pooled = outputs.pooler_output.view(batch_size, num_frames, -1).mean(dim=1)
        else:
            real = frame_mask.flatten().bool()
            outputs = self._vision_tower(frames[real])
            per_frame = outputs.pooler_output.new_zeros(batch_size * num_frames, outputs.pooler_output.shape[-1])
            per_frame = per_frame.index_put((real.nonzero().flatten(),), outputs.pooler_output)
            counts = frame_mask.sum(dim=1, keepdim=True).to(per_frame.dtype)
            pooled = per_frame.view(batch_size, num_frames, -1).sum(dim=1) / counts
        # The projection is affine, so projecting the mean of the frame features equals the mean of the projected
        # frame embeddings (the predecessors' order) at a T-th of the cost.
        outputs.pooler_output = self.visual_projection(pooled)
        return outputs


class OphCLIPModel(OphCLIPVideoEncoderMixin, OphCLIPPreTrainedModel):
    r"""
    OphCLIP dual encoder: video tower + text tower + projections + logit scale.

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
    ...     out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=videos)
    >>> out.logits_per_video.shape  # 3 videos x 2 texts
    torch.Size([3, 2])
    >>> probs = out.logits_per_video.softmax(dim=-1)  # zero-shot: which text fits each video
    ```
    """

    def __init__(self, config: OphCLIPConfig):
        super().__init__(config)
        self.text_model = AutoModel.from_config(config.text_config, add_pooling_layer=False)
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

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> BaseModelOutputWithPooling:
        r"""
        Embed texts with the configured pooling (`config.text_pooling`).

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                Token ids from the processor's BERT tokenizer.
            attention_mask (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 for real tokens, 0 for padding. Without it every position counts as real.
            token_type_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                BERT segment ids.

        Returns:
            `BaseModelOutputWithPooling` whose `pooler_output` `(batch_size, projection_dim)` holds the un-normalised
            text embeddings.
        """
        _check_text_inputs(input_ids, attention_mask, self.config.text_config.max_position_embeddings)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        pooling = self.config.text_pooling
        outputs = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=pooling == "surgvlp",
            return_dict=True,
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
            hidden_states=outputs.hidden_states,
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> OphCLIPOutput | tuple:
        r"""
        Args:
            input_ids, attention_mask, token_type_ids: as in [`~OphCLIPModel.get_text_features`].
            pixel_values_videos, frame_mask: as in [`~OphCLIPModel.get_video_features`].
            return_loss (`bool`, *optional*):
                Whether to return the symmetric contrastive loss; text i pairs with video i, so both batches must have
                the same size.

        Returns:
            [`OphCLIPOutput`] with L2-normalised `text_embeds` and `video_embeds` and the similarities scaled by
            `exp(logit_scale)` (1/τ).
        """
        if input_ids is None or pixel_values_videos is None:
            raise ValueError(
                "OphCLIPModel.forward needs both input_ids and pixel_values_videos; use get_text_features or "
                "get_video_features to embed one modality."
            )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        text_outputs = self.get_text_features(input_ids, attention_mask, token_type_ids)
        video_outputs = self.get_video_features(pixel_values_videos, frame_mask)
        if return_loss and input_ids.shape[0] != pixel_values_videos.shape[0]:
            raise ValueError(
                f"return_loss=True pairs text i with video i, so the batch sizes must match; got {input_ids.shape[0]} "
                f"texts and {pixel_values_videos.shape[0]} videos."
            )
        text_embeds = F.normalize(text_outputs.pooler_output, dim=-1)
        video_embeds = F.normalize(video_outputs.pooler_output, dim=-1)
        logits_per_text = text_embeds @ video_embeds.t() * self.logit_scale.exp()
        logits_per_video = logits_per_text.t()
        loss = ophclip_loss(logits_per_text) if return_loss else None
        output = OphCLIPOutput(
            loss=loss,
            logits_per_video=logits_per_video,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            video_embeds=video_embeds,
            text_model_output=text_outputs,
            vision_model_output=video_outputs,
        )
        return output if return_dict else output.to_tuple()


class OphCLIPForVideoClassification(OphCLIPVideoEncoderMixin, OphCLIPPreTrainedModel):
    r"""
    OphCLIP's video tower with a linear classifier on the video embedding, for fine-tuning and linear probing on
    labelled videos (phases: `problem_type="single_label_classification"`; instruments:
    `problem_type="multi_label_classification"`). Loading an [`OphCLIPModel`] checkpoint keeps its vision weights and
    starts a fresh classifier; the text tower is not built.

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

    # An OphCLIPModel checkpoint carries the text side, which this model does not build.
    _keys_to_ignore_on_load_unexpected = [r"^text_model\.", r"^text_projection\.", r"^logit_scale$"]

    def __init__(self, config: OphCLIPConfig):
        super().__init__(config)
        self._build_vision_side(config)
        self.classifier = nn.Linear(config.projection_dim, config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values_videos: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> OphCLIPVideoClassifierOutput | tuple:
        r"""
        Args:
            pixel_values_videos, frame_mask: as in [`~OphCLIPModel.get_video_features`].
            labels (`torch.LongTensor` of shape `(batch_size,)` or `torch.FloatTensor` of shape
                `(batch_size, num_labels)` for multi-label problems, *optional*):
                Targets for the loss.
        """
        if pixel_values_videos is None:
            raise ValueError("OphCLIPForVideoClassification.forward needs pixel_values_videos.")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        video_embeds = self.get_video_features(pixel_values_videos, frame_mask).pooler_output
        logits = self.classifier(video_embeds)
        loss = None
        if labels is not None:
            if labels.shape[0] != logits.shape[0]:
                raise ValueError(
                    f"labels has {labels.shape[0]} rows but pixel_values_videos holds {logits.shape[0]} videos."
                )
            loss = self.loss_function(labels, logits, self.config)
        output = OphCLIPVideoClassifierOutput(loss=loss, logits=logits, video_embeds=video_embeds)
        return output if return_dict else output.to_tuple()


__all__ = ["OphCLIPPreTrainedModel", "OphCLIPModel", "OphCLIPForVideoClassification", "OphCLIPOutput"]
