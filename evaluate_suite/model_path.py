"""What a model path must be, checked before a model is loaded: one clear line when it is not a model.

`read_model_config(path_or_id)` returns the checkpoint's `config.json` as a dict or raises `ModelPathError`, a
`ValueError` whose message says what is wrong and what was expected. The evaluation suite (`load_encoder`) and the
`ophclip` command (`ophclip_cli.common.load_ophclip`) both call it, so a folder that does not exist, a folder without
`config.json`, a config without `model_type` or an unreachable Hub id read the same everywhere, instead of
transformers' `Repo id must be in the form 'repo_name'...` or `Should have a model_type key in its config.json`.

>>> read_model_config("runs/missing/final")
Traceback (most recent call last):
...
evaluate_suite.model_path.ModelPathError: model 'runs/missing/final': no such folder; expected a model folder \
(config.json + weights, as save_pretrained writes it) or a Hub id such as org/name
"""

import json
import os
import re
from pathlib import Path


EXPECTED = "expected a model folder (config.json + weights, as save_pretrained writes it) or a Hub id such as org/name"
_HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "subfolder", "proxies", "force_download")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


class ModelPathError(ValueError):
    """A model path or id that is not a loadable model; the message is one line."""


def looks_like_hub_id(text: str) -> bool:
    """`name` or `org/name` (what the Hub accepts), and not something written as a path (`./x`, `/x`, `~/x`, `a/b/c`).

    >>> [looks_like_hub_id(t) for t in ("openai/clip-vit-base-patch16", "bert", "runs/a/final", "./m", "/abs")]
    [True, True, False, False, False]
    """
    return bool(_HUB_ID.match(text)) and not text.startswith((".", "~")) and ".." not in text


def _first_line(error: Exception, limit: int = 160) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_model_config(path_or_id, **hub_kwargs) -> dict:
    """The `config.json` of a local model folder or Hub id, as a dict with a `model_type`.

    Local paths are checked here (exists, is a folder, has a readable `config.json` naming its `model_type`); a Hub
    id is asked through transformers (the `hub_kwargs` among `revision`, `cache_dir`, `token`, `local_files_only`,
    ...; other loading options are ignored here; under `HF_HUB_OFFLINE` only the cache is read). Raises
    `ModelPathError` with one line otherwise.
    """
    text = os.fspath(path_or_id) if isinstance(path_or_id, os.PathLike) else str(path_or_id)
    name = f"model {text!r}"
    path = Path(text).expanduser()
    if path.exists() or not looks_like_hub_id(text):
        if not path.exists():
            raise ModelPathError(f"{name}: no such folder; {EXPECTED}")
        if not path.is_dir():
            raise ModelPathError(f"{name} is a file, not a folder; {EXPECTED}")
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ModelPathError(f"{name}: the folder has no config.json; {EXPECTED}")
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeError, ValueError) as error:
            raise ModelPathError(f"{name}: config.json cannot be read ({_first_line(error)}); expected the JSON "
                                 f"object save_pretrained writes") from None
    else:
        from transformers import PretrainedConfig

        try:
            config, _ = PretrainedConfig.get_config_dict(
                text, **{key: value for key, value in hub_kwargs.items() if key in _HUB_KWARGS})
        except Exception as error:  # noqa: BLE001 - OSError, the Hub's HTTP and offline errors, JSON errors
            raise ModelPathError(f"{name} is not a local folder, and its config could not be read from the Hub "
                                 f"({_first_line(error)}); {EXPECTED}") from None
    if not isinstance(config, dict) or not config.get("model_type"):
        raise ModelPathError(f"{name}: config.json names no model_type; expected the config of a transformers model "
                             f"(e.g. model_type 'ophclip')")
    return config


__all__ = ["EXPECTED", "ModelPathError", "looks_like_hub_id", "read_model_config"]
