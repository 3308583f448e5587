"""OphCLIP on transformers: configuration, models, processors, registered with the Auto classes.

Importing this package registers OphCLIP with `AutoConfig`, `AutoModel`, `AutoModelForVideoClassification` and
`AutoProcessor` in the current process, and marks the classes so that `save_pretrained` writes their code next to
the weights; such a folder loads with `trust_remote_code=True` where this package is not installed.

This is the lowest layer: it imports nothing else of ours (`tests/test_layers.py`), and every other package may import
it. Besides the files that travel as remote code (configuration, modeling, processing, video processing) it holds
`convert.py` (SurgVLP-family checkpoints), `pipeline_ophclip.py` and `saving.py` (folders written whole, the report of
weights that do not fit a model), which stay here.
"""

from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, AutoProcessor

from .configuration_ophclip import OphCLIPConfig
from .modeling_ophclip import (
    OphCLIPForVideoClassification,
    OphCLIPModel,
    OphCLIPOutput,
    OphCLIPPreTrainedModel,
    OphCLIPVideoClassifierOutput,
    build_zero_shot_classifier,
    masked_frame_mean,
    set_frozen_batchnorm_to_eval,
)
from .processing_ophclip import OphCLIPProcessor, OphCLIPProcessorKwargs
from .video_processing_ophclip import OphCLIPVideoProcessor, OphCLIPVideosKwargs


# Target names for PEFT/LoRA: the separate q/k/v projections of both towers (BERT text tower, CLIP-ViT vision tower).
LORA_TARGET_MODULES = r".*(text_model\.encoder\.layer\.\d+\.attention\.self\.(query|key|value)|vision_model\.encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj))"

AutoConfig.register(OphCLIPConfig.model_type, OphCLIPConfig, exist_ok=True)
AutoModel.register(OphCLIPConfig, OphCLIPModel, exist_ok=True)
AutoModelForVideoClassification.register(OphCLIPConfig, OphCLIPForVideoClassification, exist_ok=True)
AutoProcessor.register(OphCLIPConfig, OphCLIPProcessor, exist_ok=True)

OphCLIPConfig.register_for_auto_class()
OphCLIPModel.register_for_auto_class("AutoModel")
OphCLIPForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")
OphCLIPProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "LORA_TARGET_MODULES",
    "OphCLIPConfig",
    "OphCLIPForVideoClassification",
    "OphCLIPModel",
    "OphCLIPOutput",
    "OphCLIPPreTrainedModel",
    "OphCLIPProcessor",
    "OphCLIPProcessorKwargs",
    "OphCLIPVideoClassifierOutput",
    "OphCLIPVideoProcessor",
    "OphCLIPVideosKwargs",
    "build_zero_shot_classifier",
    "masked_frame_mean",
    "set_frozen_batchnorm_to_eval",
]

from . import pipeline_ophclip  # noqa: E402,F401  (registers the "zero-shot-video-classification" pipeline task)
