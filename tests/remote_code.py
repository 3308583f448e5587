"""Run Python code in a fresh interpreter where this project cannot be imported.

Used by tests that check that a folder written by `save_pretrained` loads with `trust_remote_code=True` on a machine
that has transformers but not this project: the child must get OphCLIP's classes from the code copied into the folder
(imported by transformers as `transformers_modules.*`), never from the project's own packages.

Whatever way the project is importable in the parent (an editable install's `.pth` path entry or meta-path finder, a
regular install, the repository root on `sys.path` or `PYTHONPATH`, the current directory), the child

- starts with a prelude that, before anything else, puts a finder at the front of `sys.meta_path` that raises
  `ImportError` for the project's top-level packages (`PROJECT_PACKAGES`) and drops the repository root from
  `sys.path`;
- runs with `cwd` set to the given directory (a test's `tmp_path`), without the repository root in `PYTHONPATH`;
- runs offline (`HF_HUB_OFFLINE=1`) with `HF_MODULES_CACHE` in a fresh directory, so no earlier copy of the remote
  code is reused.
"""

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parent.parent

# Top-level packages of this project (setup.cfg, [options.packages.find]).
PROJECT_PACKAGES = ("modeling_ophclip", "datasets_ophvl", "evaluate_suite", "model_cards")

_PRELUDE = """\
import os as _os
import sys as _sys

_BLOCKED = {blocked!r}
_REPO_ROOT = {repo_root!r}


class _BlockProjectFinder:
    \"\"\"Meta-path finder that makes the project's packages unimportable in this process.\"\"\"

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            raise ImportError(f"{{name!r}} is blocked: this process must not import the project", name=name)
        return None


_sys.meta_path.insert(0, _BlockProjectFinder())


def _is_repo_root(entry):
    try:
        return _os.path.realpath(entry or _os.getcwd()) == _REPO_ROOT
    except (OSError, TypeError):
        return False


_sys.path[:] = [entry for entry in _sys.path if not _is_repo_root(entry)]
for _name in list(_sys.modules):
    if _name.partition(".")[0] in _BLOCKED:
        del _sys.modules[_name]
del _name

"""


def blocking_prelude() -> str:
    """The code that the child runs before the caller's script (exposed for inspection and reuse)."""
    return _PRELUDE.format(blocked=set(PROJECT_PACKAGES), repo_root=os.path.realpath(REPO_ROOT))


def _child_env(cwd: Path, env_extra: dict | None) -> dict:
    env = dict(os.environ)
    # Keep PYTHONPATH entries other than the repository root (the prelude would drop it anyway).
    repo_root = os.path.realpath(REPO_ROOT)
    pythonpath = [
        entry
        for entry in env.get("PYTHONPATH", "").split(os.pathsep)
        if entry and os.path.realpath(entry) != repo_root
    ]
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    else:
        env.pop("PYTHONPATH", None)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["HF_DATASETS_OFFLINE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env_extra = {key: str(value) for key, value in (env_extra or {}).items()}
    if "HF_MODULES_CACHE" not in env_extra:
        env["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="hf_modules_", dir=cwd)
    env.update(env_extra)
    return env


def run_without_project(
    script: str, cwd, env_extra: dict | None = None, timeout: float = 120.0, check: bool = True
) -> subprocess.CompletedProcess:
    """Run `script` (Python source) in a fresh interpreter where this project's packages cannot be imported.

    Args:
        script: Python source; it is dedented and runs after the blocking prelude.
        cwd: working directory of the child (use the test's `tmp_path`); the fresh `HF_MODULES_CACHE` is made in it
            unless `env_extra` sets one.
        env_extra: extra environment variables for the child, applied last (they override the defaults above).
        timeout: seconds before the child is killed (`subprocess.TimeoutExpired`).
        check: raise `AssertionError` with the child's output if it exits with a non-zero status.

    Returns:
        The `subprocess.CompletedProcess`, with `stdout` and `stderr` as text.
    """
    cwd = Path(cwd)
    source = blocking_prelude() + textwrap.dedent(script)
    result = subprocess.run(
        [sys.executable, "-c", source],
        cwd=cwd,
        env=_child_env(cwd, env_extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"child process exited with status {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


__all__ = ["PROJECT_PACKAGES", "REPO_ROOT", "blocking_prelude", "run_without_project"]
