"""Training checkpoints: `accelerator.save_state` plus the data position, the trainer counters and the memory bank,
written atomically, rotated, and found again for `--resume`.

A checkpoint `<output_dir>/checkpoints/step-N` holds what accelerate saves (`model.safetensors` of the training
module, `optimizer.bin`, the learning-rate scheduler, every process's RNG states) and:

- `trainer_state.json`: the step, the schedule position, the refresh counter, the world size (main process);
- `data_state_rank<R>.json`: each process's position in each level's stream (epoch, batches, dataset
  `state_dict()` per DataLoader worker);
- `bank/`: the silent-video memory bank (`SilentVideoBank.save`), when retrieval is on.

Every process writes its part into `.tmp-step-N`; once all are done the main process renames it to `step-N`, so a
`step-N` folder is always complete (a run killed while saving leaves only a `.tmp-*` folder, removed at the next
start). Then checkpoints beyond `save_total_limit` are deleted, oldest first.
"""

import json
import logging
import os
import re
import shutil
from pathlib import Path


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


def resolve_resume(resume: str, output_dir) -> Path:
    """`"latest"` -> the newest checkpoint under `output_dir`; anything else is a checkpoint folder."""
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise FileNotFoundError(f"--resume latest: no checkpoint under {checkpoints_root(output_dir)}")
        return found[-1][1]
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
        if final.exists():  # the same step saved again (e.g. a resumed run): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        for path in rotate_checkpoints(output_dir, save_total_limit):
            logger.info(f"deleted old checkpoint {path}")
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path) -> tuple[dict, dict | None, Path | None]:
    """Restore what accelerate saved and return `(trainer_state, this process's data state or None, bank folder or
    None)`."""
    path = Path(path)
    accelerator.load_state(str(path))
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
    "list_checkpoints",
    "load_checkpoint",
    "remove_stale_tmp",
    "resolve_resume",
    "rotate_checkpoints",
    "save_checkpoint",
]
