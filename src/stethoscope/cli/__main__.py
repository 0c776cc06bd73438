"""``python -m stethoscope.cli``: the same as the ``stethoscope`` command."""

import sys

from . import main

sys.exit(main())
