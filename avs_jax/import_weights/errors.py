"""The error of weight import, on its own so that every module of the package can raise it."""

from avs_jax.errors import InputError


class WeightImportError(InputError, ValueError):
    """A state dict does not fit the model: names the missing, unexpected and misshaped keys."""
