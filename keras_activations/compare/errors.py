"""The errors `compare` raises for bad input; each message is one line saying what to do.

The command line prints any of these as one line on stderr and exits with status 2.
"""


class CompareError(ValueError):
    """Bad input to `compare`: a model, data, option or output directory it cannot use."""


class ModelError(CompareError):
    """A model or builder `compare` cannot use (the message says why and what would do)."""
