"""XLA_FLAGS for test subprocesses that force several CPU devices.

The caller's own XLA_FLAGS are kept, so the whole suite can run as on another CPU, e.g.
`XLA_FLAGS=--xla_cpu_max_isa=AVX2` for the code XLA makes for a machine without AVX-512.
"""

import os


def xla_flags(devices: int) -> str:
    """The current XLA_FLAGS with `devices` host-platform (CPU) devices."""
    own = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    return " ".join(own + [f"--xla_force_host_platform_device_count={devices}"])
