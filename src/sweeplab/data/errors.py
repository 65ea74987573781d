"""The one exception of the data package."""

from __future__ import annotations


class DataError(ValueError):
    """A data file or array is not what the loader expects.

    The message names the file, the key, what was found and what was expected, so the
    fix can be made without opening a debugger.
    """
