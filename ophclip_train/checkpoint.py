"""Training checkpoints: `accelerator.save_state` plus the data position, the trainer counters and the memory bank,
written atomically, rotated, and found again for `--resume`.

A checkpoint `<output_dir>/checkpoints/step-N` holds what accelerate saves (`model.safetensors` of the training
module, `optimizer.bin`, the learning-rate scheduler, every process's RNG states) and:

- `trainer_state.json`: the step, the schedule position, the refresh counter, the world size (main process);
- `data_state_rank<R>.json`: each process's position in each level's stream (epoch, batches, dataset
  `state_dict()` per DataLoader worker);
- `bank/`: the silent-video memory bank (`SilentVideoBank.save`), when retrieval is on.

Every process writes its part into `.tmp-step-N`; once all are done the main process renames it to `step-N`
(`modeling_ophclip.saving.replace_folder`, which also replaces a `step-N` saved before only then), so a `step-N`
folder is always complete (a run killed while saving leaves only a `.tmp-*` folder, removed at the next
start). Then checkpoints beyond `save_total_limit` are deleted, oldest first.

Before a resume loads anything, `read_trainer_state` checks that the folder has every file (cheap: before the model
is built) and `check_model_matches` that its weights have the names and shapes of the model being trained, so that a
checkpoint of another model, or an incomplete one, is a clear error naming it rather than torch's size-mismatch list.

Under FSDP (`configs/accelerate_fsdp.yaml`: FSDP2, `SHARDED_STATE_DICT`) accelerate writes the weights and the
optimiser as `torch.distributed.checkpoint` folders instead (`pytorch_model_fsdp_0/`, `optimizer_0/`: one `.distcp`
file per process and a `.metadata` file). torch unpickles the metadata and the non-tensor items unrestricted, so
`read_sharded_metadata` checks both with restricted unpicklers before a resume; both checks read those folders too
(`sharded=True`), the shapes from the metadata.
"""

import json
import logging
import pickle
import re
import shutil
from pathlib import Path

from modeling_ophclip.saving import replace_folder, weight_shape_differences


logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
PREFIX = "step-"
TMP_PREFIX = ".tmp-"
TRAINER_STATE = "trainer_state.json"
DATA_STATE = "data_state_rank{rank}.json"
BANK_DIR = "bank"
_NAME = re.compile(rf"^{PREFIX}(\d+)$")


def checkpoints_root(output_dir) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIR


def list_checkpoints(output_dir) -> list[tuple[int, Path]]:
    """Complete checkpoints under `output_dir`, oldest first, as `(step, path)`."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir() and (path / TRAINER_STATE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def resolve_resume(resume: str, output_dir, check=None) -> Path:
    """`"latest"` -> the newest checkpoint under `output_dir`; anything else is a checkpoint folder.

    With `check` (e.g. `read_trainer_state`, which raises for an incomplete or damaged checkpoint), `"latest"` falls
    back to the newest checkpoint that passes it, with a warning naming each one skipped and why (a crash or a full
    disk can leave the newest one damaged); an explicit folder that fails is an error."""
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise FileNotFoundError(f"--resume latest: no checkpoint under {checkpoints_root(output_dir)}")
        if check is None:
            return found[-1][1]
        problems = []
        for _, path in reversed(found):
            try:
                check(path)
            except (OSError, ValueError) as error:
                logger.warning(f"--resume latest: skipping {path}: {error}")
                problems.append(f"{path.name}: {error}")
                continue
            return path
        raise ValueError(f"--resume latest: no usable checkpoint under {checkpoints_root(output_dir)} "
                         f"({'; '.join(problems)})")
    path = Path(resume)
    if not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"--resume {resume!r} is not a checkpoint folder (no {TRAINER_STATE})")
    return path


def remove_stale_tmp(output_dir) -> None:
    """Delete `.tmp-*` folders that an interrupted save left behind (main process, before training)."""
    root = checkpoints_root(output_dir)
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(TMP_PREFIX):
                logger.info(f"removing the incomplete checkpoint {path}")
                shutil.rmtree(path, ignore_errors=True)


def rotate_checkpoints(output_dir, limit: int | None) -> list[Path]:
    """Delete the oldest checkpoints so that at most `limit` remain; returns the deleted paths."""
    if not limit:
        return []
    found = list_checkpoints(output_dir)
    deleted = []
    for _, path in found[: max(0, len(found) - limit)]:
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(path)
    return deleted


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def save_checkpoint(accelerator, output_dir, step: int, trainer_state: dict, data_state: dict, bank=None,
                    save_total_limit: int | None = None) -> Path:
    """Save a complete checkpoint as `step-<step>` (collective: every process must call it)."""
    root = checkpoints_root(output_dir)
    final = root / f"{PREFIX}{step}"
    tmp = root / f"{TMP_PREFIX}{PREFIX}{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    _write_json(tmp / DATA_STATE.format(rank=accelerator.process_index), data_state)
    if accelerator.is_main_process:
        if bank is not None:
            bank.save(tmp / BANK_DIR)
        _write_json(tmp / TRAINER_STATE, trainer_state)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_folder(tmp, final)  # the same step saved again (e.g. a resumed run) is replaced once tmp is whole
        for path in rotate_checkpoints(output_dir, save_total_limit):
            logger.info(f"deleted old checkpoint {path}")
    accelerator.wait_for_everyone()
    return final


# What `save_checkpoint` writes that a resume cannot do without (besides `trainer_state.json`): accelerate's weights of
# the training module (safetensors, or a torch pickle when saved with safe_serialization=False), the optimiser, and
# the learning-rate scheduler (registered for checkpointing, hence accelerate's first custom state).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
OPTIMIZER_FILE = "optimizer.bin"
DDP_PREFIX = "module."
# What accelerate writes instead under FSDP with SHARDED_STATE_DICT (the first model's and optimiser's folders). The
# model folder holds `{"model": state_dict}`, so its tensors are named `model.<parameter>`.
FSDP_MODEL_DIR = "pytorch_model_fsdp_0"
FSDP_OPTIMIZER_DIR = "optimizer_0"
DCP_METADATA = ".metadata"
FSDP_KEY_PREFIX = "model."


# The only globals a `torch.distributed.checkpoint` `.metadata` pickle needs (torch 2.13: its dataclasses, tensor
# properties, the storage paths); anything else is refused unread (it could run code).
_DCP_METADATA_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem")
_DCP_METADATA_GLOBALS = {("torch", "Size"), ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"),
                         ("pathlib", "PurePosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PureWindowsPath")}


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles a `.metadata` file with only `_DCP_METADATA_*` globals (and torch dtypes) allowed."""

    def find_class(self, module, name):
        import torch

        allowed = (module in _DCP_METADATA_MODULES and not name.startswith("__")) or (module, name) in \
            _DCP_METADATA_GLOBALS or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype))
        if not allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a torch.distributed.checkpoint metadata file")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not part of a torch.distributed.checkpoint metadata file")


def read_sharded_metadata(folder):
    """The `torch.distributed.checkpoint` metadata of a sharded checkpoint folder (`pytorch_model_fsdp_0/`,
    `optimizer_0/`), read without running code, after checking every pickled (non-tensor) item of its `.distcp`
    files the same way.

    torch reads these with plain `pickle.load` (the metadata) and `torch.load(weights_only=False)` (non-tensor items
    such as the optimiser's learning rates): a crafted checkpoint would run code on `--resume`. Here the metadata goes
    through an unpickler that allows only the metadata's own classes, and each non-tensor item through torch's
    `weights_only` unpickler; tensors torch already loads with `weights_only=True`.

    Raises:
        ValueError: a file holds anything else (named, with what was found).
    """
    import io

    import torch
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata

    folder = Path(folder)
    try:
        with open(folder / DCP_METADATA, "rb") as handle:
            metadata = _MetadataUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as error:
        raise ValueError(f"{folder / DCP_METADATA} is not a torch.distributed.checkpoint metadata file this trainer "
                         f"loads ({type(error).__name__}: {error}); it is not loaded (it could run code)") from None
    for index, info in getattr(metadata, "storage_data", {}).items():
        if not isinstance(metadata.state_dict_metadata.get(index.fqn), BytesStorageMetadata):
            continue
        data_file = folder / str(info.relative_path)
        with open(data_file, "rb") as handle:
            handle.seek(info.offset)
            data = handle.read(info.length)
        try:
            torch.load(io.BytesIO(data), weights_only=True)
        except Exception as error:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, ... by content
            raise ValueError(f"{data_file} holds a non-tensor item {index.fqn!r} that is not plain data "
                             f"({type(error).__name__}); it is not loaded (it could run code)") from None
    return metadata


def is_sharded_checkpoint(path) -> bool:
    """Whether a checkpoint folder holds FSDP's sharded weights (`pytorch_model_fsdp_0/`) rather than a weight file."""
    return (Path(path) / FSDP_MODEL_DIR).is_dir()


def _layout_name(sharded: bool) -> str:
    return "an FSDP launch (sharded weights)" if sharded else "a launch without FSDP (one process or DDP)"


def read_trainer_state(path, sharded: bool = False) -> dict:
    """`trainer_state.json` of a checkpoint folder, after checking that the folder has every file a resume loads.

    Cheap (no weights are read), so it runs before the model is built. `sharded`: the run is FSDP with sharded
    checkpoints, whose weights and optimiser are `torch.distributed.checkpoint` folders (`FSDP_MODEL_DIR`,
    `FSDP_OPTIMIZER_DIR`); otherwise pass only plain (single-process or DDP) checkpoints. DeepSpeed keeps its files
    elsewhere.

    Raises:
        FileNotFoundError: a file is missing (named, with the checkpoint).
        ValueError: `trainer_state.json` is not JSON or has no integer `global_step`; the checkpoint was saved by
            the other kind of launch (FSDP or not).
    """
    path = Path(path)
    if (path / TRAINER_STATE).is_file() and is_sharded_checkpoint(path) != sharded:
        raise ValueError(f"--resume: the checkpoint {path} was saved by {_layout_name(not sharded)} and this run is "
                         f"{_layout_name(sharded)}; resume it with the same kind of launch")
    if sharded:
        needed = (TRAINER_STATE, f"{FSDP_MODEL_DIR}/{DCP_METADATA}", f"{FSDP_OPTIMIZER_DIR}/{DCP_METADATA}")
        missing = [name for name in needed if not (path / name).is_file()]
    else:
        missing = [name for name in (TRAINER_STATE, OPTIMIZER_FILE) if not (path / name).is_file()]
        if not any((path / name).is_file() for name in WEIGHT_FILES):
            missing.insert(0, f"{WEIGHT_FILES[0]} (or {WEIGHT_FILES[1]})")
    if missing:
        raise FileNotFoundError(f"--resume: the checkpoint {path} is incomplete: it lacks {', '.join(missing)}, which "
                                "every checkpoint of train_accelerate.py has; resume from another checkpoint")
    try:
        state = json.loads((path / TRAINER_STATE).read_text())
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"--resume: {path / TRAINER_STATE} is not valid JSON ({error})") from error
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int) or state["global_step"] < 0:
        raise ValueError(f"--resume: {path / TRAINER_STATE} has no global_step (a step count >= 0)")
    pickles = sorted(p.name for p in path.glob("custom_checkpoint_*.pkl"))
    if pickles:
        # accelerate would unpickle these with weights_only=False; this trainer never writes them.
        raise ValueError(f"--resume: the checkpoint {path} holds {', '.join(pickles)}, a pickle that could run code "
                         "and that train_accelerate.py does not write; it is not loaded: remove it if you trust the "
                         "folder, or resume from another checkpoint")
    if not isinstance(state.get("scheduler"), dict):
        # Checkpoints of earlier versions kept it in a pickle (custom_checkpoint_0.pkl), which is never loaded.
        raise ValueError(f"--resume: {path / TRAINER_STATE} has no learning-rate scheduler state; checkpoints written "
                         "before it was kept there hold it in a pickle, which is not loaded (it could run code): start "
                         "a new run")
    if sharded:  # torch would unpickle these folders' metadata and non-tensor items: checked first
        for folder in (FSDP_MODEL_DIR, FSDP_OPTIMIZER_DIR):
            try:
                read_sharded_metadata(path / folder)
            except (OSError, ValueError) as error:
                raise ValueError(f"--resume: {error}; resume from another checkpoint") from None
    weights_file = path / (f"{FSDP_MODEL_DIR}/{DCP_METADATA}" if sharded else WEIGHT_FILES[0])
    if weights_file.is_file():
        # A truncated file (a crash or a full disk mid-write) would surface as a raw SafetensorError (or unpickling
        # error) at load time.
        try:
            saved_weight_shapes(path)
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error type for damaged files
            raise ValueError(f"--resume: {weights_file} is damaged ({type(error).__name__}: {error}); resume from "
                             "another checkpoint") from None
    return state


def saved_weight_shapes(path) -> dict[str, tuple]:
    """`{name: shape}` of the module weights in a checkpoint folder, read without loading the tensors (under FSDP: the
    whole tensors' shapes, from the sharded checkpoint's metadata)."""
    path = Path(path)
    if is_sharded_checkpoint(path):
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        metadata = read_sharded_metadata(path / FSDP_MODEL_DIR)
        return {name.removeprefix(FSDP_KEY_PREFIX): tuple(item.size)
                for name, item in metadata.state_dict_metadata.items() if isinstance(item, TensorStorageMetadata)}
    safetensors_file = path / WEIGHT_FILES[0]
    if safetensors_file.is_file():
        from safetensors import safe_open

        with safe_open(str(safetensors_file), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    import torch

    state = torch.load(path / WEIGHT_FILES[1], map_location="cpu", mmap=True, weights_only=True)
    return {name: tuple(tensor.shape) for name, tensor in state.items()}


def _without_ddp_prefix(shapes: dict) -> dict:
    return {name.removeprefix(DDP_PREFIX): shape for name, shape in shapes.items()}


def _launch(shapes: dict) -> str:
    return "several processes (DDP)" if any(name.startswith(DDP_PREFIX) for name in shapes) else "a single process"


def check_model_matches(path, module) -> None:
    """Raise a clear error when the checkpoint's weights do not fit `module` (the module accelerate loads them into;
    under FSDP its state dict holds DTensors, whose shapes are the whole tensors').

    Without this, accelerate's strict loading fails with torch's long `size mismatch` / `Missing key(s)` list that
    names neither the checkpoint nor what to do about it.

    Raises:
        ValueError: names the checkpoint and the first parameters that are missing, unexpected or of another shape.
    """
    path = Path(path)
    saved = saved_weight_shapes(path)
    expected = {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}
    if saved == expected:
        return
    # DDP prefixes every name with `module.`: a checkpoint of one process and a run of several (or the reverse)
    # differ only by it, which is a different launch, not a different model (and accelerate cannot load across it).
    launches = (_launch(saved), _launch(expected))
    saved, expected = _without_ddp_prefix(saved), _without_ddp_prefix(expected)
    if saved == expected:
        raise ValueError(f"--resume: the checkpoint {path} fits this model but was saved by {launches[0]} and this "
                         f"run is {launches[1]}; resume it with the same kind of launch (one process, or several "
                         "with accelerate launch)")
    problems = weight_shape_differences(saved, expected).describe("parameter", "this model")
    options = path.parent.parent / "pretraining_config.json"
    hint = f" (its run's options are in {options})" if options.is_file() else ""
    raise ValueError(
        f"--resume: the checkpoint {path} was written for a different model: {problems}. Resume with the "
        f"model options the checkpoint was trained with{hint}, or start a new run without --resume")


def load_checkpoint(accelerator, path) -> tuple[dict, dict | None, Path | None]:
    """Restore what accelerate saved and return `(trainer_state, this process's data state or None, bank folder or
    None)`."""
    path = Path(path)
    try:
        accelerator.load_state(str(path))
    except (RuntimeError, ValueError, KeyError) as error:
        # E.g. an optimiser of other parameter groups (a learnable temperature on one side only): torch's message
        # does not say which files it was loading.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--resume: the checkpoint {path} does not fit this run ({type(error).__name__}: "
                         f"{first_line}); resume with the options it was trained with, or start a new run") from error
    trainer_state = json.loads((path / TRAINER_STATE).read_text())
    data_file = path / DATA_STATE.format(rank=accelerator.process_index)
    data_state = json.loads(data_file.read_text()) if data_file.is_file() else None
    bank_dir = path / BANK_DIR
    return trainer_state, data_state, (bank_dir if bank_dir.is_dir() else None)


__all__ = [
    "BANK_DIR",
    "CHECKPOINTS_DIR",
    "DATA_STATE",
    "TRAINER_STATE",
    "check_model_matches",
    "is_sharded_checkpoint",
    "read_sharded_metadata",
    "list_checkpoints",
    "load_checkpoint",
    "read_trainer_state",
    "remove_stale_tmp",
    "resolve_resume",
    "rotate_checkpoints",
    "save_checkpoint",
    "saved_weight_shapes",
]
