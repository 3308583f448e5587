"""OphCLIP processor: a BERT tokenizer and an [`OphCLIPVideoProcessor`] behind one call."""

from transformers import BertTokenizer
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .video_processing_ophclip import OphCLIPVideoProcessor


class OphCLIPProcessor(ProcessorMixin):
    r"""
    Prepares texts and videos for [`OphCLIPModel`]: `input_ids`, `attention_mask`, `token_type_ids` from the
    tokenizer, `pixel_values_videos` and `frame_mask` from the video processor.

    Texts are padded to the longest in the batch and truncated to the tokenizer's `model_max_length` unless the call
    says otherwise, so a text can never exceed the text tower's position limit by accident.

    Args:
        video_processor ([`OphCLIPVideoProcessor`]): frame sampling and preprocessing.
        tokenizer ([`BertTokenizer`]): a WordPiece tokenizer with the text tower's vocabulary.

    Example:

    ```python
    >>> import numpy as np
    >>> from transformers import BertTokenizer
    >>> from modeling_ophclip import OphCLIPProcessor, OphCLIPVideoProcessor

    >>> vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "lens", "capsule"])}
    >>> processor = OphCLIPProcessor(OphCLIPVideoProcessor(size=32, crop_size=32),
    ...                              BertTokenizer(vocab=vocab, model_max_length=16))
    >>> video = np.zeros((4, 48, 64, 3), dtype=np.uint8)  # 4 decoded RGB frames
    >>> inputs = processor(text=["the lens capsule", "the lens"], videos=[video, video], return_tensors="pt")
    >>> inputs["input_ids"].shape, inputs["pixel_values_videos"].shape
    (torch.Size([2, 5]), torch.Size([2, 4, 3, 32, 32]))
    ```
    """

    def __init__(self, video_processor=None, tokenizer=None, **kwargs):
        super().__init__(video_processor, tokenizer, **kwargs)

    def check_argument_for_proper_class(self, argument_name, argument):
        # The base check looks video processors up through IMAGE_PROCESSOR_MAPPING, which is an import dummy when PIL
        # is missing (AttributeError: ... has no attribute '_extra_content'); check our own class instead.
        if argument_name == "video_processor":
            if not isinstance(argument, OphCLIPVideoProcessor):
                raise TypeError(f"video_processor must be an OphCLIPVideoProcessor, got {type(argument).__name__}.")
            return OphCLIPVideoProcessor
        return super().check_argument_for_proper_class(argument_name, argument)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        # The base method loads the video processor through AutoVideoProcessor, which requires torchvision, and the
        # tokenizer through AutoTokenizer, which reads config.json (model_type "ophclip") and asks for remote code a
        # second time. Both sub-processors are known here, so load them directly.
        kwargs.pop("trust_remote_code", None)
        video_config = dict((processor_dict or {}).get("video_processor", {}))
        for key in ("video_processor_type", "auto_map", "processor_class", "_processor_class"):
            video_config.pop(key, None)
        tokenizer = BertTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return [OphCLIPVideoProcessor(**video_config), tokenizer]

    def __call__(self, text=None, videos=None, return_tensors="pt", num_frames=None, fps=None, **text_kwargs):
        """Tokenize `text` and/or preprocess `videos`; extra keyword arguments go to the tokenizer."""
        if text is None and videos is None:
            raise ValueError("OphCLIPProcessor needs `text`, `videos` or both.")
        data = {}
        if text is not None:
            if isinstance(text, str):
                text = [text]
            if len(text) == 0 or not all(isinstance(t, str) for t in text):
                raise ValueError("text must be a string or a non-empty list of strings.")
            text_kwargs.setdefault("padding", True)
            text_kwargs.setdefault("truncation", True)
            data.update(self.tokenizer(text, return_tensors=return_tensors, **text_kwargs))
        if videos is not None:
            data.update(self.video_processor(videos, num_frames=num_frames, fps=fps, return_tensors=return_tensors))
        return BatchFeature(data, tensor_type=return_tensors)

    @property
    def model_input_names(self):
        return ["input_ids", "attention_mask", "token_type_ids", "pixel_values_videos", "frame_mask"]


__all__ = ["OphCLIPProcessor"]
