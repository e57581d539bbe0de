"""``python -m lexicons run app.py``: the same as the ``lexicons`` console script."""

import sys

from .cli import main

sys.exit(main())
