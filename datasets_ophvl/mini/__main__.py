"""`python -m datasets_ophvl.mini OUT ...`: see `datasets_ophvl.mini.cli`."""

import sys

from .cli import main


sys.exit(main())
