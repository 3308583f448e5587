"""`python -m evaluate_suite`: see `evaluate_suite.cli`."""

import sys

from .cli import main


if __name__ == "__main__":
    sys.exit(main())
