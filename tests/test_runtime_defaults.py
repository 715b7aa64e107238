"""The XLA flags and compilation cache that avs_jax sets by default."""

import json
import os
import subprocess
import sys

from avs_jax.runtime_defaults import compilation_cache_dir, with_defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_added_after_the_users_flags():
    assert with_defaults("", {"a": "1"}) == "--a=1"
    assert with_defaults("--b=2", {"a": "1"}) == "--b=2 --a=1"
    assert with_defaults("  --b=2 ", {"a": "1", "c": "x"}) == "--b=2 --a=1 --c=x"


def test_a_flag_the_user_set_is_left_as_it_is():
    assert with_defaults("--a=0", {"a": "1"}) == "--a=0"
    assert with_defaults("--b=2 --a", {"a": "1"}) == "--b=2 --a"  # a bare boolean flag counts
    assert with_defaults("--ab=0", {"a": "1"}) == "--ab=0 --a=1"  # names match whole


def _in_child(xla_flags: str) -> dict:
    code = ("import json, os, avs_jax, jax; print(json.dumps({'flags': os.environ['XLA_FLAGS'], "
            "'devices': jax.device_count(), 'sum': float(jax.numpy.arange(4.0).sum())}))")
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_sets_the_default_and_keeps_the_users_flags_in_force():
    r = _in_child("--xla_force_host_platform_device_count=3")
    assert r["flags"] == ("--xla_force_host_platform_device_count=3 "
                          "--xla_gpu_enable_triton_gemm=false")
    assert r["devices"] == 3  # the user's flag still reached XLA, and XLA accepted ours
    assert r["sum"] == 6.0
    r = _in_child("--xla_gpu_enable_triton_gemm=true")
    assert r["flags"] == "--xla_gpu_enable_triton_gemm=true"


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
        assert runtime_defaults.enable_compilation_cache() is None  # now configured: left as it is
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
