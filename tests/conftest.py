"""Test configuration shared by the whole suite."""

import sys
from pathlib import Path


TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

# Test helper modules (e.g. `remote_code`) are imported by plain name: `from remote_code import run_without_project`.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

# The project is normally installed (`pip install -e ".[test]"`, see the Makefile). Appending the repository root
# keeps the suite runnable from a checkout without that install; an installed copy still takes precedence.
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))
