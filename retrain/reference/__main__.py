"""``python -m retrain.reference [--check]``: write (or check) the generated reference pages in ``docs/``."""

import sys

from retrain.reference import main

sys.exit(main())
