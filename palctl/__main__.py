"""Allows `python -m palctl`."""

import sys

from palctl.cli import main

sys.exit(main())
