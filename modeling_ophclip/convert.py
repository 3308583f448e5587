"""Convert SurgVLP / HecVL / PeskaVLP checkpoints into an OphCLIP folder.

The three predecessors share one architecture: a torchvision ResNet-50 (`backbone_img.model.*`, `fc` removed), a
2048→768 linear `backbone_img.global_embedder`, and a Bio_ClinicalBERT `BertModel` (`backbone_text.model.*`) whose
sentence embedding is the sum over its last four layers of the masked token sum divided by the padded length, with a
fixed temperature τ = 0.1. The converter maps those weights onto an [`OphCLIPModel`] with a transformers
`ResNetModel` vision tower, `text_pooling="surgvlp"`, no text projection and a fixed `logit_scale = ln(10)`.

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
import shutil
import sys
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import BertConfig, BertTokenizer, ResNetConfig
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

# Importing the package (not only the submodules) registers the auto classes, which is what makes `save_pretrained`
# copy the model's code next to the weights.
from . import OphCLIPConfig, OphCLIPModel, OphCLIPProcessor, OphCLIPVideoProcessor


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

_MAX_LISTED_KEYS = 25

_STAGE_BLOCK = re.compile(r"layer(\d+)\.(\d+)\.(.+)")
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


def _vision_target(name: str) -> str | None:
    """OphCLIP name of a torchvision ResNet key (without `backbone_img.model.`), or None if it has none."""
    if name.startswith("conv1."):
        return "vision_model.embedder.embedder.convolution." + name[len("conv1."):]
    if name.startswith("bn1."):
        return "vision_model.embedder.embedder.normalization." + name[len("bn1."):]
    match = _STAGE_BLOCK.fullmatch(name)
    if not match:
        return None
    stage, block, rest = int(match.group(1)) - 1, match.group(2), match.group(3)
    base = f"vision_model.encoder.stages.{stage}.layers.{block}."
    for source, target in (("downsample.0.", "shortcut.convolution."), ("downsample.1.", "shortcut.normalization.")):
        if rest.startswith(source):
            return base + target + rest[len(source):]
    match = re.fullmatch(r"(conv|bn)(\d+)\.(.+)", rest)
    if not match or int(match.group(2)) < 1:
        return None
    kind = "convolution" if match.group(1) == "conv" else "normalization"
    return f"{base}layer.{int(match.group(2)) - 1}.{kind}.{match.group(3)}"


def _vision_source(name: str) -> str | None:
    """Inverse of `_vision_target`: the torchvision key (without prefix) of an OphCLIP `vision_model.` key."""
    for target, source in (
        ("vision_model.embedder.embedder.convolution.", "conv1."),
        ("vision_model.embedder.embedder.normalization.", "bn1."),
    ):
        if name.startswith(target):
            return source + name[len(target):]
    match = re.fullmatch(r"vision_model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.(.+)", name)
    if not match:
        return None
    base = f"layer{int(match.group(1)) + 1}.{match.group(2)}."
    rest = match.group(3)
    for target, source in (("shortcut.convolution.", "downsample.0."), ("shortcut.normalization.", "downsample.1.")):
        if rest.startswith(target):
            return base + source + rest[len(target):]
    match = re.fullmatch(r"layer\.(\d+)\.(convolution|normalization)\.(.+)", rest)
    if not match:
        return None
    kind = "conv" if match.group(2) == "convolution" else "bn"
    return f"{base}{kind}{int(match.group(1)) + 1}.{match.group(3)}"


def source_key_to_target(key: str) -> str | None:
    """OphCLIP state_dict name of a SurgVLP key; `""` for keys that are dropped on purpose; None for unknown keys."""
    if key.startswith(VISION_PREFIX):
        return _vision_target(key[len(VISION_PREFIX):])
    if key.startswith(PROJECTION_PREFIX):
        return "visual_projection." + key[len(PROJECTION_PREFIX):]
    if key.startswith(TEXT_PREFIX):
        name = key[len(TEXT_PREFIX):]
        if name in DROPPED_TEXT_KEYS or name.startswith(DROPPED_TEXT_PREFIXES):
            return ""
        return "text_model." + name
    return None


def target_key_to_source(key: str) -> str:
    """SurgVLP name of an OphCLIP state_dict key (for error messages)."""
    if key.startswith("vision_model."):
        source = _vision_source(key)
        return VISION_PREFIX + source if source is not None else key
    if key.startswith("visual_projection."):
        return PROJECTION_PREFIX + key[len("visual_projection."):]
    if key.startswith("text_model."):
        return TEXT_PREFIX + key[len("text_model."):]
    return key


def _listed(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    return shown + (f", ... and {len(keys) - _MAX_LISTED_KEYS} more" if len(keys) > _MAX_LISTED_KEYS else "")


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
    mapped, origin, unexpected = {}, {}, []
    for key, tensor in state_dict.items():
        target = source_key_to_target(key)
        if target == "":
            continue
        if target is None or target not in target_shapes:
            # BatchNorm's counter is only kept when the target's BatchNorm has one (nn.BatchNorm2d does).
            if target is not None and target.endswith(".num_batches_tracked"):
                continue
            unexpected.append(key)
            continue
        mapped[target], origin[target] = tensor, key
    if "logit_scale" in target_shapes and "logit_scale" not in mapped:
        mapped["logit_scale"] = torch.tensor(float(logit_scale))
    missing = [target_key_to_source(k) for k in target_shapes if k not in mapped]
    mismatched = [
        f"{origin.get(k, k)} {tuple(t.shape)} vs {tuple(target_shapes[k])}"
        for k, t in mapped.items()
        if tuple(t.shape) != tuple(target_shapes[k])
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {_listed(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_listed(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es) (checkpoint vs model): {_listed(mismatched)}")
        raise ValueError(
            "the checkpoint does not match the SurgVLP/HecVL/PeskaVLP architecture inferred from it; "
            + "; ".join(parts)
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
        raise RuntimeError(f"the saved folder does not reload to the converted weights (differs at {_listed(differing)}).")


def _move_into_place(staging: Path, output_dir: Path):
    """Rename the finished `staging` folder to `output_dir`, replacing what is there only once it is complete."""
    if not (output_dir.exists() or output_dir.is_symlink()):
        os.replace(staging, output_dir)
        return
    backup = output_dir.with_name(f".{output_dir.name}.replaced-{uuid.uuid4().hex[:8]}")
    os.replace(output_dir, backup)
    try:
        os.replace(staging, output_dir)
    except BaseException:
        os.replace(backup, output_dir)
        raise
    if backup.is_dir() and not backup.is_symlink():
        shutil.rmtree(backup, ignore_errors=True)
    else:
        backup.unlink(missing_ok=True)


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
    output_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_path.name}.converting-", dir=output_path.parent))
    try:
        model.save_pretrained(staging)
        if processor is not None:
            processor.save_pretrained(staging)
        _check_saved_folder(staging, with_processor=processor is not None)
        if verify:
            _verify_reload(staging, model)
        _check_output_dir(output_path, overwrite)
        _move_into_place(staging, output_path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
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
