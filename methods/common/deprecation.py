"""Renamed keywords keep working for one release, with a DeprecationWarning naming the new one.

The methods' non-op choices (which library fits a probe, which runs k-means) were called
``backend``, the word ``addernet`` uses for the adder op's implementation; they are ``solver`` now.
"""
from __future__ import annotations

import warnings


def renamed_keyword(func: str, old: str, new: str, old_value, new_value, default):
    """The value of keyword ``new``, given ``old_value`` passed under its former name ``old`` (None:
    not passed). Both given is a TypeError; the old one alone warns."""
    if old_value is None:
        return new_value
    if new_value != default:
        raise TypeError(f"{func}() got {old}= and {new}=; {old}= is the old name of {new}=: give {new}= only")
    warnings.warn(f"{func}({old}=...) is now {func}({new}=...); {old}= goes in the next release",
                  DeprecationWarning, stacklevel=3)
    return old_value
