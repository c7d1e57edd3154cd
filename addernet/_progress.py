"""The one progress bar policy of the package: tqdm on a terminal, nothing in a log file or a pipe
(where a bar is noise), nothing when the caller says no (``--no-progress``)."""
from __future__ import annotations

import sys
from typing import Iterable, Optional


def progress(iterable: Iterable, enabled: bool, desc: str, total: Optional[int] = None, leave: bool = False):
    """``iterable`` itself, or a tqdm bar over it when ``enabled`` and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)
