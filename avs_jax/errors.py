"""The base of the errors a user fixes in their input rather than in the code."""

from __future__ import annotations


class InputError(Exception):
    """A bad file, checkpoint, config or dataset, or a run that diverged; the message names what
    is wrong and where. `python -m avs_jax.main` reports it in one line instead of a traceback
    (`--verbosity=1` logs the traceback too)."""


class BadInputError(InputError, ValueError):
    """A config value, file or dataset that is there but cannot be used as it is."""


class MissingInputError(InputError, FileNotFoundError):
    """A file, folder, checkpoint or dataset that is not where the config says."""
