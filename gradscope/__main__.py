"""``python -m gradscope``: the command line (see ``gradscope.cli``)."""

import sys

from .cli import main

sys.exit(main())
