"""``python -m seem.cli`` (also what ``torchrun -m seem.cli train`` runs)."""

import sys

from seem.cli import main

sys.exit(main())
