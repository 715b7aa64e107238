"""XLA flags that avs_jax sets by default, before JAX creates its backends.

`import avs_jax` appends each default to `XLA_FLAGS` unless that flag is already there, so a
user's own setting wins (`XLA_FLAGS=--xla_gpu_enable_triton_gemm=true` turns the default off).
The flags only take effect if no JAX computation ran before `avs_jax` was imported.
"""

from __future__ import annotations

import os

# XLA:GPU's Triton GEMM fusion (jaxlib 0.11.2 on an H100) aborts while compiling the tiny
# AVS-Net's inference forward pass ("triton_tiling_propagation.cc: Check failed:
# subdim_size_accumulator == dim_size (128 vs. 32)"), so evaluation crashed on GPUs. With it off
# the dots go to cuBLAS, the crash is gone and the paper-size bf16 AVS-Net training step is
# faster too: 171.5 against 182.3 ms, compiled in 105 against 139 s (bench/RESULTS.md).
# The flag is a GPU option; XLA:CPU and TPU parse it and ignore it.
DEFAULT_FLAGS: dict[str, str] = {"xla_gpu_enable_triton_gemm": "false"}


def with_defaults(flags: str, defaults: dict[str, str] = DEFAULT_FLAGS) -> str:
    """`flags` (an `XLA_FLAGS` value) followed by each default whose flag it does not set."""
    present = {tok.lstrip("-").split("=", 1)[0] for tok in flags.split()}
    extra = [f"--{name}={value}" for name, value in defaults.items() if name not in present]
    return " ".join([flags.strip(), *extra]).strip()


def apply_defaults() -> None:
    """Writes `with_defaults` of the current `XLA_FLAGS` back to the environment."""
    os.environ["XLA_FLAGS"] = with_defaults(os.environ.get("XLA_FLAGS", ""))
