"""Test set-up: CPU only. Multi-device tests force CPU devices in a subprocess.

The session shares one persistent compilation cache, in a temporary folder that the test
processes (pytest-xdist's workers inherit it from the process that starts them) and the
`python -m avs_jax.main` runs they start all use: stage 1's integration tests run main several
times on the same config, and on 2 CPU cores each run spends ~45 of its ~70 s compiling programs
that an earlier run compiled already. A cached executable computes what a fresh compile of the
same program does (measured: a repeated run's losses were bitwise equal; the interrupted-run
test compares its losses to 1e-6). avs_jax itself sets no cache on the CPU (see
avs_jax/runtime_defaults.py): only the tests do.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # a folder the user chose is left alone
    _cache = tempfile.mkdtemp(prefix="avs_jax_tests_xla_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
