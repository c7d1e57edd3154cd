"""``python -m addernet.cli``: the `addernet` command line (torchrun launches it this way)."""
import sys

from . import main

sys.exit(main())
