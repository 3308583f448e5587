"""Finding the models a build needs before it starts: offline first, one quick look at the Hub at most.

A stage that loads a model (`asr`, `denoise` with a fill-mask model, `rewrite`) names it by a local folder or a
Hub id. Before any video is processed the build asks `locate_model` for each model a stage will load:

- a local folder must hold a saved transformers model for the task (`config.json`, weights, and the tokenizer or
  feature-extractor files the task needs); a path that does not exist is refused at once;
- a Hub id is looked up in the Hugging Face cache (`huggingface_hub.try_to_load_from_cache`; `HF_HOME` /
  `HF_HUB_CACHE` apply). When it is there, complete, the stage loads the cached snapshot folder, so loading never
  touches the network;
- a Hub id that is not cached is refused at once when `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is set. Otherwise
  the Hub is asked once, with a short timeout and no retries, whether the model exists; if it does, the stage
  downloads it on first use as usual; if the Hub cannot be reached or has no such model, the build is refused.

`ModelUnavailable` says what is wrong; the build adds what to do (the stage's flags) and stops before writing.
"""

import json
import os
from pathlib import Path

from huggingface_hub import constants as hub_constants


# A saved model has its config and one of these weight files (a sharded one has its index and the shards).
CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")
# Besides config and weights, what each pipeline task reads: one file of each group.
TASK_FILES = {
    "automatic-speech-recognition": (("preprocessor_config.json",), TOKENIZER_FILES),
    "fill-mask": (TOKENIZER_FILES,),
    "text-generation": (TOKENIZER_FILES,),
}
HUB_TIMEOUT_S = 5.0


class ModelUnavailable(Exception):
    """The model cannot be used from here; the message says why, in one line."""


def hub_offline() -> bool:
    """Whether Hub access is switched off: `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` in the environment now, or
    huggingface_hub's own setting (read when it was imported)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return True
    return bool(hub_constants.HF_HUB_OFFLINE)


def hub_cache() -> str:
    """The Hugging Face hub cache folder in use."""
    return str(hub_constants.HF_HUB_CACHE)


def missing_files(folder: Path, task: str) -> list[str]:
    """The files (or groups, `a|b`) a `task` model saved in `folder` lacks; [] when it looks complete."""
    folder = Path(folder)
    missing = [] if (folder / CONFIG_FILE).is_file() else [CONFIG_FILE]
    weights = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not weights:
        missing.append("weights (" + "|".join(WEIGHT_FILES) + ")")
    else:
        for index in (name for name in weights if name.endswith(".index.json")):
            try:
                shards = set(json.loads((folder / index).read_text()).get("weight_map", {}).values())
            except (OSError, ValueError, AttributeError):
                missing.append(f"a readable {index}")
                continue
            absent = sorted(shard for shard in shards if not (folder / shard).is_file())
            if absent and len(weights) == 1:
                missing.append("weight shards " + ", ".join(absent[:3]) + (" ..." if len(absent) > 3 else ""))
    for group in TASK_FILES.get(task, ()):
        if not any((folder / name).is_file() for name in group):
            missing.append("|".join(group))
    return missing


def looks_like_repo_id(name: str) -> bool:
    """Whether `name` can be a Hub model id (`org/name` or `name`), not a file-system path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def cached_snapshot(repo_id: str) -> Path | None:
    """The cache folder of the `main` snapshot of `repo_id` when its config is cached, else None (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, CONFIG_FILE)
    except Exception:  # noqa: BLE001 - an odd name or a damaged cache: not cached
        return None
    return Path(found).parent if isinstance(found, str) else None


def ask_hub(repo_id: str, timeout: float = HUB_TIMEOUT_S) -> None:
    """One request to the Hub (no retries) for `repo_id`'s model info; raises `ModelUnavailable` unless it exists
    and may be downloaded."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    where = f"it is not in the Hugging Face cache ({hub_cache()})"
    try:
        HfApi(endpoint=hub_constants.ENDPOINT).model_info(repo_id, timeout=timeout)
    except GatedRepoError:
        raise ModelUnavailable(f"{where}, and it is gated on the Hub: accept its terms on the model page and log in "
                               "(hf auth login)") from None
    except RepositoryNotFoundError:
        raise ModelUnavailable(f"{where}, and the Hub has no model {repo_id!r} (or it is private: log in with "
                               "hf auth login)") from None
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        raise ModelUnavailable(f"{where}, and the Hub answered with an error (HTTP {status})") from None
    except Exception as error:  # noqa: BLE001 - no network, a timeout, a proxy: one try, then stop
        raise ModelUnavailable(f"{where}, and the Hub ({hub_constants.ENDPOINT}) cannot be reached to download it "
                               f"({type(error).__name__})") from None


def locate_model(model: str, task: str, timeout: float = HUB_TIMEOUT_S) -> str:
    """Where to load `model` for `task` from: a local folder (given, or the cached Hub snapshot), or the Hub id itself
    when it is not cached but the Hub has it (downloaded on first use). Raises `ModelUnavailable`."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelUnavailable(f"{model} is a file; expected a folder with a saved transformers model")
        missing = missing_files(path, task)
        if missing:
            raise ModelUnavailable(f"the folder {model} is not a saved {task} model (it has no {', '.join(missing)})")
        return str(path)
    if not looks_like_repo_id(model):
        raise ModelUnavailable(f"there is no folder {model}")
    snapshot = cached_snapshot(model)
    if snapshot is not None and not missing_files(snapshot, task):
        return str(snapshot)
    partly = " (only partly)" if snapshot is not None else ""
    if hub_offline():
        raise ModelUnavailable(f"it is neither a local folder nor in the Hugging Face cache ({hub_cache()}){partly}, "
                               "and HF_HUB_OFFLINE is set, so it cannot be downloaded")
    ask_hub(model, timeout)
    return model
