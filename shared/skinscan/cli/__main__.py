"""``python -m skinscan.cli``: the same as the ``skinscan`` command."""

import sys

from . import main

sys.exit(main())
