"""XLA flags, the compilation cache and the host allocator settings that avs_jax sets by default.

`import avs_jax` appends each default flag (`default_flags`) to `XLA_FLAGS` unless that flag is
already there, so a user's own setting wins (`XLA_FLAGS=--xla_gpu_enable_triton_gemm=true` turns
the default off).
The flags only take effect if no JAX computation ran before `avs_jax` was imported.

On Linux with glibc, `import avs_jax` also keeps large freed blocks in the process for reuse
(`tune_malloc`; `AVS_JAX_TUNE_MALLOC=0` or glibc malloc options of the user's own turn it off).

Training on a GPU or TPU also keeps compiled steps in JAX's persistent cache, bounded in size
(`enable_compilation_cache`), so a resumed or restarted run skips the minutes of compilation.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

# XLA:GPU's Triton GEMM fusion (jaxlib 0.11.2 on an H100) aborts while compiling the tiny
# AVS-Net's inference forward pass ("triton_tiling_propagation.cc: Check failed:
# subdim_size_accumulator == dim_size (128 vs. 32)"), so evaluation crashed on GPUs. With it off
# the dots go to cuBLAS, the crash is gone and the paper-size bf16 AVS-Net training step is
# faster too: 171.5 against 182.3 ms, compiled in 105 against 139 s (bench/RESULTS.md). The
# Monodepth2 step is the exception, 15-16% slower without the fusion (fp32 37.4 vs 31.7 ms), but
# the flag is process-wide and the quickstart compiles AVS-Net forwards in the same process.
# The flag is a GPU option: XLA:CPU (jaxlib 0.10) accepts and ignores it; TPU is unchecked. XLA
# aborts on a flag it does not know, so a jaxlib that drops it needs this default removed.
DEFAULT_FLAGS: dict[str, str] = {"xla_gpu_enable_triton_gemm": "false"}

# XLA:CPU in jaxlib 0.10 hands dots, convolutions and reductions to YNNPACK. For our networks its
# convolutions are the slower path: with only the dots left to it ("individual_dot"; XLA's own
# emitters take the rest) the tiny AVS-Net train step went from 191 to 111 ms and the tiny
# Monodepth2 step from 168 to 130 ms on a 2-core AMD EPYC without AVX-512 (bench/cpu_flags.py,
# bench/RESULTS.md); sums change in the last bits (other accumulation order). The flag is
# experimental, and XLA aborts on a flag it does not know, so it is set only for the jaxlib
# series it was measured with; other versions keep XLA's choice.
VERSIONED_FLAGS: dict[str, dict[str, str]] = {
    "0.10.": {"xla_cpu_experimental_ynn_fusion_type": "individual_dot"}
}


def default_flags(jaxlib_version: str | None) -> dict[str, str]:
    """The flags avs_jax adds for the installed jaxlib (`jaxlib_version`, None if unknown)."""
    flags = dict(DEFAULT_FLAGS)
    for prefix, extra in VERSIONED_FLAGS.items():
        if jaxlib_version and jaxlib_version.startswith(prefix):
            flags.update(extra)
    return flags


def installed_jaxlib_version() -> str | None:
    """jaxlib's version from its package metadata (imports nothing), None if not installed."""
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return None


def with_defaults(flags: str, defaults: dict[str, str] = DEFAULT_FLAGS) -> str:
    """`flags` (an `XLA_FLAGS` value) followed by each default whose flag it does not set."""
    present = {tok.lstrip("-").split("=", 1)[0] for tok in flags.split()}
    extra = [f"--{name}={value}" for name, value in defaults.items() if name not in present]
    return " ".join([flags.strip(), *extra]).strip()


def apply_xla_flags() -> None:
    """Writes `with_defaults` of the current `XLA_FLAGS` (this jaxlib's defaults) back to the
    environment."""
    os.environ["XLA_FLAGS"] = with_defaults(
        os.environ.get("XLA_FLAGS", ""), default_flags(installed_jaxlib_version())
    )


# glibc serves each block above its self-tuned threshold (at most 32 MB) with a fresh mmap and
# unmaps it when freed. XLA:CPU allocates its temporaries for each run of a compiled program, so
# every training step touched tens of MB of new pages: the tiny AVS-Net step took ~12,000 page
# faults and ~22 ms of kernel time in its 77 ms (2-core Xeon). With the thresholds below freed
# blocks stay in the heap and are reused: 50-52 -> 57 samples/s for that step
# (docs/performance.md, "XLA:CPU"). The cost: memory freed after a peak stays with the process.
MALLOC_MMAP_THRESHOLD = 2**30  # bytes; blocks up to 1 GiB come from the heap
MALLOC_TRIM_THRESHOLD = 2**31 - 1  # bytes of free heap top kept (mallopt takes a C int)
# `AVS_JAX_TUNE_MALLOC=0` keeps glibc's own settings; so does any malloc option the user sets in
# the environment (these variables, or a malloc tunable in GLIBC_TUNABLES).
TUNE_MALLOC_ENV = "AVS_JAX_TUNE_MALLOC"
MALLOC_ENV = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)


def tune_malloc(environ: dict[str, str] | None = None) -> bool:
    """Raises glibc's mmap and trim thresholds (`MALLOC_MMAP_THRESHOLD`, `MALLOC_TRIM_THRESHOLD`)
    with mallopt; True if it did. Not on other C libraries or systems, not with
    `AVS_JAX_TUNE_MALLOC=0`, and not when the environment sets glibc's malloc options
    (`MALLOC_ENV`, GLIBC_TUNABLES with "glibc.malloc."), whose choice then stands."""
    environ = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    if environ.get(TUNE_MALLOC_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if any(k in environ for k in MALLOC_ENV) or "glibc.malloc." in environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # mallopt returns 1 on success. Setting either threshold also ends glibc's own adjustment of
    # the mmap threshold (which stops at 32 MB).
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)
    )


# Where training keeps compiled executables on accelerators unless a cache is set already.
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "avs_jax", "xla")
# JAX lets its cache grow without bound (jax_compilation_cache_max_size = -1): every new config,
# shape or jaxlib adds entries. Where avs_jax sets the folder it also bounds it, least recently
# used entries evicted first; JAX's eviction needs the `filelock` package (requirements.txt).
DEFAULT_CACHE_MAX_BYTES = 4 * 2**30


def compilation_cache_dir(
    backend: str,
    configured: str | None = None,
    enabled: bool = True,
    environ: dict[str, str] | None = None,
) -> str | None:
    """The persistent cache folder training sets for `backend` ("cpu", "gpu", "tpu"), or None.

    None on CPU (its compiles take seconds), when a cache folder is configured already
    (`configured`: jax.config's jax_compilation_cache_dir, set in code or by the environment),
    when JAX_COMPILATION_CACHE_DIR is in the environment (empty: the user wants none) and when
    the cache is switched off (`enabled`: jax_enable_compilation_cache).
    """
    environ = os.environ if environ is None else environ
    if backend == "cpu" or configured or not enabled or "JAX_COMPILATION_CACHE_DIR" in environ:
        return None
    return os.path.expanduser(DEFAULT_CACHE_DIR)


def compilation_cache_max_bytes(
    configured: int, environ: dict[str, str] | None = None, has_filelock: bool = True
) -> int | None:
    """The size bound to set with the folder of `compilation_cache_dir`, or None to leave JAX's.

    None when the user chose a bound (`configured`, jax_compilation_cache_max_size, is not JAX's
    default -1, or JAX_COMPILATION_CACHE_MAX_SIZE is in the environment) and when `filelock`,
    which JAX's eviction needs, is missing (a bound would then disable the cache).
    """
    environ = os.environ if environ is None else environ
    if configured != -1 or "JAX_COMPILATION_CACHE_MAX_SIZE" in environ or not has_filelock:
        return None
    return DEFAULT_CACHE_MAX_BYTES


def enable_compilation_cache() -> str | None:
    """Points JAX's persistent compilation cache at `compilation_cache_dir`, bounded by
    `compilation_cache_max_bytes`; returns the folder it set, None where it set none."""
    import importlib.util  # noqa: PLC0415

    import jax  # noqa: PLC0415  (this module is imported by avs_jax/__init__, before any backend)

    path = compilation_cache_dir(
        jax.default_backend(),
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_enable_compilation_cache,
    )
    if path:
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
        bound = compilation_cache_max_bytes(
            jax.config.jax_compilation_cache_max_size,
            has_filelock=importlib.util.find_spec("filelock") is not None,
        )
        if bound is not None:
            jax.config.update("jax_compilation_cache_max_size", bound)
    return path
