"""Makes transformers' own common test mixins importable for the conformance tests in this folder.

transformers does not ship its `tests/` folder in the wheel, and this repository must not copy it. The source
distribution of the installed transformers version (`pip download --no-deps --no-binary :all: transformers==X`)
does contain the common test files (`tests/test_modeling_common.py`, `tests/test_processing_common.py`, ...); it is
fetched once into a cache folder and its `tests/` folder is imported as the package `transformers_tests` (a name of
our own, so that it cannot clash with this repository's `tests/`).

The cache folder is `$OPHCLIP_CONFORMANCE_CACHE`, or `~/.cache/ophclip/conformance`. Where the download is impossible
(no package index, pip fails), `transformers_tests.unavailable_reason` says why and the test module skips itself.

The source distribution lacks three helper modules that the common test files import but whose contents the mixins
used here do not need; minimal stand-ins are registered for them when they are missing:

- `tests/exporters/test_export.py` (`ExportTesterMixin`, a base class of `ModelTesterMixin` holding the export
  tests): an empty mixin. OphCLIP's `torch.export` / `torch.compile` checks are in `test_modeling_ophclip.py`.
- `tests/generation/test_utils.py` (`GenerationTesterMixin`): an empty mixin (OphCLIP does not generate).
- `utils/fetch_hub_objects_for_ci.py` (`url_to_local_path`, which maps Hub URLs of test media to a CI cache): the
  identity. Only the chat-template tests open those URLs, and they do not apply to OphCLIP.
"""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import transformers


PACKAGE = "transformers_tests"
VERSION = transformers.__version__
CACHE_DIR = Path(os.environ.get("OPHCLIP_CONFORMANCE_CACHE") or Path.home() / ".cache" / "ophclip" / "conformance")


def fetch_transformers_tests(version: str = VERSION, cache_dir: Path = CACHE_DIR) -> Path:
    """The `tests/` folder of transformers' source distribution `version`, downloaded and unpacked once."""
    tests_dir = cache_dir / f"transformers-{version}" / "tests"
    if (tests_dir / "test_modeling_common.py").is_file():
        return tests_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as work:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                   f"transformers=={version}", "--dest", work]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        archives = sorted(Path(work).glob(f"transformers-{version}.tar.gz"))
        if result.returncode != 0 or not archives:
            tail = " ".join((result.stderr or result.stdout).split())[-400:]
            raise RuntimeError(f"`{' '.join(command[2:])}` failed (exit {result.returncode}): {tail}")
        unpacked = Path(work) / "unpacked"
        prefix = f"transformers-{version}/tests/"
        with tarfile.open(archives[0]) as archive:
            members = [member for member in archive.getmembers()
                       if member.name.startswith(prefix) and member.name.endswith(".py") and member.isfile()]
            if not any(member.name == prefix + "test_modeling_common.py" for member in members):
                raise RuntimeError(f"{archives[0].name} has no {prefix}test_modeling_common.py")
            archive.extractall(unpacked, members=members, filter="data")
        target = tests_dir.parent
        if target.exists():  # a partial earlier attempt
            shutil.rmtree(target)
        os.replace(unpacked / f"transformers-{version}", target)
    return tests_dir


def _stand_in(name: str, **attributes) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module


def register_transformers_tests() -> None:
    """Import the fetched `tests/` folder as the package `transformers_tests` (see the module docstring)."""
    package = types.ModuleType(PACKAGE)
    package.__doc__ = f"The tests/ folder of transformers {VERSION}'s source distribution (fetched by tests/conformance)."
    package.unavailable_reason = None
    package.__path__ = []
    sys.modules[PACKAGE] = package
    try:
        tests_dir = fetch_transformers_tests()
    except Exception as error:  # no index, no network, pip failure: the conformance tests skip themselves
        package.unavailable_reason = f"transformers {VERSION}'s source distribution could not be fetched: {error}"
        return
    package.__path__ = [str(tests_dir)]
    package.__file__ = str(tests_dir / "__init__.py")
    for relative, mixin in (("exporters/test_export.py", "ExportTesterMixin"),
                            ("generation/test_utils.py", "GenerationTesterMixin")):
        if not (tests_dir / relative).is_file():
            subpackage = f"{PACKAGE}.{relative.split('/')[0]}"
            if subpackage not in sys.modules:
                _stand_in(subpackage, __path__=[])
            _stand_in(f"{PACKAGE}.{relative[:-3].replace('/', '.')}", **{mixin: type(mixin, (), {})})
    helper = "fetch_hub_objects_for_ci"
    if not (tests_dir.parent / "utils" / f"{helper}.py").is_file() and helper not in sys.modules:
        _stand_in(helper, url_to_local_path=lambda url: url)


def pytest_configure(config):
    # Markers that transformers' own test configuration declares; the common tests use them.
    for marker in ("accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "slow",
                   "torch_compile_test", "torch_export_test", "generate", "is_training_test", "training_ci"):
        config.addinivalue_line("markers", f"{marker}: a marker of transformers' common tests")


register_transformers_tests()
