"""``python -m sklearn_cnnenc``: the same as the ``cnnenc`` command."""

import sys

from .cli import main

sys.exit(main())
