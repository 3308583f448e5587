"""Convert SurgVLP / HecVL / PeskaVLP checkpoints into an OphCLIP folder.

The three predecessors share one architecture: a torchvision ResNet-50 (`backbone_img.model.*`, `fc` removed), a
2048→768 linear `backbone_img.global_embedder`, and a Bio_ClinicalBERT `BertModel` (`backbone_text.model.*`) whose
sentence embedding is the sum over its last four layers of the masked token sum divided by the padded length, with a
fixed temperature τ = 0.1. The converter maps those weights onto an [`OphCLIPModel`] with a transformers
`ResNetModel` vision tower, `text_pooling="surgvlp"`, no text projection and a fixed `logit_scale = ln(10)`.

Names are renamed by one table of rules (`KEY_RULE_TEMPLATES`), read forwards to convert and backwards to name a
model weight by its checkpoint key in errors. This module does not travel as remote code; it imports only this package.

The configuration is read off the tensor shapes (ResNet stem width, stage widths and depths; BERT vocabulary, width,
depth, feed-forward width, positions; projection width), so reduced-width checkpoints convert as well. The number of
attention heads cannot be read off the weights: it defaults to `hidden_size // 64` (12 for BERT-base).

Command line:

    python -m modeling_ophclip.convert --checkpoint PeskaVLP.pth --output ophclip-peskavlp \
        --tokenizer path/to/Bio_ClinicalBERT/vocab.txt

Python:

    >>> from modeling_ophclip.convert import convert_surgvlp_checkpoint
    >>> model = convert_surgvlp_checkpoint("PeskaVLP.pth", "ophclip-peskavlp")  # doctest: +SKIP

Checkpoints are read with `torch.load(..., weights_only=True)`; a plain state_dict, or a training checkpoint with a
`state_dict` entry, with or without the `module.` prefix of DistributedDataParallel, is accepted. Nothing is written
unless every weight maps onto the model and every model weight is found: the folder is first saved next to the
target under a temporary name and renamed into place at the end.
"""

import argparse
import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import BertConfig, BertTokenizer, ResNetConfig
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

# Importing the package (not only the submodules) registers the auto classes, which is what makes `save_pretrained`
# copy the model's code next to the weights.
from . import OphCLIPConfig, OphCLIPModel, OphCLIPProcessor, OphCLIPVideoProcessor
from .saving import listed, staged_folder, weight_shape_differences


VISION_PREFIX = "backbone_img.model."
PROJECTION_PREFIX = "backbone_img.global_embedder."
TEXT_PREFIX = "backbone_text.model."
DDP_PREFIX = "module."

# Keys of the predecessors' BERT that OphCLIP does not use: stale buffers (non-persistent since transformers 4.31,
# transformers#25330) and the pooler, which their text encoder never calls.
DROPPED_TEXT_KEYS = ("embeddings.position_ids", "embeddings.token_type_ids")
DROPPED_TEXT_PREFIXES = ("pooler.",)

# The predecessors' fixed temperature τ = 0.1.
SURGVLP_LOGIT_SCALE = math.log(10.0)
SURGVLP_TEXT_POOLING_LAYERS = 4

# Their preprocessing: tokenised to 77 tokens; frames resized to 360x640 (aspect ratio ignored), centre-cropped to
# 224, ImageNet-normalised.
SURGVLP_MAX_TEXT_LENGTH = 77
SURGVLP_FRAME_SIZE = {"height": 360, "width": 640}
SURGVLP_CROP_SIZE = 224
SURGVLP_NUM_FRAMES = 8

# Files `save_pretrained` must have written for the folder to load with `trust_remote_code=True`.
MODEL_CODE_FILES = ("configuration_ophclip.py", "modeling_ophclip.py")
PROCESSOR_CODE_FILES = ("processing_ophclip.py", "video_processing_ophclip.py")

# Names shown per kind of difference in the error for a checkpoint that does not fit.
_MAX_LISTED_KEYS = 25

_TEXT_LAYER = re.compile(re.escape(TEXT_PREFIX) + r"encoder\.layer\.(\d+)\.")
_VISION_BLOCK = re.compile(re.escape(VISION_PREFIX) + r"layer(\d+)\.(\d+)\.")


# -- reading checkpoints ---------------------------------------------------------------------------------------------


def load_surgvlp_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a SurgVLP / HecVL / PeskaVLP checkpoint file into a flat state_dict of source key names.

    The file is opened with `torch.load(path, map_location="cpu", weights_only=True)`, so it never runs pickled code.
    See [`unwrap_state_dict`] for the accepted layouts.

    Raises:
        FileNotFoundError: `path` does not exist or is not a file.
        ValueError: the file is not a weights-only PyTorch checkpoint, or not in a known layout.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist or is not a file.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError (bad zip), EOFError, ... all mean "not loadable"
        reason = " ".join(str(error).split())
        if len(reason) > 300:
            reason = reason[:300] + "..."
        raise ValueError(
            f"could not read {str(path)!r} as a PyTorch checkpoint with torch.load(weights_only=True): "
            f"{type(error).__name__}: {reason} (for a trusted training checkpoint that also pickles other objects, load "
            "it yourself and pass its 'state_dict' to convert_surgvlp_checkpoint)"
        ) from error
    return unwrap_state_dict(obj, source=str(path))


def unwrap_state_dict(obj, source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """The SurgVLP-format state_dict inside `obj`, with the DDP `module.` prefix removed.

    Accepted: a state_dict (a mapping of names to tensors), or a training checkpoint, i.e. a mapping with a
    `state_dict` entry that holds one (other entries such as `epoch`, `optimizer` or `scheduler` are ignored).

    Raises:
        ValueError: `obj` is not such a mapping, holds values that are not tensors, or has no `backbone_img.` and
            `backbone_text.` keys.
    """
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{source} holds a {type(obj).__name__}; expected a SurgVLP/HecVL/PeskaVLP state_dict (a dict of tensor "
            "names to tensors) or a training checkpoint dict with a 'state_dict' entry."
        )
    state_dict = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{source} is not a dict of tensors: entry {key!r} is a {type(value).__name__}; expected a "
                "SurgVLP/HecVL/PeskaVLP state_dict or a training checkpoint dict with a 'state_dict' entry."
            )
        name = key[len(DDP_PREFIX):] if key.startswith(DDP_PREFIX) else key
        if name in state_dict:
            raise ValueError(f"{source} holds {name!r} both with and without the {DDP_PREFIX!r} prefix.")
        state_dict[name] = value
    has_vision = any(k.startswith("backbone_img.") for k in state_dict)
    has_text = any(k.startswith("backbone_text.") for k in state_dict)
    if not (has_vision and has_text):
        sample = ", ".join(repr(k) for k in list(state_dict)[:5]) or "none"
        raise ValueError(
            f"{source} is not a SurgVLP/HecVL/PeskaVLP checkpoint: expected keys starting with 'backbone_img.' and "
            f"'backbone_text.' (optionally behind 'module.'); found {len(state_dict)} key(s), e.g. {sample}."
        )
    return state_dict


# -- configuration from shapes ---------------------------------------------------------------------------------------


def _tensor(state_dict: Mapping[str, torch.Tensor], key: str, purpose: str, ndim: int) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"the checkpoint has no {key!r}, which is needed to infer {purpose}.")
    tensor = state_dict[key]
    if tensor.dim() != ndim:
        raise ValueError(f"{key!r} has shape {tuple(tensor.shape)}; expected a {ndim}-d tensor to infer {purpose}.")
    return tensor


def _consecutive(indices, what: str, start: int) -> int:
    """Number of indices, which must be exactly start, start+1, ..."""
    indices = sorted(set(indices))
    if indices != list(range(start, start + len(indices))):
        raise ValueError(f"the checkpoint's {what} are numbered {indices}; expected {start}, {start + 1}, ... without gaps.")
    return len(indices)


def infer_resnet_config(state_dict: Mapping[str, torch.Tensor]) -> ResNetConfig:
    """The transformers `ResNetConfig` of the checkpoint's torchvision bottleneck ResNet (`backbone_img.model.*`)."""
    conv1 = _tensor(state_dict, VISION_PREFIX + "conv1.weight", "the ResNet stem width", 4)
    blocks: dict[int, set[int]] = {}
    for key in state_dict:
        match = _VISION_BLOCK.match(key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    if not blocks:
        raise ValueError(f"the checkpoint has no ResNet stages ({VISION_PREFIX}layer1.* ...).")
    _consecutive(blocks, "ResNet stages (layerN)", start=1)
    depths, hidden_sizes = [], []
    for stage in sorted(blocks):
        depth = _consecutive(blocks[stage], f"blocks of layer{stage}", start=0)
        last = f"{VISION_PREFIX}layer{stage}.{depth - 1}."
        if last + "conv3.weight" not in state_dict and last + "conv2.weight" in state_dict:
            raise ValueError(
                f"layer{stage} of the checkpoint's ResNet is made of basic blocks (no conv3); only bottleneck ResNets "
                "(ResNet-50 and its width variants, as in SurgVLP/HecVL/PeskaVLP) are supported."
            )
        conv3 = _tensor(state_dict, last + "conv3.weight", f"the width of layer{stage}", 4)
        depths.append(depth)
        hidden_sizes.append(conv3.shape[0])
    return ResNetConfig(
        num_channels=conv1.shape[1],
        embedding_size=conv1.shape[0],
        hidden_sizes=hidden_sizes,
        depths=depths,
        layer_type="bottleneck",
        hidden_act="relu",
        # torchvision's layer1 keeps the resolution and its bottlenecks stride in the 3x3 conv (ResNet v1.5).
        downsample_in_first_stage=False,
        downsample_in_bottleneck=False,
    )


def infer_bert_config(state_dict: Mapping[str, torch.Tensor], num_attention_heads: int | None = None) -> BertConfig:
    """The `BertConfig` of the checkpoint's text tower (`backbone_text.model.*`).

    Args:
        num_attention_heads: Heads per layer; the weights do not tell. Defaults to `hidden_size // 64`, BERT's head
            width (12 for BERT-base / Bio_ClinicalBERT).
    """
    words = _tensor(state_dict, TEXT_PREFIX + "embeddings.word_embeddings.weight", "the vocabulary and width", 2)
    positions = _tensor(state_dict, TEXT_PREFIX + "embeddings.position_embeddings.weight", "the text positions", 2)
    types = _tensor(state_dict, TEXT_PREFIX + "embeddings.token_type_embeddings.weight", "the token types", 2)
    layers = [int(m.group(1)) for m in map(_TEXT_LAYER.match, state_dict) if m]
    if not layers:
        raise ValueError(f"the checkpoint has no BERT layers ({TEXT_PREFIX}encoder.layer.0.* ...).")
    num_layers = _consecutive(layers, "BERT layers (encoder.layer.N)", start=0)
    intermediate = _tensor(
        state_dict, TEXT_PREFIX + "encoder.layer.0.intermediate.dense.weight", "the BERT feed-forward width", 2
    )
    vocab_size, hidden_size = words.shape
    if num_attention_heads is None:
        if hidden_size % 64 != 0:
            raise ValueError(
                f"cannot infer the number of attention heads of a BERT of width {hidden_size} (not a multiple of the "
                "usual head width 64); pass --text-num-attention-heads / text_num_attention_heads."
            )
        num_attention_heads = hidden_size // 64
    if not isinstance(num_attention_heads, int) or num_attention_heads < 1 or hidden_size % num_attention_heads:
        raise ValueError(
            f"text_num_attention_heads={num_attention_heads!r} must be a positive integer that divides the BERT width "
            f"{hidden_size}."
        )
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate.shape[0],
        max_position_embeddings=positions.shape[0],
        type_vocab_size=types.shape[0],
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        pad_token_id=0,
    )


def infer_surgvlp_config(
    state_dict: Mapping[str, torch.Tensor], text_num_attention_heads: int | None = None
) -> OphCLIPConfig:
    """The [`OphCLIPConfig`] of a SurgVLP-format state_dict (source key names, `module.` already removed)."""
    projection = _tensor(state_dict, PROJECTION_PREFIX + "weight", "the joint embedding width", 2)
    vision_config = infer_resnet_config(state_dict)
    text_config = infer_bert_config(state_dict, text_num_attention_heads)
    try:
        return OphCLIPConfig(
            vision_config=vision_config,
            text_config=text_config,
            projection_dim=projection.shape[0],
            use_text_projection=False,
            visual_projection_bias=True,
            text_pooling="surgvlp",
            text_pooling_layers=SURGVLP_TEXT_POOLING_LAYERS,
            logit_scale_init_value=SURGVLP_LOGIT_SCALE,
            learnable_logit_scale=False,
        )
    except ValueError as error:
        raise ValueError(f"the checkpoint's shapes do not form a SurgVLP-style OphCLIP model: {error}") from error


# -- key mapping -----------------------------------------------------------------------------------------------------


# One table of renaming rules, read in both directions: `source_key_to_target` matches the SurgVLP side and writes
# the OphCLIP side, `target_key_to_source` the reverse, so the two can never drift apart. In a template `{rest}` is
# the rest of the name (any characters) and every other field is a number; `{n+1}` on the SurgVLP side means that
# torchvision counts from 1 there (`layer1..4`, `conv1..3`) where transformers counts from 0 (`stages.0..3`,
# `layer.0..2`).
KEY_RULE_TEMPLATES = (
    ("backbone_img.model.conv1.{rest}", "vision_model.embedder.embedder.convolution.{rest}"),
    ("backbone_img.model.bn1.{rest}", "vision_model.embedder.embedder.normalization.{rest}"),
    ("backbone_img.model.layer{stage+1}.{block}.downsample.0.{rest}",
     "vision_model.encoder.stages.{stage}.layers.{block}.shortcut.convolution.{rest}"),
    ("backbone_img.model.layer{stage+1}.{block}.downsample.1.{rest}",
     "vision_model.encoder.stages.{stage}.layers.{block}.shortcut.normalization.{rest}"),
    ("backbone_img.model.layer{stage+1}.{block}.conv{conv+1}.{rest}",
     "vision_model.encoder.stages.{stage}.layers.{block}.layer.{conv}.convolution.{rest}"),
    ("backbone_img.model.layer{stage+1}.{block}.bn{conv+1}.{rest}",
     "vision_model.encoder.stages.{stage}.layers.{block}.layer.{conv}.normalization.{rest}"),
    ("backbone_img.global_embedder.{rest}", "visual_projection.{rest}"),
    ("backbone_text.model.{rest}", "text_model.{rest}"),
)

_FIELD = re.compile(r"\{(\w+)(?:\+(\d+))?\}")


class KeyTemplate:
    """One side of a renaming rule: matches a state_dict name and writes one from field values (see
    `KEY_RULE_TEMPLATES`). Number fields are held 0-based: `{n+1}` reads `layer3` as `n = 2` and writes it back."""

    def __init__(self, template: str):
        self.template = template
        self.offsets, pattern, end = {}, [], 0
        for field in _FIELD.finditer(template):
            name, offset = field.group(1), int(field.group(2) or 0)
            if name in self.offsets:
                raise ValueError(f"key template {template!r} names {{{name}}} twice; expected each field once.")
            self.offsets[name] = offset
            group = rf"(?P<{name}>.+)" if name == "rest" else rf"(?P<{name}>\d+)"
            pattern += [re.escape(template[end:field.start()]), group]
            end = field.end()
        pattern.append(re.escape(template[end:]))
        self.pattern = re.compile("".join(pattern))

    def match(self, key: str) -> dict | None:
        """The field values of `key` (numbers 0-based), or None when it does not have this form."""
        found = self.pattern.fullmatch(key)
        if found is None:
            return None
        values = {name: found.group(name) if name == "rest" else int(found.group(name)) - offset
                  for name, offset in self.offsets.items()}
        if any(isinstance(value, int) and value < 0 for value in values.values()):
            return None  # e.g. `conv0`: torchvision has none
        return values

    def format(self, values: Mapping) -> str:
        """The name these field values give (numbers 0-based, as `match` returns them)."""

        def value(field: re.Match) -> str:
            name = field.group(1)
            return values[name] if name == "rest" else str(values[name] + self.offsets[name])

        return _FIELD.sub(value, self.template)

    def __repr__(self) -> str:
        return f"KeyTemplate({self.template!r})"


class KeyRule(NamedTuple):
    source: KeyTemplate  # SurgVLP name
    target: KeyTemplate  # OphCLIP name


KEY_RULES = tuple(KeyRule(KeyTemplate(source), KeyTemplate(target)) for source, target in KEY_RULE_TEMPLATES)


def _rename(key: str, forward: bool) -> str | None:
    for rule in KEY_RULES:
        read, write = (rule.source, rule.target) if forward else (rule.target, rule.source)
        values = read.match(key)
        if values is not None:
            return write.format(values)
    return None


def source_key_to_target(key: str) -> str | None:
    """OphCLIP state_dict name of a SurgVLP key; `""` for keys that are dropped on purpose; None for unknown keys."""
    if key.startswith(TEXT_PREFIX):
        name = key[len(TEXT_PREFIX):]
        if name in DROPPED_TEXT_KEYS or name.startswith(DROPPED_TEXT_PREFIXES):
            return ""
    return _rename(key, forward=True)


def target_key_to_source(key: str) -> str:
    """SurgVLP name of an OphCLIP state_dict key (the key itself for one the predecessors do not store, such as
    `logit_scale`)."""
    source = _rename(key, forward=False)
    return key if source is None else source


def map_surgvlp_state_dict(
    state_dict: Mapping[str, torch.Tensor], target_shapes: Mapping[str, torch.Size], logit_scale: float
) -> dict[str, torch.Tensor]:
    """Rename a SurgVLP-format state_dict to OphCLIP names and check it against the target model.

    Args:
        state_dict: Source weights (`module.` already removed).
        target_shapes: Name → shape of every entry of the target model's state_dict.
        logit_scale: Value for the target's `logit_scale`, which the predecessors do not store.

    Returns:
        The renamed state_dict: every target key, no other.

    Raises:
        ValueError: naming (by their checkpoint names) the missing keys, the unexpected keys and the keys whose shapes
            differ; nothing is returned in that case.
    """
    mapped, origin, unmapped = {}, {}, {}
    for key, tensor in state_dict.items():
        target = source_key_to_target(key)
        if target == "":
            continue
        if target is None or target not in target_shapes:
            # BatchNorm's counter is only kept when the target's BatchNorm has one (nn.BatchNorm2d does).
            if target is not None and target.endswith(".num_batches_tracked"):
                continue
            unmapped[key] = tensor.shape
            continue
        mapped[target], origin[target] = tensor, key
    if "logit_scale" in target_shapes and "logit_scale" not in mapped:
        mapped["logit_scale"] = torch.tensor(float(logit_scale))
    # Compared by checkpoint names, which is what the user can look up in their file.
    saved = {origin.get(name, name): tensor.shape for name, tensor in mapped.items()} | unmapped
    differences = weight_shape_differences(saved, {target_key_to_source(k): v for k, v in target_shapes.items()})
    if differences:
        raise ValueError(
            "the checkpoint does not match the SurgVLP/HecVL/PeskaVLP architecture inferred from it: "
            + differences.describe("key", "the model", limit=_MAX_LISTED_KEYS)
            + ". Nothing was written."
        )
    return mapped


def check_finite(mapped: Mapping[str, torch.Tensor], source: str = "the checkpoint") -> None:
    """Refuse weights holding NaN or infinity (a diverged or corrupted run): such a model computes NaN embeddings,
    and its saved folder would not even pass the reload check (NaN never equals NaN).

    Raises:
        ValueError: naming (by their checkpoint names) the first tensors with non-finite values and how many.
    """
    bad = []
    for key, tensor in mapped.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and tensor.numel():
            count = int((~torch.isfinite(tensor)).sum())
            if count:
                bad.append(f"{target_key_to_source(key)} ({count} of {tensor.numel()} values)")
    if bad:
        bad.sort()
        shown = ", ".join(bad[:5]) + (f", ... and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"{source} holds non-finite values (NaN or infinity) in {len(bad)} tensor(s): {shown}; expected "
            "finite weights (was it saved from a run that diverged?). Nothing was written."
        )


# -- processor -------------------------------------------------------------------------------------------------------


def build_surgvlp_processor(
    tokenizer: str | os.PathLike, do_lower_case: bool | None = None, vocab_size: int | None = None
) -> OphCLIPProcessor:
    """An [`OphCLIPProcessor`] that preprocesses like the predecessors.

    Frames: resized to 360x640 (aspect ratio ignored), centre-cropped to 224x224, ImageNet mean/std; 8 frames per
    decoded video. Text: a WordPiece `BertTokenizer` with `model_max_length=77`.

    Args:
        tokenizer: A `vocab.txt` file, or a directory `BertTokenizer.from_pretrained` reads (e.g. a local copy of
            `emilyalsentzer/Bio_ClinicalBERT`).
        do_lower_case: Whether the tokenizer lowercases. For a vocabulary file `None` means `True`: the Hub copy of
            Bio_ClinicalBERT ships no tokenizer_config.json, so the predecessors' `AutoTokenizer` fell back to
            BERT's default and lowercased, although the vocabulary is cased. For a directory `None` keeps the
            directory's own setting.
        vocab_size: If given, the tokenizer must not produce ids at or beyond it.
    """
    path = Path(tokenizer)
    if path.is_dir():
        kwargs = {"model_max_length": SURGVLP_MAX_TEXT_LENGTH}
        if do_lower_case is not None:
            kwargs["do_lower_case"] = do_lower_case
        try:
            text_tokenizer = BertTokenizer.from_pretrained(str(path), **kwargs)
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(f"could not load a BERT tokenizer from directory {str(path)!r}: {error}") from error
    elif path.is_file():
        text_tokenizer = BertTokenizer(
            vocab=str(path),
            model_max_length=SURGVLP_MAX_TEXT_LENGTH,
            do_lower_case=True if do_lower_case is None else do_lower_case,
        )
    else:
        raise FileNotFoundError(f"tokenizer {str(path)!r} is neither a vocab.txt file nor a tokenizer directory.")
    if len(text_tokenizer) < 5:
        raise ValueError(f"the tokenizer at {str(path)!r} has only {len(text_tokenizer)} entries; is it a vocab.txt?")
    if vocab_size is not None and len(text_tokenizer) > vocab_size:
        raise ValueError(
            f"the tokenizer at {str(path)!r} has {len(text_tokenizer)} entries but the checkpoint's text tower has a "
            f"vocabulary of {vocab_size}; it is not the tokenizer of this model."
        )
    video_processor = OphCLIPVideoProcessor(
        num_frames=SURGVLP_NUM_FRAMES,
        size=dict(SURGVLP_FRAME_SIZE),
        crop_size=SURGVLP_CROP_SIZE,
        image_mean=list(IMAGENET_DEFAULT_MEAN),
        image_std=list(IMAGENET_DEFAULT_STD),
    )
    return OphCLIPProcessor(video_processor=video_processor, tokenizer=text_tokenizer)


# -- writing ---------------------------------------------------------------------------------------------------------


def _check_output_dir(output_dir: Path, overwrite: bool):
    if output_dir.exists() or output_dir.is_symlink():
        if not output_dir.is_dir():
            raise FileExistsError(f"output {str(output_dir)!r} exists and is not a directory.")
        if any(output_dir.iterdir()) and not overwrite:
            raise FileExistsError(
                f"output directory {str(output_dir)!r} exists and is not empty; pass --overwrite (overwrite=True) to "
                "replace it."
            )


def _check_saved_folder(folder: Path, with_processor: bool):
    expected = ["config.json", *MODEL_CODE_FILES]
    if with_processor:
        expected += ["processor_config.json", *PROCESSOR_CODE_FILES]
    absent = [name for name in expected if not (folder / name).is_file()]
    if not any(folder.glob("*.safetensors")):
        absent.append("*.safetensors")
    if absent:
        raise RuntimeError(
            f"save_pretrained did not write {absent}; the folder would not load with trust_remote_code=True "
            "(is modeling_ophclip imported as a package, so that its classes are registered for the Auto classes?)."
        )


def _verify_reload(folder: Path, model: OphCLIPModel):
    reloaded = OphCLIPModel.from_pretrained(folder)
    expected, actual = model.state_dict(), reloaded.state_dict()
    differing = [k for k in expected if k not in actual or not torch.equal(expected[k], actual[k])]
    if differing or set(actual) - set(expected):
        raise RuntimeError("the saved folder does not reload to the converted weights "
                           f"(differs at {listed(differing, _MAX_LISTED_KEYS)}).")


# -- public entry points ---------------------------------------------------------------------------------------------


def convert_surgvlp_checkpoint(
    checkpoint: str | os.PathLike | Mapping,
    output_dir: str | os.PathLike | None = None,
    *,
    tokenizer: str | os.PathLike | None = None,
    text_num_attention_heads: int | None = None,
    do_lower_case: bool | None = None,
    overwrite: bool = False,
    verify: bool = True,
) -> OphCLIPModel:
    """Convert a SurgVLP / HecVL / PeskaVLP checkpoint into an [`OphCLIPModel`], optionally saving it.

    Args:
        checkpoint: A checkpoint file (read with `torch.load(..., map_location="cpu", weights_only=True)`) or the
            loaded object: a state_dict, or a training checkpoint dict with a `state_dict` entry; a leading
            `module.` (DistributedDataParallel) is removed from every key.
        output_dir: If given, the model is saved there with `save_pretrained` together with its remote code
            (`configuration_ophclip.py`, `modeling_ophclip.py`), so the folder loads with `OphCLIPModel.from_pretrained`
            or, without this package, `AutoModel.from_pretrained(..., trust_remote_code=True)`. The folder is written
            under a temporary sibling name and renamed at the end.
        tokenizer: A `vocab.txt` or a BERT tokenizer directory; if given (needs `output_dir`), an [`OphCLIPProcessor`]
            preprocessing like the predecessors (see [`build_surgvlp_processor`]) is saved too.
        text_num_attention_heads: Attention heads of the BERT tower (default `hidden_size // 64`).
        do_lower_case: Tokenizer lowercasing, see [`build_surgvlp_processor`].
        overwrite: Replace an existing non-empty `output_dir`.
        verify: After saving, reload the folder and check that every tensor comes back unchanged.

    Returns:
        The converted model, in eval mode, float32.

    Raises:
        FileNotFoundError: the checkpoint or tokenizer path does not exist.
        FileExistsError: `output_dir` exists, is not empty and `overwrite` is False.
        ValueError: the checkpoint is not in a known format, its keys or shapes do not match the architecture (the
            message lists the missing and unexpected keys), or its weights hold NaN or infinity (the message names
            the tensors). Nothing is written in any of these cases.
    """
    if tokenizer is not None and output_dir is None:
        raise ValueError("tokenizer is only used to save a processor; pass output_dir as well.")
    output_path = Path(output_dir) if output_dir is not None else None
    if output_path is not None:
        _check_output_dir(output_path, overwrite)

    if isinstance(checkpoint, (str, os.PathLike)):
        state_dict = load_surgvlp_state_dict(checkpoint)
    else:
        state_dict = unwrap_state_dict(checkpoint)
    config = infer_surgvlp_config(state_dict, text_num_attention_heads)
    processor = None
    if tokenizer is not None:
        processor = build_surgvlp_processor(tokenizer, do_lower_case, vocab_size=config.text_config.vocab_size)

    model = OphCLIPModel(config)
    target_shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
    mapped = map_surgvlp_state_dict(state_dict, target_shapes, config.logit_scale_init_value)
    check_finite(mapped, f"checkpoint {str(checkpoint)!r}" if isinstance(checkpoint, (str, os.PathLike)) else
                 "the checkpoint")
    model.load_state_dict(mapped, strict=True)
    model.eval()
    if output_path is None:
        return model

    _check_output_dir(output_path, overwrite)
    with staged_folder(output_path, "converting") as staging:
        model.save_pretrained(staging)
        if processor is not None:
            processor.save_pretrained(staging)
        _check_saved_folder(staging, with_processor=processor is not None)
        if verify:
            _verify_reload(staging, model)
        _check_output_dir(output_path, overwrite)
    return model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ophclip-convert",
        description=(
            "Convert a SurgVLP, HecVL or PeskaVLP checkpoint (.pth) into an OphCLIP folder that loads with "
            "OphCLIPModel.from_pretrained, or AutoModel.from_pretrained(..., trust_remote_code=True)."
        ),
    )
    parser.add_argument(
        "--checkpoint", required=True, metavar="PATH",
        help="SurgVLP/HecVL/PeskaVLP checkpoint: a state_dict, or a training checkpoint with a 'state_dict' entry "
             "(a 'module.' prefix is removed). Read with torch.load(weights_only=True).",
    )
    parser.add_argument(
        "--output", required=True, metavar="DIR",
        help="Folder to write (config, safetensors weights, model code, and the processor with --tokenizer).",
    )
    parser.add_argument(
        "--tokenizer", metavar="PATH",
        help="Bio_ClinicalBERT vocab.txt, or a BERT tokenizer directory: also save an OphCLIPProcessor that "
             "preprocesses like the predecessors (frames 360x640 -> centre crop 224, ImageNet mean/std; 77 tokens).",
    )
    parser.add_argument(
        "--text-num-attention-heads", type=int, metavar="N",
        help="Attention heads of the BERT text tower (not stored in the weights; default: hidden size // 64, i.e. 12 "
             "for Bio_ClinicalBERT).",
    )
    parser.add_argument(
        "--do-lower-case", action=argparse.BooleanOptionalAction, default=None,
        help="Whether the saved tokenizer lowercases text (default: no for a vocab.txt, the directory's own setting "
             "for a tokenizer directory).",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="Replace OUTPUT if it exists and is not empty (it is replaced only once the new folder is complete).",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (`ophclip-convert`, `python -m modeling_ophclip.convert`); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        convert_surgvlp_checkpoint(
            args.checkpoint,
            args.output,
            tokenizer=args.tokenizer,
            text_num_attention_heads=args.text_num_attention_heads,
            do_lower_case=args.do_lower_case,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError) as error:
        message = " ".join(str(error).split())
        print(f"ophclip-convert: error: {message}", file=sys.stderr)
        return 1
    print(f"ophclip-convert: wrote {args.output}")
    return 0


__all__ = [
    "KEY_RULES",
    "KEY_RULE_TEMPLATES",
    "KeyRule",
    "KeyTemplate",
    "build_surgvlp_processor",
    "check_finite",
    "convert_surgvlp_checkpoint",
    "infer_bert_config",
    "infer_resnet_config",
    "infer_surgvlp_config",
    "load_surgvlp_state_dict",
    "main",
    "map_surgvlp_state_dict",
    "source_key_to_target",
    "target_key_to_source",
    "unwrap_state_dict",
]


if __name__ == "__main__":
    sys.exit(main())
