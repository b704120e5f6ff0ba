"""``python -m camloc`` (also what ``torchrun -m camloc`` runs)."""

import sys

from camloc.cli import main

sys.exit(main())
