"""``python -m gradscope``: the command line (see :mod:`gradscope.cli`)."""

import sys

from .cli import main

sys.exit(main())
