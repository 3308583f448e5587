"""OphCLIP model configuration."""

import math

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.bert.configuration_bert import BertConfig


TEXT_POOLING_MODES = ("surgvlp", "cls", "mean")
FRAME_POOLING_MODES = ("mean",)

# Bio_ClinicalBERT is BERT-base with the cased vocabulary of 28996 word pieces.
BIO_CLINICAL_BERT_VOCAB_SIZE = 28996


class OphCLIPConfig(PreTrainedConfig):
    r"""
    Configuration of an [`OphCLIPModel`]: a video tower (any vision model available through `AutoConfig`, run on every
    frame and pooled over time), a BERT text tower, and projections into a joint embedding space.

    The defaults reproduce the SurgVLP / HecVL / PeskaVLP architecture that OphCLIP builds on: a ResNet-50 vision tower
    followed by a 2048→768 linear projection with bias, a BERT-base text tower with Bio_ClinicalBERT's shapes whose
    sentence embedding is the SurgVLP pooling over its last four layers (no text projection), a 768-d joint space and a
    fixed temperature τ = 0.1.

    Args:
        text_config (`dict` or `BertConfig`, *optional*):
            Configuration of the text tower. Defaults to BERT-base with a vocabulary of 28996 (Bio_ClinicalBERT).
        vision_config (`dict` or `PreTrainedConfig`, *optional*):
            Configuration of the per-frame vision tower, resolved through `AutoConfig` from its `model_type`. Defaults
            to a ResNet-50 (`model_type="resnet"`); a `clip_vision_model` (ViT) config works the same way.
        projection_dim (`int`, *optional*, defaults to 768):
            Dimension of the joint video–text embedding space.
        use_text_projection (`bool`, *optional*, defaults to `False`):
            Whether to project the pooled text features with a linear layer. When `False` (the predecessors' design)
            the text tower's hidden size must equal `projection_dim`.
        visual_projection_bias (`bool`, *optional*, defaults to `True`):
            Whether the frame projection has a bias (the predecessors' `global_embedder` has one).
        text_pooling (`str`, *optional*, defaults to `"surgvlp"`):
            How token states become one sentence vector:
            - `"surgvlp"`: for each of the last `text_pooling_layers` hidden layers, the sum of the states of the real
              (unmasked) tokens divided by the padded sequence length; the per-layer vectors are summed. This is the
              SurgVLP/HecVL/PeskaVLP pooling in vectorised form. The norm depends on the padded length, its direction
              does not.
            - `"cls"`: the last layer's state of the first (`[CLS]`) token.
            - `"mean"`: the mean over real tokens of the last layer.
        text_pooling_layers (`int`, *optional*, defaults to 4):
            Number of final hidden layers summed by the `"surgvlp"` pooling.
        frame_pooling (`str`, *optional*, defaults to `"mean"`):
            How frame embeddings become a video embedding. `"mean"` averages the projected frame embeddings over the
            frames the `frame_mask` marks as real.
        logit_scale_init_value (`float`, *optional*, defaults to `ln(10)`):
            Initial value of the log of the inverse temperature; `ln(1/0.1)` is the predecessors' τ = 0.1.
        learnable_logit_scale (`bool`, *optional*, defaults to `False`):
            Whether the logit scale is trained. The predecessors keep τ fixed.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of the projections.

    Example:

    ```python
    >>> from modeling_ophclip import OphCLIPConfig, OphCLIPModel
    >>> from transformers import BertConfig, CLIPVisionConfig

    >>> config = OphCLIPConfig()  # ResNet-50 + Bio_ClinicalBERT shapes, 768-d, tau = 0.1
    >>> config.vision_config.model_type, config.projection_dim
    ('resnet', 768)

    >>> # A ViT (CLIP vision) tower through the same config
    >>> vit = OphCLIPConfig(vision_config=CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    ...                                                     num_attention_heads=4, image_size=32, patch_size=8),
    ...                     text_config=BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=4,
    ...                                            num_attention_heads=4, intermediate_size=128),
    ...                     projection_dim=32, use_text_projection=True)
    >>> model = OphCLIPModel(vit)
    ```
    """

    model_type = "ophclip"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(BertConfig, init_kwargs={"vocab_size": BIO_CLINICAL_BERT_VOCAB_SIZE}),
        "vision_config": SubConfigSpec(AutoConfig, model_type="resnet"),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    projection_dim: int = 768
    use_text_projection: bool = False
    visual_projection_bias: bool = True
    text_pooling: str = "surgvlp"
    text_pooling_layers: int = 4
    frame_pooling: str = "mean"
    logit_scale_init_value: float = math.log(10.0)
    learnable_logit_scale: bool = False
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._check_values()

    @property
    def vision_hidden_size(self) -> int:
        """Width of the vision tower's pooled output (the input of the visual projection)."""
        hidden_size = getattr(self.vision_config, "hidden_size", None)
        if hidden_size is None:
            hidden_sizes = getattr(self.vision_config, "hidden_sizes", None)
            if not hidden_sizes:
                raise ValueError(
                    f"vision_config of type {self.vision_config.model_type!r} has neither `hidden_size` nor "
                    "`hidden_sizes`; expected a ViT-like or ResNet-like vision config."
                )
            hidden_size = hidden_sizes[-1]
        return hidden_size

    def _check_values(self):
        if self.text_config.model_type != "bert":
            raise ValueError(f"text_config must be a BERT config (model_type 'bert'), got {self.text_config.model_type!r}.")
        if not isinstance(self.projection_dim, int) or self.projection_dim <= 0:
            raise ValueError(f"projection_dim must be a positive integer, got {self.projection_dim!r}.")
        if self.text_pooling not in TEXT_POOLING_MODES:
            raise ValueError(f"text_pooling must be one of {TEXT_POOLING_MODES}, got {self.text_pooling!r}.")
        if self.frame_pooling not in FRAME_POOLING_MODES:
            raise ValueError(f"frame_pooling must be one of {FRAME_POOLING_MODES}, got {self.frame_pooling!r}.")
        num_layers = self.text_config.num_hidden_layers
        if not isinstance(self.text_pooling_layers, int) or not 1 <= self.text_pooling_layers <= num_layers:
            raise ValueError(
                f"text_pooling_layers must be an integer between 1 and the text tower's num_hidden_layers ({num_layers}), "
                f"got {self.text_pooling_layers!r}."
            )
        if not self.use_text_projection and self.text_config.hidden_size != self.projection_dim:
            raise ValueError(
                f"use_text_projection=False requires text_config.hidden_size ({self.text_config.hidden_size}) to equal "
                f"projection_dim ({self.projection_dim}); set use_text_projection=True or change projection_dim."
            )
        if not isinstance(self.logit_scale_init_value, (int, float)) or not math.isfinite(self.logit_scale_init_value):
            raise ValueError(
                f"logit_scale_init_value must be a finite number (log of 1/temperature), got {self.logit_scale_init_value!r}."
            )
        self.vision_hidden_size  # raises a clear error for vision configs without a known width


__all__ = ["OphCLIPConfig"]
