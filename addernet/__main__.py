"""``python -m addernet``: the same command line as ``addernet``."""
import sys

from .cli import main

sys.exit(main())
