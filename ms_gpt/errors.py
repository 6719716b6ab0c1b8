"""The one base of the errors a user can act on. The CLI prints such an error as one line and exits 2.

Each subclass also keeps the built-in class it has always been (``ValueError`` for bad input, ``RuntimeError``
for a run that cannot go on), so ``except ValueError`` around ms_gpt's functions keeps working.
"""

from __future__ import annotations


class MsGptError(Exception):
    """Bad input, a missing or corrupt file, a busy or foreign run folder, an environment that cannot run the
    job: a one-line message that names the value and what would be accepted."""


class DataError(MsGptError, ValueError):
    """Data that cannot be used; the message names the file (and line) or the source."""
