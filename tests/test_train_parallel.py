"""Tests of the train core across processes: 1 vs 4 forced CPU devices, and SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))
import train_toy  # noqa: E402
from cpu_devices import xla_flags  # noqa: E402

from avs_jax.train.loop import train_and_evaluate  # noqa: E402

# Runs the toy loop in a fresh process as `python -m avs_jax.main` runs a stage (its exits for
# errors and signals); prints a JSON summary, saves the final state as npz.
RUN_LOOP = """
import functools, json, sys
import jax, numpy as np
sys.path.insert(0, {tests!r})
import train_toy
from avs_jax.main import exit_on_error
from avs_jax.train.interrupts import raise_if_interrupted
from avs_jax.train.loop import train_and_evaluate
config = train_toy.config(**json.loads({train!r}))
config.distributed.multi_host = {multi_host!r}
def stage():
    out = train_and_evaluate(config, {workdir!r}, train_toy.ToyTask(),
                             functools.partial(train_toy.train_iter, **json.loads({data!r})),
                             train_toy.eval_iter)
    if jax.process_index() == 0:
        np.savez({workdir!r} + "/state.npz",
                 *[np.asarray(x) for x in jax.tree.leaves(out["state"])])
    print(json.dumps(dict(devices=jax.device_count(), processes=jax.process_count(),
                          step=out["step"], stopped=out["stopped"],
                          losses=[r["loss"] for r in out["train"]], eval=out["eval"])), flush=True)
    raise_if_interrupted(out, {workdir!r})
exit_on_error(stage)
"""


def loop_process(workdir, devices, multi_host=False, env=None, log=None, data=None, **train):
    """The toy loop in a new process; its output is piped, or written to `log`.out/.err.
    `data`: keyword arguments of train_toy.train_iter."""
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(ROOT),
        XLA_FLAGS=xla_flags(devices),
        **(env or {}),
    )
    code = RUN_LOOP.format(
        tests=str(TESTS),
        workdir=str(workdir),
        train=json.dumps(train),
        multi_host=multi_host,
        data=json.dumps(data or {}),
    )
    if log is None:
        return subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=str(ROOT), stdout=out, stderr=err, text=True
        )


def wait_together(procs, logs, timeout):
    """Waits for processes that depend on each other: when one fails, the others are killed (they
    would wait for it at the coordinator or in a collective), and so are all at the timeout.
    Returns each process's last stdout line; a failure shows every process's stderr."""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    if any(p.returncode != 0 for p in procs):
        raise AssertionError(
            "\n".join(
                f"process {i} exit {p.returncode}: ...{Path(f'{log}.err').read_text()[-2000:]}"
                for i, (p, log) in enumerate(zip(procs, logs))
            )
        )
    return [Path(f"{log}.out").read_text().strip().splitlines()[-1] for log in logs]


TRAIN = dict(num_steps=4, steps_per_epoch=4)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """The toy's TRAIN run in this process, on one device (with "workdir" added)."""
    workdir = tmp_path_factory.mktemp("one")
    out = train_and_evaluate(
        train_toy.config(**TRAIN),
        str(workdir),
        train_toy.ToyTask(),
        train_toy.train_iter,
        train_toy.eval_iter,
    )
    return dict(out, workdir=workdir)


def _checkpoint_steps(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _assert_same_run(summary, workdir, one):
    """The subprocess's summary and saved state are those of the one-device run."""
    assert summary["step"] == 4
    np.testing.assert_allclose(summary["losses"], [r["loss"] for r in one["train"]], rtol=1e-5)
    # Validation (eval_step over the same mesh, running BN statistics) agrees as well.
    assert [r["step"] for r in summary["eval"]] == [4]
    for key in ("abs_rel", "mse"):
        np.testing.assert_allclose(summary["eval"][0][key], one["eval"][0][key], rtol=1e-5)
    saved = np.load(workdir / "state.npz")
    leaves = jax.tree.leaves(one["state"])
    assert len(saved.files) == len(leaves)
    for i, leaf in enumerate(leaves):
        np.testing.assert_allclose(saved[f"arr_{i}"], np.asarray(leaf), rtol=1e-5, atol=1e-6)


def test_one_and_four_devices_give_the_same_losses_and_parameters(tmp_path, one_device):
    # Batch 8 over 4 devices: 2 examples each; BatchNorm statistics must still be over all 8.
    proc = loop_process(tmp_path / "four", 4, **TRAIN)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    four = json.loads(stdout.strip().splitlines()[-1])
    assert four["devices"] == 4
    _assert_same_run(four, tmp_path / "four", one_device)


def test_two_hosts_configured_by_environment_variables_train_as_one(
    tmp_path, one_device, local_coordinator
):
    """README "Several hosts": two processes of 2 CPU devices each, `distributed.multi_host` and
    only the coordinator, JAX_NUM_PROCESSES and JAX_PROCESS_ID set, train on their halves of each
    global batch of 8 as one process does on all of it (the gradient and the BatchNorm
    statistics are reduced across processes) and write one run: one set of checkpoints, one
    metrics file."""
    logs = [tmp_path / f"process{i}" for i in range(2)]
    procs = [
        loop_process(
            tmp_path / "run",
            2,
            multi_host=True,
            log=log,
            **TRAIN,
            env=dict(local_coordinator, JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)),
        )
        for i, log in enumerate(logs)
    ]
    summaries = [json.loads(line) for line in wait_together(procs, logs, timeout=300)]
    for s in summaries:
        assert s["devices"] == 4 and s["processes"] == 2
        np.testing.assert_allclose(s["losses"], summaries[0]["losses"], rtol=0)
    _assert_same_run(summaries[0], tmp_path / "run", one_device)  # process 0 saved state.npz
    assert _checkpoint_steps(tmp_path / "run") == _checkpoint_steps(one_device["workdir"]) != []
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in logged if r["split"] == "train"] == [1, 2, 3, 4]


def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path):
    # Long enough never to finish; no validation, so the only checkpoint is the one at SIGTERM.
    proc = loop_process(tmp_path, 1, num_steps=100000, steps_per_epoch=100000)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    # 128 + 15, as for a process the signal ended: a scheduler must not take it as finished.
    assert proc.returncode == 143, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["stopped"] == "signal" and summary["step"] >= 3
    assert stderr.strip().splitlines()[-1] == (
        f"avs_jax: stopped by SIGTERM at step {summary['step']}, with a checkpoint in "
        f"{tmp_path}: run the same command again to continue"
    )
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [summary["step"]]
    # The checkpoint holds that step's state: restoring resumes at the step after it.
    logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert logged[-1] == summary["step"]
    meta = json.loads((tmp_path / "checkpoints" / str(steps[0]) / "meta" / "metadata").read_text())
    assert meta["step"] == summary["step"]


def test_kill_9_then_resume_is_exact_and_logs_each_step_once(tmp_path):
    """kill -9 between two checkpoints (validation saves steps 4, 8, 12), then the same command
    again: it takes over the dead run's workdir lock, resumes from step 4, and ends as the
    uninterrupted run, with each step once in metrics.jsonl."""
    full = train_and_evaluate(
        train_toy.config(),
        str(tmp_path / "full"),
        train_toy.ToyTask(),
        train_toy.train_iter,
        train_toy.eval_iter,
    )
    workdir = tmp_path / "killed"
    metrics = workdir / "metrics.jsonl"
    # 0.6 s a batch: a window of over a second between seeing step 5 logged with step 4's
    # checkpoint committed (saved asynchronously; batches read ahead during it) and step 8's.
    proc = loop_process(workdir, 1, data={"delay_s": 0.6})
    deadline = time.time() + 240
    logged = []
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists():
            logged = [
                json.loads(line)["step"]
                for line in metrics.read_text().splitlines()
                if line.endswith("}")
            ]
            if logged and max(logged) >= 5 and (workdir / "checkpoints" / "4").exists():
                break
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    assert 5 <= max(logged) < 8, logged
    assert not (workdir / "checkpoints" / "8").exists()
    resumed = loop_process(workdir, 1)
    stdout, stderr = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, stderr[-3000:]
    assert "taking over the lock of pid" in stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["step"] == 12 and len(summary["losses"]) == 8  # steps 5-12 ran again
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 13))
    assert [r["step"] for r in records if r["split"] == "eval"] == [4, 8, 12]
    np.testing.assert_allclose(
        [r["loss"] for r in train], [r["loss"] for r in full["train"]], rtol=1e-6, atol=0
    )
    saved = np.load(workdir / "state.npz")
    for i, leaf in enumerate(jax.tree.leaves(full["state"])):
        np.testing.assert_allclose(saved[f"arr_{i}"], np.asarray(leaf), rtol=1e-6, atol=1e-7)


PUT_BATCH = """
import jax, numpy as np
from avs_jax.train.step import put_batch
mesh = jax.make_mesh((4,), ("data",))
b = {"x": np.arange(8 * 3, dtype=np.float32).reshape(8, 3), "sample_id": np.array(["a"] * 8)}
g = put_batch(b, mesh)
assert set(g) == {"x"} and g["x"].shape == (8, 3)
rows = sorted(int(s.data[0, 0]) // 3 for s in g["x"].addressable_shards)
assert rows == [0, 2, 4, 6], rows
np.testing.assert_array_equal(np.asarray(g["x"]), b["x"])
try:
    put_batch({"x": b["x"][:6]}, mesh)
except ValueError as e:
    assert "'x'" in str(e) and "4 local devices" in str(e), e
else:
    raise AssertionError("a batch of 6 rows on 4 devices was accepted")
print("OK")
"""


def test_put_batch_splits_rows_over_four_devices_and_drops_ids():
    """Rows 0-1 go to device 0, 2-3 to device 1, ...; sample ids stay on the host; a batch that
    does not divide over the devices is refused with the entry named."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), XLA_FLAGS=xla_flags(4))
    out = subprocess.run([sys.executable, "-c", PUT_BATCH], env=env, capture_output=True, text=True)
    assert "OK" in out.stdout, out.stderr[-3000:]


def test_distributed_fields_come_from_the_config_then_the_environment(monkeypatch):
    from avs_jax.errors import BadInputError
    from avs_jax.train.defaults import default_train_config
    from avs_jax.train.distributed import maybe_initialize_distributed

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    cfg = default_train_config("avsnet").distributed
    monkeypatch.setenv("JAX_NUM_PROCESSES", "3")
    monkeypatch.setenv("JAX_PROCESS_ID", "2")
    maybe_initialize_distributed(cfg)  # multi_host off: nothing is initialised
    assert calls == []
    cfg.multi_host = True
    maybe_initialize_distributed(cfg)  # JAX reads JAX_COORDINATOR_ADDRESS itself
    assert calls[-1] == {"num_processes": 3, "process_id": 2}
    cfg.coordinator_address, cfg.num_processes, cfg.process_id = "host0:1234", 5, 0
    maybe_initialize_distributed(cfg)  # the config wins over the environment
    assert calls[-1] == {"coordinator_address": "host0:1234", "num_processes": 5, "process_id": 0}
    cfg.num_processes, cfg.process_id = -1, -1
    monkeypatch.setenv("JAX_PROCESS_ID", "two")
    with pytest.raises(BadInputError, match="JAX_PROCESS_ID='two'"):
        maybe_initialize_distributed(cfg)
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    maybe_initialize_distributed(cfg)  # a second call (the loop's, after the stage's) does nothing
    assert len(calls) == 2
