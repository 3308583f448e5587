"""Publish an OphCLIP model folder or an OphVL dataset folder to the Hugging Face Hub, as one commit.

```
python -m model_cards.publish model   FOLDER REPO_ID [--dry-run] [--private] [--commit-message M] [--token T]
python -m model_cards.publish dataset FOLDER REPO_ID [--dry-run] [--private] [--commit-message M] [--token T]
python -m model_cards.publish space   FOLDER REPO_ID --model-repo ORG/MODEL [--overwrite] [--dry-run] [...]
```

or `publish_model(folder, repo_id, ...)` / `publish_dataset(folder, repo_id, ...)` / `publish_space(folder,
repo_id, model_repo=...)`. A Space folder is first written (`write_space_folder`: `app.py` serving the web app of
`ophclip_cli.app` for the model repository, `requirements.txt` pinned to this environment's versions, a README with
the Space metadata block, and the OphCLIP packages the app imports, copied from where they are installed), then
validated and pushed like the others.

1. **Validate** the folder (nothing is sent when it fails; nothing in it is run unless `--trust-remote-code`): a
   model folder's `config.json` must parse and name its model type (its remote code is parsed, not run), it must
   hold its weights, the remote-code files its
   `auto_map`s name and a model card whose metadata parses, and its `.eval_results/*.yaml` must parse as evaluation
   results; a dataset folder needs a card with a `configs:` block whose data files all match shards in the folder,
   complete shard sets (every `train-NNNNN-of-TTTTT.tar` from 0 to TTTTT-1, one total per folder: a missing shard or
   a leftover of an earlier shard count is refused, named) and no unfinished build (`*.tmp`, `part-*.tar`).
2. **Plan** the upload: every file of the folder at the same relative path in the repository, except build
   bookkeeping (`.ophvl-manifest.json`, the `.ophvl-mini.json` marker, `*.tmp`, caches, `.git`, other hidden
   files; `.eval_results/` and `.gitattributes` are kept). `--dry-run` prints this plan (path in the repository,
   size) and stops: nothing is sent, not even a request.
3. **Push**: create the repository if needed (`HfApi.create_repo(exist_ok=True)`), then one
   `HfApi.create_commit` with a `CommitOperationAdd` per file. The Hub applies a commit entirely or not at all, so
   a failure leaves no half-published state: at worst a repository that exists without the new files. (Not
   `upload_folder`: with hf_xet installed it streams large folders as several commits.) Files identical to those
   already in the repository are skipped by the client; when nothing changed, no commit is made.

Failures (validation, authentication, network, server errors) raise `PublishError` with a one-line message; the
command prints it and exits with status 2 (invalid folder or arguments) or 1 (the Hub refused or could not be
reached).

The Hub is `HF_ENDPOINT` (default https://huggingface.co); the token is `--token`, else `HF_TOKEN`, else the one
saved by `hf auth login`.
"""

import argparse
import fnmatch
import json
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi, ModelCard, constants
from huggingface_hub.errors import HfHubHTTPError


try:  # huggingface_hub 2.x talks HTTP through httpx2; its connection errors are not OSErrors
    from httpx2 import HTTPError as _TransportError
except ImportError:  # pragma: no cover - other client versions
    _TransportError = OSError


KINDS = ("model", "dataset", "space")
_REPO_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# Never uploaded: build bookkeeping, caches and editor/OS clutter.
EXCLUDED_NAMES = frozenset({".ophvl-manifest.json", ".ophvl-mini.json", ".DS_Store", "Thumbs.db"})
EXCLUDED_PATTERNS = ("*.tmp", "*.pyc", "*.lock", "*~")
EXCLUDED_DIRS = frozenset({".git", ".cache", "__pycache__", ".ipynb_checkpoints", ".huggingface"})
# Hidden entries that belong in a Hub repository.
HIDDEN_KEPT = frozenset({".eval_results", ".gitattributes"})
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.pt")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json")


class PublishError(RuntimeError):
    """Publishing failed; the message is one line. `exit_code` is 2 for an invalid folder or argument, 1 for a Hub
    or network failure."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(" ".join(str(message).split()))
        self.exit_code = exit_code


@dataclass(frozen=True)
class PlannedFile:
    path_in_repo: str
    local_path: Path
    size: int


@dataclass
class PublishPlan:
    """What a push uploads: `files` (path in the repository, local path, size) and what it leaves out."""

    kind: str
    folder: Path
    repo_id: str
    files: list[PlannedFile]
    excluded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def describe(self, endpoint: str | None = None, private: bool = False) -> str:
        """The plan as text: the target, one line per file (path in the repository, size), the total."""
        endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        prefix = _REPO_PREFIX[self.kind]
        width = max([len(f.path_in_repo) for f in self.files] + [4])
        lines = [f"{self.kind} repository {self.repo_id} ({'private' if private else 'public'}) at "
                 f"{endpoint}/{prefix}{self.repo_id}, one commit, {len(self.files)} files, "
                 f"{_human(self.total_size)}:"]
        lines += [f"  {f.path_in_repo:<{width}}  {f.size:>12,d} B" for f in self.files]
        if self.excluded:
            lines.append("left out: " + ", ".join(self.excluded))
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class PublishResult:
    plan: PublishPlan
    dry_run: bool
    commit_url: str | None = None
    commit_oid: str | None = None
    repo_url: str | None = None


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000


# ---------------------------------------------------------------------------------------------------------------------
# Files


def _is_excluded(relative: Path) -> bool:
    parts = relative.parts
    if any(part in EXCLUDED_DIRS for part in parts[:-1]):
        return True
    if relative.name in EXCLUDED_NAMES or any(fnmatch.fnmatch(relative.name, p) for p in EXCLUDED_PATTERNS):
        return True
    return any(part.startswith(".") and part not in HIDDEN_KEPT for part in parts)


def collect_files(folder) -> tuple[list[PlannedFile], list[str]]:
    """The folder's files to upload (sorted by path in the repository) and the relative paths left out."""
    folder = Path(folder)
    files, excluded = [], []
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            continue
        relative = path.relative_to(folder)
        if _is_excluded(relative) or not path.is_file():  # broken links and special files are not uploaded either
            excluded.append(relative.as_posix())
        else:
            files.append(PlannedFile(relative.as_posix(), path, path.stat().st_size))
    return files, excluded


# ---------------------------------------------------------------------------------------------------------------------
# Validation


def _invalid(message: str) -> PublishError:
    return PublishError(message, exit_code=2)


def _check_folder(folder) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise _invalid(f"{folder} is not a folder")
    return folder


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise _invalid(f"invalid repository id {repo_id!r}: {err}") from None
    if "/" not in repo_id:
        raise _invalid(f"give the repository as <user or org>/<name>, not {repo_id!r}")


def _auto_map_files(config_path: Path) -> set[str]:
    """The `.py` files an `auto_map` (of config.json or processor_config.json, nested ones included) refers to."""
    names = set()

    def visit(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "auto_map" and isinstance(item, dict):
                    for target in item.values():
                        for ref in (target if isinstance(target, (list, tuple)) else [target]):
                            if isinstance(ref, str) and "." in ref and "--" not in ref:
                                names.add(ref.rsplit(".", 1)[0] + ".py")
                else:
                    visit(item)

    visit(json.loads(config_path.read_text(encoding="utf-8")))
    return names


def _check_eval_results(folder: Path) -> None:
    import yaml
    from huggingface_hub import parse_eval_result_entries

    for path in sorted((folder / ".eval_results").glob("*")):
        if path.suffix not in (".yaml", ".yml"):
            raise _invalid(f"{path.relative_to(folder)}: .eval_results/ holds YAML files only")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(data, list) or not data:
                raise ValueError("expected a non-empty list of results")
            parse_eval_result_entries(data)
        except Exception as err:  # noqa: BLE001 - yaml, key and type errors all mean the same thing here
            raise _invalid(f"{path.relative_to(folder)} is not a list of evaluation results: "
                           f"{type(err).__name__}: {err}") from None


def _weight_files(folder: Path) -> list[Path]:
    """The weight files at the top of a model folder (what `from_pretrained` reads)."""
    return sorted({path for pattern in WEIGHT_PATTERNS for path in folder.glob(pattern) if path.is_file()})


def _check_config(folder: Path, trust_remote_code: bool) -> list[str]:
    """`config.json` parses and names its model type; it is loaded with `AutoConfig` only when that runs no code of
    the folder (a model type transformers knows) or when the user trusts the folder's code. Otherwise its remote-code
    files are only parsed (syntax), never run: validating a folder must not execute what is in it."""
    import ast

    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise _invalid(f"{path} does not load: {type(err).__name__}: {err}; expected the JSON that save_pretrained "
                       "writes") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str) or not model_type:
        raise _invalid(f"{path} has no model_type; expected the config.json that save_pretrained writes")
    for name in sorted(_auto_map_files(path)):
        code = folder / name
        if code.is_file():
            try:
                ast.parse(code.read_text(encoding="utf-8"), filename=str(code))
            except (SyntaxError, UnicodeDecodeError, ValueError) as err:
                raise _invalid(f"{code} is not valid Python ({err}); the remote code would not load") from None
    if model_type in CONFIG_MAPPING or trust_remote_code:
        try:
            AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        except Exception as err:  # noqa: BLE001 - whatever stops the config from loading stops the repository too
            raise _invalid(f"{path} does not load with AutoConfig.from_pretrained"
                           f"(trust_remote_code={trust_remote_code}): {type(err).__name__}: {err}") from None
        return []
    return [f"model type {model_type!r} is remote code: its files were parsed, not run (pass --trust-remote-code "
            "to load the config with them)"]


def validate_model_folder(folder, trust_remote_code: bool = False) -> list[str]:
    """Check that `folder` is a publishable OphCLIP model; raise `PublishError` if not. Returns notes (non-fatal).

    Nothing in the folder is executed unless `trust_remote_code`: a config of remote-code type is checked statically
    (its JSON, its model type, the syntax of the code its `auto_map` names)."""
    folder = _check_folder(folder)
    notes = []
    if not (folder / "config.json").is_file():
        raise _invalid(f"{folder} has no config.json: save the model with save_pretrained first")
    if not _weight_files(folder):
        raise _invalid(f"{folder} has no weights: expected model.safetensors (or files matching "
                       f"{', '.join(WEIGHT_PATTERNS)}) beside config.json; save the model with save_pretrained")
    notes += _check_config(folder, trust_remote_code)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            raise _invalid(f"{folder}: weight shards named in {index.name} are missing: {', '.join(missing)}")
    for config in [folder / "config.json", *(folder / name for name in PROCESSOR_FILES)]:
        if config.is_file():
            missing = sorted(n for n in _auto_map_files(config) if not (folder / n).is_file())
            if missing:
                raise _invalid(f"{folder}: {config.name} maps Auto classes to code that is not in the folder: "
                               f"{', '.join(missing)}")
    if not any((folder / name).is_file() for name in PROCESSOR_FILES):
        notes.append("no processor (processor_config.json): users will need their own tokenizer and video processor")
    readme = folder / "README.md"
    if not readme.is_file():
        raise _invalid(f"{folder} has no model card (README.md): write one with model_cards.build_model_card")
    try:
        ModelCard.load(readme)
    except Exception as err:  # noqa: BLE001
        raise _invalid(f"{readme}: the model card's metadata does not parse: {type(err).__name__}: {err}") from None
    _check_eval_results(folder)
    return notes


def validate_dataset_folder(folder) -> list[str]:
    """Check that `folder` is a publishable OphVL-format dataset; raise `PublishError` if not."""
    from .dataset_card import config_files

    folder = _check_folder(folder)
    readme = folder / "README.md"
    if not readme.is_file():
        raise _invalid(f"{folder} has no dataset card (README.md) with a configs: block")
    try:
        configs = DatasetCard.load(readme).data.to_dict().get("configs")
    except Exception as err:  # noqa: BLE001
        raise _invalid(f"{readme}: the dataset card's metadata does not parse: {type(err).__name__}: {err}") from None
    if not configs or not all(isinstance(c, dict) and c.get("config_name") for c in configs):
        raise _invalid(f"{readme} has no configs: block naming the subsets and their data files")
    unfinished = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                        if p.is_file() and (p.name.endswith(".tmp") or fnmatch.fnmatch(p.name, "part-*.tar")))
    if unfinished:
        raise _invalid(f"{folder} holds an unfinished build ({', '.join(unfinished[:3])}"
                       f"{', ...' if len(unfinished) > 3 else ''}): finish or resume it first")
    matched = config_files(folder, configs)
    empty = [name for name, files in matched.items() if not files]
    if empty:
        raise _invalid(f"{folder}: no data files match the configs {', '.join(empty)} of the dataset card")
    for name, files in matched.items():
        problem = shard_set_problem(folder, files)
        if problem:
            raise _invalid(f"{folder}: config {name}: {problem}")
    return []


_SHARD_NAME = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5,})-of-(?P<total>\d{5,})(?P<suffix>\..+)$")


def _listing(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def shard_set_problem(folder, files) -> str | None:
    """Why the numbered shards among `files` (paths under `folder` named `<prefix>-NNNNN-of-TTTTT.<ext>`) are not
    complete sets, or None.

    Within a folder and prefix, every shard must say the same total `TTTTT` (a mix is the leftover of an earlier
    build with another shard count: those files would be read twice) and every index `0 .. TTTTT-1` must be there.
    Files not named like shards are not judged."""
    folder = Path(folder)
    groups: dict[tuple[str, str, str], dict[int, list[tuple[int, str]]]] = {}
    for path in files:
        relative = Path(path).relative_to(folder)
        match = _SHARD_NAME.match(relative.name)
        if match:
            group = groups.setdefault((relative.parent.as_posix(), match["prefix"], match["suffix"]), {})
            group.setdefault(int(match["total"]), []).append((int(match["index"]), relative.as_posix()))
    for (parent, prefix, suffix), by_total in sorted(groups.items()):
        where = f"{parent}/{prefix}-*{suffix}"
        complete = {total for total, shards in by_total.items()
                    if sorted(index for index, _ in shards) == list(range(total))}
        if len(by_total) > 1:
            stale = sorted(path for total, shards in by_total.items() if total not in complete or len(complete) > 1
                           for _, path in shards)
            totals = ", ".join(f"-of-{total:05d}" for total in sorted(by_total))
            return (f"{where} mixes shard sets of different sizes ({totals}); stale or extra shards: "
                    f"{_listing(stale)}; remove them or rebuild the dataset")
        total, shards = next(iter(by_total.items()))
        indices = {index for index, _ in shards}
        extra = sorted(path for index, path in shards if index >= total)
        if extra:
            return f"{where}: shards numbered beyond their total {total}: {_listing(extra)}"
        if total not in complete:
            missing = [f"{parent}/{prefix}-{i:05d}-of-{total:05d}{suffix}" for i in range(total) if i not in indices]
            return (f"{where} is an incomplete set of {total} shards, missing {_listing(missing)}; "
                    "finish or rebuild the dataset")
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Planning and pushing


def plan_model(folder, repo_id: str, trust_remote_code: bool = False) -> PublishPlan:
    """Validate a model folder and list what a push uploads."""
    _check_repo_id(repo_id)
    notes = validate_model_folder(folder, trust_remote_code=trust_remote_code)
    files, excluded = collect_files(folder)
    return PublishPlan("model", Path(folder), repo_id, files, excluded, notes)


def plan_dataset(folder, repo_id: str) -> PublishPlan:
    """Validate a dataset folder and list what a push uploads."""
    _check_repo_id(repo_id)
    notes = validate_dataset_folder(folder)
    files, excluded = collect_files(folder)
    return PublishPlan("dataset", Path(folder), repo_id, files, excluded, notes)


def _describe_error(err: Exception) -> str:
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        message = err.server_message or str(err).split("\n")[0]
        hint = ""
        if status == 401:
            hint = " (authentication failed: set HF_TOKEN, pass --token, or run `hf auth login`)"
        elif status == 403:
            hint = " (the token may not write to this namespace)"
        return f"HTTP {status}{hint}: {message}"
    return f"{type(err).__name__}: {err}"


_FAILURES = (HfHubHTTPError, _TransportError, OSError)


def push(plan: PublishPlan, *, private: bool = False, commit_message: str | None = None, token: str | None = None,
         endpoint: str | None = None) -> PublishResult:
    """Create the repository if needed, then upload `plan.files` as one commit."""
    api = HfApi(endpoint=endpoint, token=token)
    where = f"{plan.kind} repository {plan.repo_id} at {api.endpoint}"
    sdk = {"space_sdk": "gradio"} if plan.kind == "space" else {}
    try:
        repo_url = api.create_repo(plan.repo_id, repo_type=plan.kind, private=True if private else None,
                                   exist_ok=True, **sdk)
    except _FAILURES as err:
        raise PublishError(f"could not create the {where}: {_describe_error(err)}") from err
    operations = [CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=str(f.local_path))
                  for f in plan.files]
    message = commit_message or f"Upload {plan.kind} from {plan.folder.resolve().name}"
    try:
        info = api.create_commit(plan.repo_id, operations, commit_message=message, repo_type=plan.kind)
    except _FAILURES as err:
        raise PublishError(f"could not commit {len(operations)} files to the {where}: {_describe_error(err)}; "
                           "nothing was published (the commit is all or nothing)") from err
    return PublishResult(plan, dry_run=False, commit_url=info.commit_url, commit_oid=info.oid, repo_url=str(repo_url))


def _publish(plan_fn, folder, repo_id, *, private, dry_run, commit_message, token, endpoint, out) -> PublishResult:
    plan = plan_fn(folder, repo_id)
    if dry_run:
        print("dry run, nothing is uploaded; would upload to the " + plan.describe(endpoint, private), file=out)
        return PublishResult(plan, dry_run=True)
    result = push(plan, private=private, commit_message=commit_message, token=token, endpoint=endpoint)
    print(f"published {len(plan.files)} files ({_human(plan.total_size)}) to {result.repo_url}: {result.commit_url}",
          file=out)
    return result


def publish_model(folder, repo_id: str, *, private: bool = False, dry_run: bool = False,
                  commit_message: str | None = None, token: str | None = None, endpoint: str | None = None,
                  out=None, trust_remote_code: bool = False) -> PublishResult:
    """Validate an OphCLIP model folder (model, processor, remote code, README.md, `.eval_results/`) and push it to
    the model repository `repo_id` as one commit; with `dry_run`, print the plan and upload nothing. The folder's
    code is run (to load its config) only with `trust_remote_code`.

    Raises:
        PublishError: the folder is invalid (`exit_code` 2) or the Hub refused or could not be reached (1).
    """
    return _publish(lambda f, r: plan_model(f, r, trust_remote_code=trust_remote_code), folder, repo_id,
                    private=private, dry_run=dry_run, commit_message=commit_message, token=token, endpoint=endpoint,
                    out=out or sys.stdout)


def publish_dataset(folder, repo_id: str, *, private: bool = False, dry_run: bool = False,
                    commit_message: str | None = None, token: str | None = None, endpoint: str | None = None,
                    out=None) -> PublishResult:
    """Validate an OphVL-format dataset folder (README.md with `configs:`, shards) and push it to the dataset
    repository `repo_id` as one commit, without the build's bookkeeping files; with `dry_run`, print the plan and
    upload nothing.

    Raises:
        PublishError: the folder is invalid (`exit_code` 2) or the Hub refused or could not be reached (1).
    """
    return _publish(plan_dataset, folder, repo_id, private=private, dry_run=dry_run, commit_message=commit_message,
                    token=token, endpoint=endpoint, out=out or sys.stdout)


# ---------------------------------------------------------------------------------------------------------------------
# Spaces: the web app of a model repository


SPACE_MARKER = ".ophclip-space"  # written into a Space folder; --overwrite replaces only folders that hold it
# What `ophclip_cli.app` imports of the project: the app, the model code, the benchmark registry (prompt sets) and
# what it imports in turn (`datasets_ophvl.lazy`, which needs none of datasets' optional dependencies).
SPACE_PACKAGES = ("ophclip_cli", "modeling_ophclip", "evaluate_suite", "datasets_ophvl")
# The distributions the app needs at run time, pinned to the versions installed here (the ones the tests ran with).
SPACE_REQUIREMENTS = ("transformers", "huggingface_hub", "safetensors", "numpy", "decord", "av", "matplotlib",
                      "gradio", "tokenizers")
SPACE_CARD_TEMPLATE = Path(__file__).resolve().parent / "templates" / "space_card.md"

_SPACE_APP = """\
# The OphCLIP web app for {model_repo} (written by `python -m model_cards.publish space`).
# A Space runs `python app.py`; locally it serves http://127.0.0.1:7860.
from ophclip_cli.app import build_app, launch_kwargs

MODEL = {model_repo!r}

demo = build_app(MODEL)

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1).launch(**launch_kwargs(demo.core))
"""

_TORCH_NOTE = """\
# torch: a CPU Space (the free hardware) runs the CPU build. The default Linux torch wheel bundles CUDA libraries
# (gigabytes to download, unused on a CPU); to install the CPU-only build instead, add PyTorch's CPU wheel index as an
# --extra-index-url line above this one (the address is on PyTorch's "get started" page). GPU hardware needs no change.
"""


def _installed_version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _package_folder(name: str) -> Path:
    """Where a package of the project is installed, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise _invalid(f"the package {name!r} that the Space app imports is not installed; install the OphCLIP "
                       "project (pip install -e \".[app]\") first")
    return Path(list(spec.submodule_search_locations)[0])


def space_requirements() -> str:
    """`requirements.txt` of the Space: torch (with the CPU note) and the app's dependencies, pinned."""
    lines = ["# Pinned to the versions the OphCLIP tests ran with (python -m model_cards.publish space)."]
    torch_version = _installed_version("torch")
    lines.append(_TORCH_NOTE.rstrip("\n"))
    lines.append(f"torch=={torch_version.split('+')[0]}" if torch_version else "torch")
    for name in SPACE_REQUIREMENTS:
        version = _installed_version(name)
        lines.append(f"{name}=={version}" if version else name)
    return "\n".join(lines) + "\n"


def write_space_folder(folder, model_repo: str, *, title: str | None = None, overwrite: bool = False) -> Path:
    """Write a Space folder for the model repository `model_repo`: `app.py`, `requirements.txt`, `README.md` (the
    Space card with its metadata block: sdk gradio, `app.py`, the model) and copies of `SPACE_PACKAGES`.

    An existing non-empty folder is refused unless `overwrite`, and even then unless an earlier call wrote it."""
    import shutil

    from huggingface_hub import SpaceCard, SpaceCardData

    _check_repo_id(model_repo)
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        if not overwrite:
            raise _invalid(f"{folder} exists and is not empty; pass --overwrite to write the Space folder again")
        if not (folder / SPACE_MARKER).is_file():
            raise _invalid(f"{folder} was not written by `publish space` (no {SPACE_MARKER}); refusing to overwrite")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPACE_MARKER).write_text(model_repo + "\n", encoding="utf-8")
    for name in SPACE_PACKAGES:
        shutil.copytree(_package_folder(name), folder / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    (folder / "app.py").write_text(_SPACE_APP.format(model_repo=model_repo), encoding="utf-8")
    (folder / "requirements.txt").write_text(space_requirements(), encoding="utf-8")
    title = title or f"OphCLIP: {model_repo.split('/')[-1]}"
    card_data = SpaceCardData(title=title, sdk="gradio", sdk_version=_installed_version("gradio"),
                              app_file="app.py", license="apache-2.0", models=[model_repo],
                              tags=["surgical-video", "ophthalmology", "video-text", "zero-shot"],
                              emoji="👁️", colorFrom="indigo", colorTo="green", pinned=False,
                              short_description="Phase timelines, text search and saliency of surgical videos")
    card = SpaceCard.from_template(card_data, template_path=str(SPACE_CARD_TEMPLATE), title=title,
                                   model_repo=model_repo, packages=", ".join(f"`{n}/`" for n in SPACE_PACKAGES))
    card.save(folder / "README.md")
    return folder


def validate_space_folder(folder) -> list[str]:
    """Check that `folder` is a publishable Gradio Space: a card whose metadata names sdk gradio and an app file that
    exists and parses (it is not run), and a requirements.txt."""
    import ast

    from huggingface_hub import SpaceCard

    folder = _check_folder(folder)
    readme = folder / "README.md"
    if not readme.is_file():
        raise _invalid(f"{folder} has no Space card (README.md); write the folder with `publish space`")
    try:
        data = SpaceCard.load(readme).data.to_dict()
    except Exception as err:  # noqa: BLE001
        raise _invalid(f"{readme}: the Space card's metadata does not parse: {type(err).__name__}: {err}") from None
    if data.get("sdk") != "gradio":
        raise _invalid(f"{readme}: the metadata says sdk {data.get('sdk')!r}; expected 'gradio'")
    app = folder / data.get("app_file", "app.py")
    if not app.is_file():
        raise _invalid(f"{folder} has no {app.name}, the app_file its card names")
    try:
        ast.parse(app.read_text(encoding="utf-8"), filename=str(app))
    except (SyntaxError, UnicodeDecodeError, ValueError) as err:
        raise _invalid(f"{app} is not valid Python ({err})") from None
    if not (folder / "requirements.txt").is_file():
        raise _invalid(f"{folder} has no requirements.txt; the Space would not install its dependencies")
    return []


def plan_space(folder, repo_id: str) -> PublishPlan:
    """Validate a Space folder and list what a push uploads."""
    _check_repo_id(repo_id)
    notes = validate_space_folder(folder)
    files, excluded = collect_files(folder)
    return PublishPlan("space", Path(folder), repo_id, files, excluded, notes)


def publish_space(folder, repo_id: str, *, model_repo: str, title: str | None = None, overwrite: bool = False,
                  private: bool = False, dry_run: bool = False, commit_message: str | None = None,
                  token: str | None = None, endpoint: str | None = None, out=None) -> PublishResult:
    """Write the Space folder for `model_repo` (`write_space_folder`) and push it to the Space `repo_id` as one
    commit; with `dry_run`, write the folder, print the plan and upload nothing.

    Raises:
        PublishError: the folder or arguments are invalid (`exit_code` 2) or the Hub refused or could not be reached (1).
    """
    _check_repo_id(repo_id)
    write_space_folder(folder, model_repo, title=title, overwrite=overwrite)
    return _publish(plan_space, folder, repo_id, private=private, dry_run=dry_run, commit_message=commit_message,
                    token=token, endpoint=endpoint, out=out or sys.stdout)


# ---------------------------------------------------------------------------------------------------------------------
# Command line


_EPILOG = """\
exit status: 0 published (or planned, with --dry-run); 1 the Hub refused or could not be reached; 2 invalid folder or
arguments. The Hub is $HF_ENDPOINT (default https://huggingface.co); the token is --token, else $HF_TOKEN, else the
one saved by `hf auth login`.
"""


def _wrap(text: str) -> str:
    return textwrap.fill(text, 100, break_on_hyphens=False, break_long_words=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model_cards.publish",
        description=_wrap("Validate a model or dataset folder and push it to the Hugging Face Hub as one "
                                  "commit (all files or none). The repository is created if it does not exist."),
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="kind", required=True, metavar="{model,dataset,space}")
    helps = {
        "model": ("push an OphCLIP model folder",
                  "Push an OphCLIP model folder (save_pretrained output: config.json, weights, remote-code *.py, "
                  "processor files, README.md model card, .eval_results/*.yaml). Before anything is sent the folder "
                  "must hold a config.json with its model type (loaded with AutoConfig only when that runs none of "
                  "the folder's code, or with --trust-remote-code), its weights and the code its auto_map names, "
                  "and have a model card whose metadata parses."),
        "dataset": ("push an OphVL-format dataset folder",
                    "Push an OphVL-format dataset folder (README.md with a configs: block, data/<subset>/*.tar "
                    "shards, any other files such as benchmark/). The build's bookkeeping (.ophvl-manifest.json, "
                    "the .ophvl-mini.json marker, *.tmp) is left out; an unfinished build is refused."),
        "space": ("write and push a Gradio Space serving the web app of a model repository",
                  "Write FOLDER as a Gradio Space for the model repository --model-repo (app.py running "
                  "`ophclip app`'s web app, requirements.txt pinned to this environment's versions with a note on "
                  "CPU torch, README.md with the Space metadata, the OphCLIP packages the app imports), then push "
                  "it. An existing FOLDER is replaced only with --overwrite and only if this command wrote it."),
    }
    for kind, (short, long) in helps.items():
        sub = commands.add_parser(kind, help=short, description=_wrap(long), epilog=_EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("folder", metavar="FOLDER",
                         help="the Space folder to write and upload" if kind == "space" else
                         f"the {kind} folder to upload")
        sub.add_argument("repo_id", metavar="REPO_ID", help=f"the {kind} repository, <user or org>/<name>")
        sub.add_argument("--dry-run", action="store_true",
                         help="validate and print which files would go where (path in the repository, size); "
                              "send nothing")
        sub.add_argument("--private", action="store_true",
                         help="create the repository as private (an existing repository keeps its visibility)")
        sub.add_argument("--commit-message", default=None, metavar="TEXT",
                         help="the commit message (default: 'Upload <kind> from <folder name>')")
        sub.add_argument("--token", default=None, help="Hub token (default: $HF_TOKEN or the saved login)")
        if kind == "space":
            sub.add_argument("--model-repo", required=True, metavar="ORG/MODEL",
                             help="the model repository the app loads (e.g. the one `publish model` pushed)")
            sub.add_argument("--title", default=None, help="the Space's title (default: 'OphCLIP: <model name>')")
            sub.add_argument("--overwrite", action="store_true",
                             help="replace FOLDER if an earlier `publish space` wrote it")
        if kind == "model":
            sub.add_argument("--trust-remote-code", action="store_true",
                             help="load the config with the folder's own code while validating (it is run); by "
                                  "default that code is only parsed")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    publish = {"model": publish_model, "dataset": publish_dataset, "space": publish_space}[args.kind]
    extra = {"trust_remote_code": args.trust_remote_code} if args.kind == "model" else {}
    if args.kind == "space":
        extra = {"model_repo": args.model_repo, "title": args.title, "overwrite": args.overwrite}
    try:
        publish(args.folder, args.repo_id, private=args.private, dry_run=args.dry_run,
                commit_message=args.commit_message, token=args.token, **extra)
    except PublishError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
