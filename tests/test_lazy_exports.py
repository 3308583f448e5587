"""`datasets_ophvl.lazy.lazy_exports`: the one mechanism by which `datasets_ophvl`, `evaluate_suite` and
`evaluate_suite.protocols` offer their names without importing their submodules until a name is used."""

import subprocess
import sys
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import sys
import datasets_ophvl, evaluate_suite, evaluate_suite.protocols as protocols

# Nothing is imported before a name is used...
assert "datasets_ophvl.format" not in sys.modules and "evaluate_suite.protocols.defaults" not in sys.modules
assert "SUBSETS" in dir(datasets_ophvl) and "DEFAULT_SEEDS" in dir(protocols) and "load_encoder" in dir(evaluate_suite)
# ...then the name is the submodule's own object, kept in the package so the lookup runs once.
from datasets_ophvl import format as ophvl_format
assert datasets_ophvl.SUBSETS is ophvl_format.SUBSETS and "SUBSETS" in vars(datasets_ophvl)
from evaluate_suite.protocols import DEFAULT_SEEDS
from evaluate_suite.protocols.defaults import DEFAULT_SEEDS as direct
assert DEFAULT_SEEDS is direct
try:
    datasets_ophvl.no_such_name
except AttributeError as error:
    assert str(error) == "module 'datasets_ophvl' has no attribute 'no_such_name'", error
else:
    raise AssertionError("an unknown name must raise AttributeError")
assert "torch" not in sys.modules
print("LAZY-OK")
"""


def test_names_load_on_first_use_and_unknown_names_raise():
    result = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "LAZY-OK"
