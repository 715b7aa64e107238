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
import socket
import tempfile

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # a folder the user chose is left alone
    _cache = tempfile.mkdtemp(prefix="avs_jax_tests_xla_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

# The two files that take minutes on 2 cores (main runs, trainings, 4-device subprocesses), the
# longer first. The README's test command runs pytest-xdist with `--dist loadfile`, which hands
# each worker one file at a time; by default it orders the files by their number of tests, which
# started these two (6 and 7 tests then) last, so one worker ran stage 1's file alone for the
# last ~3 minutes while the other sat idle. (This overrides an explicit --loadscope-reorder.)
LONG_FILES = ("test_stage1_integration.py", "test_relative_task.py")


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the collection's order
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """Long files first, the rest in pytest's order (the sort is stable)."""
    del config
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))


@pytest.fixture
def local_coordinator() -> dict[str, str]:
    """Environment variables that put a jax.distributed coordinator on a free local port (bound
    to 127.0.0.1 only; JAX's default binds every interface over IPv6)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}",
    }
