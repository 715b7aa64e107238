"""Test set-up: CPU only. Multi-device tests force CPU devices in a subprocess."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
