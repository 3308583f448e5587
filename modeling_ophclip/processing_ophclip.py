"""OphCLIP processor: a BERT tokenizer and an [`OphCLIPVideoProcessor`] behind one call."""

import inspect

from transformers import BertTokenizer
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin, Unpack
from transformers.video_utils import VideoInput

from .video_processing_ophclip import OphCLIPVideoProcessor, OphCLIPVideosKwargs


_MISSING = object()


class OphCLIPProcessorKwargs(ProcessingKwargs, total=False):
    """Keyword arguments of [`OphCLIPProcessor.__call__`], per modality as in transformers v5: `text_kwargs` go to the
    tokenizer, `videos_kwargs` ([`OphCLIPVideosKwargs`]) to the video processor. Flat keyword arguments are routed to
    the modality that accepts them (`padding` to the tokenizer, `num_frames` / `do_normalize` to the video processor,
    `return_tensors` to both); passing one both flat and in its modality's dict is an error."""

    videos_kwargs: OphCLIPVideosKwargs


class OphCLIPProcessor(ProcessorMixin):
    r"""
    Prepares texts and videos for [`OphCLIPModel`]: `input_ids`, `attention_mask`, `token_type_ids` from the
    tokenizer, `pixel_values_videos` and `frame_mask` from the video processor.

    Keyword arguments are merged the transformers v5 way ([`OphCLIPProcessorKwargs`]): per modality
    (`text_kwargs={...}`, `videos_kwargs={...}`) or flat (`padding="max_length"`, `num_frames=16`,
    `do_normalize=False`, `fps=1.0`), over the defaults below, the tokenizer's init arguments and the video processor's
    attributes. Texts are padded to the longest in the batch and truncated to the tokenizer's `model_max_length`
    unless the call says otherwise, so a text can never exceed the text tower's position limit by accident; tensors
    are PyTorch tensors unless `return_tensors` says otherwise.

    `from_pretrained(folder, **kwargs)` passes the video processor's arguments (e.g. `do_normalize=False`,
    `num_frames=16`) to the video processor and the rest to the tokenizer. Neither loading path needs torchvision.

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
    >>> inputs = processor(text=["the lens capsule", "the lens"], videos=[video, video])
    >>> inputs["input_ids"].shape, inputs["pixel_values_videos"].shape
    (torch.Size([2, 5]), torch.Size([2, 4, 3, 32, 32]))
    >>> raw = processor(videos=video, do_normalize=False, do_sample_frames=True, num_frames=2)  # routed to the video processor
    >>> raw["pixel_values_videos"].shape, float(raw["pixel_values_videos"].max())
    (torch.Size([1, 2, 3, 32, 32]), 0.0)
    ```
    """

    valid_processor_kwargs = OphCLIPProcessorKwargs
    # Defaults of the tokenizer call (lowest priority; the call and the tokenizer's init arguments win).
    text_kwargs = {"padding": True, "truncation": True, "return_tensors": "pt"}

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
        # The base method loads the video processor through AutoVideoProcessor, which requires torchvision (whose
        # PyPI builds need CUDA), and the tokenizer through AutoTokenizer, which reads config.json (model_type
        # "ophclip") and asks for remote code a second time. Both sub-processors are known here, so load them
        # directly: the video processor from its entry in processor_config.json (with the video processor's own
        # arguments among `kwargs` applied, e.g. `do_normalize=False`), the tokenizer from its files with the rest.
        kwargs.pop("trust_remote_code", None)
        video_config = dict((processor_dict or {}).get("video_processor", {}))
        video_arguments = set(OphCLIPVideosKwargs.__annotations__) | set(
            inspect.signature(OphCLIPVideoProcessor.__init__).parameters
        )
        video_config.update({key: value for key, value in kwargs.items() if key in video_arguments})
        tokenizer_kwargs = {key: value for key, value in kwargs.items() if key not in video_arguments}
        tokenizer = BertTokenizer.from_pretrained(pretrained_model_name_or_path, **tokenizer_kwargs)
        return [OphCLIPVideoProcessor(**video_config), tokenizer]

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        # For custom code, transformers records `auto_map` on the processor and its video processor while saving. The
        # files need it; the objects should not keep it (a save must not change `to_dict()`, and a reloaded processor
        # has none).
        objects = (self, self.video_processor)
        before = [obj.__dict__.get("auto_map", _MISSING) for obj in objects]
        try:
            return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        finally:
            for obj, value in zip(objects, before):
                if value is _MISSING:
                    obj.__dict__.pop("auto_map", None)
                else:
                    obj.auto_map = value

    def __call__(
        self,
        text: str | list[str] | None = None,
        videos: VideoInput | None = None,
        **kwargs: Unpack[OphCLIPProcessorKwargs],
    ) -> BatchFeature:
        """Tokenize `text` (a string or a list of strings) and/or preprocess `videos` (one video or a list; see
        [`OphCLIPVideoProcessor`]). Keyword arguments: see [`OphCLIPProcessorKwargs`]."""
        if text is None and videos is None:
            raise ValueError("OphCLIPProcessor needs `text`, `videos` or both.")
        output_kwargs = self._merge_kwargs(
            OphCLIPProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
        )
        data = {}
        if text is not None:
            if isinstance(text, str):
                text = [text]
            if not isinstance(text, (list, tuple)) or len(text) == 0 or not all(isinstance(t, str) for t in text):
                raise ValueError("text must be a string or a non-empty list of strings.")
            data.update(self.tokenizer(list(text), **output_kwargs["text_kwargs"]))
        if videos is not None:
            data.update(self.video_processor(videos, **output_kwargs["videos_kwargs"]))
        return BatchFeature(data, tensor_type=output_kwargs["text_kwargs"].get("return_tensors"))


__all__ = ["OphCLIPProcessor", "OphCLIPProcessorKwargs"]
