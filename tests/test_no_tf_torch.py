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
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LEAKED []" in out.stdout


def test_configs_and_train_step_need_no_data_stack():
    """A model and its jitted train step build (and lower) from a config with grain, TFDS and
    the audio stack unimportable: what the GPU benchmark and a user's own data loader rely on."""
    code = textwrap.dedent("""
        import sys
        BLOCKED = ("grain", "tensorflow_datasets", "array_record", "librosa", "soundfile")
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked: {name}")
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, "bench")
        from train_step import count_flops  # configs, task, optimiser, state, jitted step
        for name in ("avsnet", "monodepth2"):
            print(name, count_flops(name, "tiny", 2, "float32")["gflop_per_step"])
        print("LOADED", sorted(m for m in BLOCKED if m in sys.modules))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOADED []" in out.stdout
    gflops = {
        line.split()[0]: float(line.split()[1])
        for line in out.stdout.splitlines()
        if line.split()[:1] in (["avsnet"], ["monodepth2"])
    }
    # The lowered steps are whole: forward, backward and update of the tiny nets (XLA's count
    # at batch 4 is 1.61 and 0.56 GFLOP; at batch 2 about half of that).
    assert 0.5 < gflops["avsnet"] < 1.2 and 0.2 < gflops["monodepth2"] < 0.5, gflops
