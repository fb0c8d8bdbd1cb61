"""``python -m stspilot`` runs the CLI."""

import sys

from stspilot.cli import main

sys.exit(main())
