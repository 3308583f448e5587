"""Zero-shot video classification with OphCLIP as a transformers `Pipeline`.

Importing this module registers the task `"zero-shot-video-classification"` with transformers' `PIPELINE_REGISTRY`,
so that `transformers.pipeline` builds an [`OphCLIPZeroShotVideoClassificationPipeline`]:

```python
>>> import modeling_ophclip.pipeline_ophclip  # registers the task (and OphCLIP with the Auto classes)
>>> from transformers import pipeline

>>> classifier = pipeline("zero-shot-video-classification", model="path/to/ophclip-folder", device="cpu")
>>> classifier("case_01.mp4", candidate_labels=["capsulorhexis", "phacoemulsification", "lens implantation"],
...            hypothesis_template="a surgical video of {}.", num_frames=8)
[{'score': 0.71, 'label': 'capsulorhexis'}, {'score': 0.2, 'label': 'phacoemulsification'}, ...]
```

`model=` may be a local folder written by `OphCLIPModel.save_pretrained` + `OphCLIPProcessor.save_pretrained` (the
processor is loaded from the same folder through `AutoProcessor`), a Hub id, or an already-loaded `OphCLIPModel`
together with `processor=OphCLIPProcessor(...)`. Pass `device="cpu"` (or `device=-1`) on a machine without a GPU
where a CUDA build of torch is installed; otherwise the pipeline picks device 0 like every transformers pipeline.

A video is a path, raw `bytes`, a file object, or decoded frames: a `(T, H, W, 3)` / `(T, 3, H, W)` uint8 array or
tensor, or a list of `(H, W, 3)` frames. Frames are sampled as the processor says (`num_frames` segment centres, or
`fps` frames per second) unless the call overrides `num_frames` / `fps`. Scores are the softmax over the candidate
labels of the scaled cosine similarities (`logits_per_video`), as in CLIP's zero-shot image pipeline.
"""

from typing import Any

import numpy as np
import torch
from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY, Pipeline

# Importing this submodule runs the package's __init__, which registers OphCLIP with the Auto classes.


TASK = "zero-shot-video-classification"
DEFAULT_HYPOTHESIS_TEMPLATE = "a surgical video of {}."


def _is_frame_list(video) -> bool:
    return (
        isinstance(video, (list, tuple))
        and len(video) > 0
        and all(isinstance(frame, (np.ndarray, torch.Tensor)) and frame.ndim == 3 for frame in video)
    )


class OphCLIPZeroShotVideoClassificationPipeline(Pipeline):
    """
    Zero-shot video classification with an [`OphCLIPModel`]: each candidate label is written into
    `hypothesis_template`, embedded by the text tower and compared with the video embedding (the mean of the sampled
    frames' embeddings); the scores are the softmax over labels.

    Call arguments:
        videos (`str`, `bytes`, array, tensor, list of frames, or a list of those):
            One video, or a list of videos (paths/bytes) to classify one after another.
        candidate_labels (`list[str]`):
            The possible classes; at least one.
        hypothesis_template (`str` or `list[str]`, *optional*, defaults to `"a surgical video of {}."`):
            The text that each label is written into (`"{}"` if the labels are already sentences); several templates
            are averaged per label (`build_zero_shot_classifier`, as the evaluation protocols do).
        num_frames (`int`, *optional*), fps (`float`, *optional*):
            Override the processor's frame sampling for decoded files.
        tokenizer_kwargs (`dict`, *optional*):
            Extra arguments for the tokenizer.

    Returns:
        A list of `{"score": float, "label": str}` sorted by decreasing score (a list of such lists for a list of
        videos).
    """

    _load_processor = True
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.processor is None:
            raise ValueError(
                "the zero-shot-video-classification pipeline needs an OphCLIPProcessor: save it next to the model "
                "(processor.save_pretrained(folder)) or pass processor=..."
            )
        if getattr(self.model.config, "model_type", None) != "ophclip" or not hasattr(self.model, "get_text_features"):
            raise ValueError(
                f"the zero-shot-video-classification pipeline needs an OphCLIPModel, got {type(self.model).__name__}."
            )

    def __call__(self, videos=None, candidate_labels: list[str] | None = None, **kwargs: Any):
        if videos is None:
            videos = kwargs.pop("video", None)
        if videos is None:
            raise ValueError("the zero-shot-video-classification pipeline needs a video.")
        if candidate_labels is None or isinstance(candidate_labels, str) or len(candidate_labels) == 0:
            raise ValueError("candidate_labels must be a non-empty list of strings.")
        if _is_frame_list(videos):  # a list of frames is one video, not a batch of inputs
            videos = np.stack([np.asarray(frame) for frame in videos])
        return super().__call__(videos, candidate_labels=list(candidate_labels), **kwargs)

    def _sanitize_parameters(self, candidate_labels=None, hypothesis_template=None, num_frames=None, fps=None,
                             tokenizer_kwargs=None, **kwargs):
        if kwargs:
            raise TypeError(f"unexpected arguments for the {TASK} pipeline: {sorted(kwargs)}")
        preprocess_params = {}
        if candidate_labels is not None:
            preprocess_params["candidate_labels"] = candidate_labels
        if hypothesis_template is not None:
            preprocess_params["hypothesis_template"] = hypothesis_template
        if num_frames is not None:
            preprocess_params["num_frames"] = num_frames
        if fps is not None:
            preprocess_params["fps"] = fps
        if tokenizer_kwargs is not None:
            preprocess_params["tokenizer_kwargs"] = tokenizer_kwargs
        return preprocess_params, {}, {}

    def preprocess(self, video, candidate_labels=None, hypothesis_template=DEFAULT_HYPOTHESIS_TEMPLATE,
                   num_frames=None, fps=None, tokenizer_kwargs=None):
        if not candidate_labels:
            raise ValueError("candidate_labels must be a non-empty list of strings.")
        if isinstance(video, memoryview):
            video = bytes(video)
        templates = [hypothesis_template] if isinstance(hypothesis_template, str) else list(hypothesis_template)
        if not templates or any("{}" not in template for template in templates):
            raise ValueError(f"hypothesis_template must contain '{{}}' where the label goes, got {hypothesis_template!r}")
        inputs = dict(self.processor(videos=video, num_frames=num_frames, fps=fps, return_tensors="pt"))
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.model.dtype)
        inputs["candidate_labels"] = list(candidate_labels)
        inputs["templates"] = templates
        inputs["tokenizer_kwargs"] = dict(tokenizer_kwargs or {})
        return inputs

    def _forward(self, model_inputs):
        import torch.nn.functional as F

        from .modeling_ophclip import build_zero_shot_classifier

        candidate_labels = model_inputs.pop("candidate_labels")
        templates = model_inputs.pop("templates")
        tokenizer_kwargs = model_inputs.pop("tokenizer_kwargs")

        def encode_texts(texts):
            text_inputs = self.processor(text=texts, return_tensors="pt", **tokenizer_kwargs)
            text_inputs = {name: value.to(self.model.device) for name, value in text_inputs.items()}
            return self.model.get_text_features(**text_inputs).pooler_output

        classifier = build_zero_shot_classifier(encode_texts, candidate_labels, templates)
        video = self.model.get_video_features(**model_inputs).pooler_output
        logits = self.model.logit_scale.exp().float() * F.normalize(video.float(), dim=-1) @ classifier.t()
        return {"candidate_labels": candidate_labels, "logits": logits}

    def postprocess(self, model_outputs):
        candidate_labels = model_outputs["candidate_labels"]
        scores = model_outputs["logits"][0].float().softmax(dim=-1).tolist()
        return [
            {"score": score, "label": label}
            for score, label in sorted(zip(scores, candidate_labels), key=lambda pair: -pair[0])
        ]


PIPELINE_REGISTRY.register_pipeline(
    TASK,
    pipeline_class=OphCLIPZeroShotVideoClassificationPipeline,
    pt_model=AutoModel,
    type="multimodal",
)

__all__ = ["OphCLIPZeroShotVideoClassificationPipeline", "DEFAULT_HYPOTHESIS_TEMPLATE", "TASK"]
