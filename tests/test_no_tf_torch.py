"""The run-time code never imports TensorFlow or PyTorch (fresh interpreter, so it is clean)."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_package_imports_leave_tensorflow_and_torch_out():
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import avs_jax, tfds_batvision
        for pkg in (avs_jax, tfds_batvision):
            for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                if m.name.endswith("__main__"):
                    continue
                importlib.import_module(m.name)
        from avs_jax import metrics, scaling
        import jax.numpy as jnp
        metrics.evaluate_arrays(jnp.ones((1, 2, 2)), jnp.ones((1, 2, 2)) * 2, 1e-3, 10.0)
        leaked = [m for m in ("tensorflow", "torch") if m in sys.modules]
        print("LEAKED", leaked)
        assert not leaked, leaked
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LEAKED []" in out.stdout
