"""XLA flags and the compilation cache that avs_jax sets by default.

`import avs_jax` appends each default flag to `XLA_FLAGS` unless that flag is already there, so
a user's own setting wins (`XLA_FLAGS=--xla_gpu_enable_triton_gemm=true` turns the default off).
The flags only take effect if no JAX computation ran before `avs_jax` was imported.

Training on a GPU or TPU also keeps compiled steps in JAX's persistent cache
(`enable_compilation_cache`), so a resumed or restarted run skips the minutes of compilation.
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


# Where training keeps compiled executables on accelerators unless JAX_COMPILATION_CACHE_DIR is set.
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "avs_jax", "xla")


def compilation_cache_dir(backend: str, environ: dict[str, str] | None = None) -> str | None:
    """The persistent cache folder training sets for `backend` ("cpu", "gpu", "tpu"), or None.

    None on CPU (its compiles take seconds) and when the user set JAX_COMPILATION_CACHE_DIR
    (JAX then uses theirs).
    """
    environ = os.environ if environ is None else environ
    if backend == "cpu" or environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    return os.path.expanduser(DEFAULT_CACHE_DIR)


def enable_compilation_cache() -> str | None:
    """Points JAX's persistent compilation cache at `compilation_cache_dir`; returns the folder."""
    import jax  # noqa: PLC0415  (this module is imported by avs_jax/__init__, before any backend)

    path = compilation_cache_dir(jax.default_backend())
    if path:
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
    return path
