"""The XLA flags, compilation cache and allocator settings that avs_jax sets by default."""

import json
import os
import platform
import subprocess
import sys

import pytest

from avs_jax.runtime_defaults import (
    DEFAULT_CACHE_MAX_BYTES,
    compilation_cache_dir,
    compilation_cache_max_bytes,
    default_flags,
    installed_jaxlib_version,
    tune_malloc,
    with_defaults,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_added_after_the_users_flags():
    assert with_defaults("", {"a": "1"}) == "--a=1"
    assert with_defaults("--b=2", {"a": "1"}) == "--b=2 --a=1"
    assert with_defaults("  --b=2 ", {"a": "1", "c": "x"}) == "--b=2 --a=1 --c=x"


def test_a_flag_the_user_set_is_left_as_it_is():
    assert with_defaults("--a=0", {"a": "1"}) == "--a=0"
    assert with_defaults("--b=2 --a", {"a": "1"}) == "--b=2 --a"  # a bare boolean flag counts
    assert with_defaults("--ab=0", {"a": "1"}) == "--ab=0 --a=1"  # names match whole


YNN = "--xla_cpu_experimental_ynn_fusion_type"

# A child that imports avs_jax, then compiles a dot and a reduction for the CPU and counts the
# ops XLA handed to YNNPACK (jaxlib 0.10 by itself gives it both at 256x64; it keeps smaller
# reductions, e.g. of 64x32, for its own emitters, which would make the count say nothing).
_CHILD = """
import json, os, avs_jax, jax, jax.numpy as jnp
a = jnp.ones((256, 64))
text = jax.jit(lambda a: (a @ a.T, jnp.sum(jnp.exp(a), axis=1))).lower(a).compile().as_text()
print(json.dumps({'flags': os.environ['XLA_FLAGS'], 'devices': jax.device_count(),
                  'sum': float(jnp.arange(4.0).sum()), 'ynn_ops': text.count('"__ynn_fusion"')}))
"""


def _in_child(xla_flags: str) -> dict:
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_the_ynnpack_flag_only_for_the_jaxlib_series_it_was_measured_with():
    triton = {"xla_gpu_enable_triton_gemm": "false"}
    ynn = {"xla_cpu_experimental_ynn_fusion_type": "individual_dot"}
    assert default_flags("0.10.2") == {**triton, **ynn}
    assert default_flags("0.10.0") == {**triton, **ynn}
    assert default_flags("0.11.2") == triton  # unknown there: XLA would abort on it
    assert default_flags("0.1.0") == triton
    assert default_flags(None) == triton


def test_import_sets_the_defaults_and_keeps_the_users_flags_in_force():
    # requirements.txt pins jaxlib 0.10, whose defaults include the YNNPACK flag.
    assert installed_jaxlib_version().startswith("0.10.")
    r = _in_child("--xla_force_host_platform_device_count=3")
    assert r["flags"] == (
        "--xla_force_host_platform_device_count=3 "
        f"--xla_gpu_enable_triton_gemm=false {YNN}=individual_dot"
    )
    assert r["devices"] == 3  # the user's flag still reached XLA, and XLA accepted ours
    assert r["sum"] == 6.0
    assert r["ynn_ops"] == 1  # ours reached XLA too: the dot only, the reduction is XLA's
    r = _in_child(f"--xla_gpu_enable_triton_gemm=true {YNN}=individual_dot,reduce")
    assert r["flags"] == f"--xla_gpu_enable_triton_gemm=true {YNN}=individual_dot,reduce"
    assert r["ynn_ops"] == 2  # the user's choice wins


def test_compilation_cache_only_on_accelerators_and_never_over_the_users():
    home_cache = os.path.expanduser(os.path.join("~", ".cache", "avs_jax", "xla"))
    assert compilation_cache_dir("cpu", environ={}) is None
    assert compilation_cache_dir("gpu", environ={}) == home_cache
    assert compilation_cache_dir("tpu", environ={}) == home_cache
    assert compilation_cache_dir("gpu", configured="/set/in/code", environ={}) is None
    assert compilation_cache_dir("gpu", enabled=False, environ={}) is None
    assert compilation_cache_dir("gpu", environ={"JAX_COMPILATION_CACHE_DIR": "/elsewhere"}) is None
    assert compilation_cache_dir("gpu", environ={"JAX_COMPILATION_CACHE_DIR": ""}) is None


def test_enable_compilation_cache_points_jax_at_the_folder(tmp_path, monkeypatch):
    import jax

    from avs_jax import runtime_defaults

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    try:
        monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
        assert runtime_defaults.enable_compilation_cache() is None
        assert jax.config.jax_compilation_cache_dir is None
        monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
        path = runtime_defaults.enable_compilation_cache()
        assert path == str(tmp_path / ".cache" / "avs_jax" / "xla") and os.path.isdir(path)
        assert jax.config.jax_compilation_cache_dir == path
        assert jax.config.jax_compilation_cache_max_size == DEFAULT_CACHE_MAX_BYTES
        assert runtime_defaults.enable_compilation_cache() is None  # now configured: left as it is
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
        jax.config.update("jax_compilation_cache_max_size", -1)


def test_cache_bound_only_where_the_user_chose_none_and_jax_can_evict():
    assert compilation_cache_max_bytes(-1, environ={}) == DEFAULT_CACHE_MAX_BYTES
    assert compilation_cache_max_bytes(2**20, environ={}) is None
    assert compilation_cache_max_bytes(-1, environ={"JAX_COMPILATION_CACHE_MAX_SIZE": "-1"}) is None
    # Without filelock JAX's eviction raises, which would switch the cache off: leave it unbounded.
    assert compilation_cache_max_bytes(-1, environ={}, has_filelock=False) is None


CACHE_EVICTION_CHILD = """
import os, sys, jax, jax.numpy as jnp
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
jax.config.update("jax_compilation_cache_max_size", int(sys.argv[2]))
for n in range(1, 9):  # eight programs of different shapes: eight cache entries written
    jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((n, 3))).block_until_ready()
"""


def test_a_bounded_cache_evicts_with_the_installed_packages(tmp_path):
    """The bound is honoured by JAX's cache with what requirements.txt installs (filelock)."""

    def run(folder, bound):
        subprocess.run(
            [sys.executable, "-c", CACHE_EVICTION_CHILD, str(folder), str(bound)],
            check=True,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )
        files = [p for p in folder.rglob("*") if p.is_file() and "lock" not in p.name]
        return sum(p.stat().st_size for p in files)

    unbounded = run(tmp_path / "unbounded", -1)
    bound = unbounded // 3
    assert 0 < run(tmp_path / "bounded", bound) <= bound < unbounded


# A child that imports avs_jax, then allocates, fills and frees a 256 MB block five times and
# prints the minor page faults of each round. glibc's default serves a block that size (above its
# largest self-tuned mmap threshold, 32 MB) with a fresh mmap each time, so its pages fault anew
# in every round (65536 of 4 KiB, or far fewer where transparent huge pages back it). Kept in the
# heap, the block is reused and the rounds after the first fault on next to nothing.
_MALLOC_CHILD = """
import ctypes, json, resource, avs_jax
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(256 << 20)
    ctypes.memset(p, 1, 256 << 20)
    libc.free(ctypes.c_void_p(p))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


def _malloc_faults(env_extra: dict[str, str]) -> list[int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("GLIBC_TUNABLES", None)
    env.pop("AVS_JAX_TUNE_MALLOC", None)
    env.update(env_extra)
    out = subprocess.run(
        [sys.executable, "-c", _MALLOC_CHILD], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the allocator setting is glibc's",
)
def test_import_keeps_freed_blocks_for_reuse_unless_the_user_set_malloc_options():
    # Turned off, or a malloc option of the user's own: glibc maps the block in every round.
    for env in ({"AVS_JAX_TUNE_MALLOC": "0"}, {"MALLOC_MMAP_MAX_": "65536"}):
        own = _malloc_faults(env)
        assert min(own) >= 64, (env, own)  # even with 2 MiB pages: 128 per round
        assert min(own[1:]) >= own[0] // 2, (env, own)  # each round as costly as the first
    # avs_jax's setting: the four later rounds together fault less than a tenth of one round
    # of glibc's own (a few faults of Python's own objects are allowed for).
    tuned = _malloc_faults({})
    assert sum(tuned[1:]) < min(own) // 10, (tuned, own)


def test_tune_malloc_respects_the_users_environment():
    assert not tune_malloc({"AVS_JAX_TUNE_MALLOC": "0"})
    assert not tune_malloc({"MALLOC_TRIM_THRESHOLD_": "0"})
    assert not tune_malloc({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"})
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert tune_malloc({"GLIBC_TUNABLES": "glibc.rtld.nns=2"})  # not a malloc tunable
