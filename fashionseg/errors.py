"""The usage error: a setting on the command line that cannot work.

Its own module, at the bottom of the import graph, so that the settings checks
(:mod:`fashionseg.settings`), the command-line helpers (:mod:`fashionseg.cli`) and the
predict folder checks can all raise it without importing each other.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A setting on the command line that cannot work (the message says which)."""
