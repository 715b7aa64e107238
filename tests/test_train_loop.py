"""Tests of avs_jax/train/loop.py on the toy task: learning, exact resume, the non-finite guard,
bf16 compute, pretrained init. Multi-device and SIGTERM: tests/test_train_parallel.py."""

import functools
import gc
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_toy  # noqa: E402

from avs_jax.train import checkpointing, pretrained  # noqa: E402

# Every run of the loop builds and compiles the same small programs again: a persistent
# compilation cache for this test process keeps the file well under a minute on shared cores.
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="jax_cache_core_"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
from avs_jax.train.loop import NonFiniteLossError, _weighted_mean, train_and_evaluate  # noqa: E402
from avs_jax.train.metric_writers import read_metrics  # noqa: E402


def run(workdir, task=None, train_iter=train_toy.train_iter, **train):
    return train_and_evaluate(
        train_toy.config(**train),
        str(workdir),
        task or train_toy.ToyTask(),
        train_iter,
        train_toy.eval_iter,
    )


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted 12-step run (3 epochs of 4), shared by the tests that read it."""
    workdir = tmp_path_factory.mktemp("full")
    return workdir, run(workdir)


def test_a_plain_iterator_trains_checkpoints_and_restarts_its_data(tmp_path, caplog):
    """An iterator without a position to save (a generator) is allowed: the run checkpoints
    without it (it used to fail at the first save) and a resumed run says its data restart."""

    def plain():
        yield from train_toy.train_iter()

    out = run(tmp_path, train_iter=plain, stop_at_step=4)
    assert out["stopped"] == "stop_at_step" and out["step"] == 4
    assert not (tmp_path / "checkpoints" / "4" / "data").exists()
    with caplog.at_level(logging.WARNING):
        out = run(tmp_path, train_iter=plain)
    assert out["step"] == 12 and [r["step"] for r in out["train"]][0] == 5
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "data iterator position not restored" in said


def test_only_process_0_moves_unreadable_checkpoints_aside(tmp_path, monkeypatch):
    """On several hosts every process finds the unreadable checkpoint: only process 0 moves it,
    and all meet at a barrier before they list the checkpoints again."""
    synced, reloaded = [], []

    class Manager:
        def reload(self):
            reloaded.append(os.path.exists(tmp_path / "checkpoints" / "12"))

    ckpt = object.__new__(checkpointing.Checkpointer)
    ckpt.directory, ckpt.manager = str(tmp_path / "checkpoints"), Manager()
    (tmp_path / "checkpoints" / "12").mkdir(parents=True)
    monkeypatch.setattr(checkpointing.jax, "process_count", lambda: 2)
    monkeypatch.setattr(checkpointing.multihost_utils, "sync_global_devices", synced.append)
    monkeypatch.setattr(checkpointing.jax, "process_index", lambda: 1)
    ckpt._set_aside([(12, "truncated")], restored=8)
    assert (tmp_path / "checkpoints" / "12").exists() and len(synced) == 1
    monkeypatch.setattr(checkpointing.jax, "process_index", lambda: 0)
    ckpt._set_aside([(12, "truncated")], restored=8)
    assert not (tmp_path / "checkpoints" / "12").exists()
    assert (tmp_path / "checkpoints_unreadable" / "12").exists()
    assert len(synced) == 2 and reloaded == [True, False]


def test_toy_learns_and_logs(full_run, caplog):
    tmp_path, out = full_run
    losses = [r["loss"] for r in out["train"]]
    assert out["stopped"] == "done" and out["step"] == 12
    assert [r["step"] for r in out["train"]] == list(range(1, 13))
    assert np.mean(losses[-3:]) < losses[0] / 5  # the step applies its gradients
    # The reported learning rate is OneCycle's (max 3e-2 with div_factor 1, down to max/1e4 at
    # the last of 12 steps, where phase 2 ends).
    np.testing.assert_allclose(out["train"][0]["learning_rate"], 3e-2, rtol=1e-6)
    np.testing.assert_allclose(out["train"][-1]["learning_rate"], 3e-6, rtol=1e-4)
    evals = [r["abs_rel"] for r in out["eval"]]
    assert [r["step"] for r in out["eval"]] == [4, 8, 12] and evals[-1] < evals[0]
    # metrics.jsonl holds the same numbers as the returned history; TensorBoard events exist.
    logged = read_metrics(str(tmp_path), "train")
    np.testing.assert_allclose([r["loss"] for r in logged], losses, rtol=1e-7)
    assert [r["step"] for r in read_metrics(str(tmp_path), "eval")] == [4, 8, 12]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    # The state's params stay float32 and the model state carries BatchNorm statistics.
    assert {x.dtype for x in jax.tree.leaves(out["state"].params)} == {jnp.dtype(jnp.float32)}
    assert "batch_stats" in out["state"].model_state
    # The evaluation's view of the run: the best validated checkpoint's variables.
    best = min(out["eval"], key=lambda r: r["abs_rel"])["step"]
    with caplog.at_level(logging.WARNING):
        variables, meta = checkpointing.restore_variables(str(tmp_path / "checkpoints"), "best")
    # Quietly: an evaluation restores several models, and each warning would look like a fault.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert meta["step"] == best and set(variables) == {"params", "batch_stats"}
    # Only the model's part of the state comes back (the optimizer state stays on disk), and
    # exactly: the latest checkpoint holds the final state.
    latest, _ = checkpointing.restore_variables(str(tmp_path / "checkpoints"), None)
    final = {"params": out["state"].params, **out["state"].model_state}
    assert set(latest) == set(final) == {"params", "batch_stats"}
    assert jax.tree.structure(latest) == jax.tree.structure(final)
    for a, b in zip(jax.tree.leaves(latest), jax.tree.leaves(final)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        checkpointing.restore_variables(str(tmp_path / "nowhere"))


def test_resume_reproduces_the_uninterrupted_run(tmp_path, full_run, caplog):
    full = full_run[1]
    first = run(tmp_path / "cut", stop_at_step=6)
    assert first["stopped"] == "stop_at_step" and first["step"] == 6
    shutil.copytree(tmp_path / "cut" / "checkpoints", tmp_path / "mid" / "checkpoints")
    with caplog.at_level(logging.WARNING):
        second = run(tmp_path / "cut")  # a fresh loop restores step 6 and the data position
    # Resuming with another config is allowed and said, naming exactly what changed (here the
    # stop step the first run was given; nothing else, e.g. no tuple-vs-list noise).
    said = [
        r.getMessage() for r in caplog.records if "differs from its checkpoint" in r.getMessage()
    ]
    assert len(said) == 1 and said[0].endswith("train.stop_at_step: 6 -> -1"), said
    assert second["train"][0]["step"] == 7
    resumed = first["train"] + second["train"]
    assert [r["step"] for r in resumed] == list(range(1, 13))
    np.testing.assert_allclose(
        [r["loss"] for r in resumed], [r["loss"] for r in full["train"]], rtol=1e-6, atol=0
    )
    for a, b in zip(jax.tree.leaves(full["state"]), jax.tree.leaves(second["state"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    logged = read_metrics(str(tmp_path / "cut"), "train")
    np.testing.assert_allclose(
        [r["loss"] for r in logged], [r["loss"] for r in full["train"]], rtol=1e-6
    )
    # Resuming from a checkpoint saved mid-run (asynchronously, at the validation of step 4,
    # while training went on) also continues exactly: the data position is the one of step 4.
    shutil.rmtree(tmp_path / "mid" / "checkpoints" / "6")
    mid = run(tmp_path / "mid")
    assert [r["step"] for r in mid["train"]] == list(range(5, 13))
    np.testing.assert_allclose(
        [r["loss"] for r in mid["train"]], [r["loss"] for r in full["train"]][4:], rtol=1e-6, atol=0
    )


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    # Example 40 is in the 6th batch of 8 (no shuffling): step 6; validation saved step 4.
    poisoned = functools.partial(train_toy.train_iter, n=64, poison=40)
    with pytest.raises(
        NonFiniteLossError,
        match=r"at train step 6 .*Last good checkpoint: "
        r"step 4 in",
    ):
        run(tmp_path, train_iter=poisoned)
    ckpt = checkpointing.Checkpointer(str(tmp_path / "checkpoints"), train_toy.config().checkpoint)
    assert ckpt.latest_step() == 4
    restored = ckpt.manager.restore(4, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    leaves = jax.tree.leaves(restored["state"])
    assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
    ckpt.close()


def test_bfloat16_compute_keeps_float32_params(tmp_path):
    cfg_task = train_toy.ToyTask(dtype=jnp.bfloat16)
    out = run(tmp_path, task=cfg_task, compute_dtype="bfloat16", num_epochs=1)
    losses = [r["loss"] for r in out["train"]]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert {x.dtype for x in jax.tree.leaves(out["state"].params)} == {jnp.dtype(jnp.float32)}


def test_init_from_loads_matching_subtree_and_names_missing_file(tmp_path):
    task = train_toy.ToyTask()
    batch = next(train_toy.train_iter())
    shapes = jax.eval_shape(
        task.init_variables, jax.random.PRNGKey(0), {"image": jnp.asarray(batch["image"])}
    )
    rs = np.random.RandomState(0)
    variables = jax.tree.map(lambda x: rs.randn(*x.shape).astype(x.dtype), shapes)
    kernel = np.full(variables["params"]["encoder"]["kernel"].shape, 0.25, np.float32)
    path = tmp_path / "pretrained"
    with ocp.StandardCheckpointer() as saver:
        saver.save(path, {"params": {"kernel": kernel}})
    loaded = pretrained.load_pretrained(str(path), variables, "encoder")
    np.testing.assert_array_equal(np.asarray(loaded["params"]["encoder"]["kernel"]), kernel)
    np.testing.assert_array_equal(
        np.asarray(loaded["params"]["head"]["kernel"]),
        np.asarray(variables["params"]["head"]["kernel"]),
    )
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        pretrained.load_pretrained(str(tmp_path / "does_not_exist"), variables)
    with pytest.raises(FileNotFoundError, match="no_weights"):
        train_and_evaluate(
            _with(train_toy.config(), init_from=str(tmp_path / "no_weights")),
            str(tmp_path / "r"),
            task,
            train_toy.train_iter,
            None,
        )


def test_a_runs_final_weights_as_npz_start_another_run(tmp_path, full_run):
    """A training checkpoint -> .npz (avs_jax/sim_pretrain.py's export) -> `init_from`: every
    parameter and the BatchNorm statistics (kept under model_state in a run) arrive unchanged."""
    from avs_jax import import_weights as iw
    from avs_jax.sim_pretrain import export_final

    workdir, out = full_run
    path = export_final(str(workdir), str(tmp_path / "toy.npz"))
    trained = {"params": out["state"].params, **out["state"].model_state}
    assert set(trained) == {"params", "batch_stats"}
    saved = iw.read_weights_npz(path)
    task = train_toy.ToyTask()
    batch = next(train_toy.train_iter())
    fresh = task.init_variables(jax.random.PRNGKey(1), {"image": jnp.asarray(batch["image"])})
    loaded = pretrained.load_pretrained(path, fresh)
    for tree in (saved, loaded):
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, tree), trained)
    # The statistics moved away from their initial (0, 1) in training: a loader that dropped
    # them would fail above, not pass by accident.
    assert not np.allclose(np.asarray(trained["batch_stats"]["BatchNorm_0"]["var"]), 1.0)
    with pytest.raises(iw.WeightImportError, match="not a readable .npz"):
        (tmp_path / "bad.npz").write_bytes(b"not a zip")
        iw.read_weights_npz(tmp_path / "bad.npz")


def _with(config, **kw):
    config.update(kw)
    return config


def test_checkpoints_keep_the_latest_and_the_best(tmp_path):
    cfg = train_toy.config().checkpoint
    cfg.keep = 2
    ckpt = checkpointing.Checkpointer(str(tmp_path), cfg)
    state = {"w": jnp.arange(3.0)}
    for step, abs_rel in zip([1, 2, 3, 4, 5], [0.3, 0.1, 0.5, 0.4, None]):
        ckpt.save(step, state, metrics=None if abs_rel is None else {"abs_rel": abs_rel})
    ckpt.wait()
    # latest two (4, 5) and the lowest abs_rel (2); 1 and 3 are gone.
    assert sorted(ckpt.manager.all_steps()) == [2, 4, 5]
    assert ckpt.best_step() == 2
    restored, meta = ckpt.restore(checkpointing.abstract_like(state), step=2)
    np.testing.assert_array_equal(np.asarray(restored["w"]), [0.0, 1.0, 2.0])
    assert meta["step"] == 2 and meta["metrics"] == {"abs_rel": 0.1}
    with pytest.raises(KeyError, match="best_metric='abs_rel'"):
        ckpt.save(6, state, metrics={"rmse": 1.0})
    ckpt.close()


def test_ctrl_c_sets_the_stop_flag_instead_of_raising():
    import os
    import signal

    from avs_jax.train.interrupts import StopFlag

    previous = signal.getsignal(signal.SIGINT)
    with StopFlag().installed() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # the loop would save and return at the next step
        assert stop.signal == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C interrupts at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored


def test_hosts_stop_together_at_the_next_exchange(monkeypatch):
    """Two hosts, SIGTERM on host 0 only at step 7: neither stops before the exchange at step
    25, where both see it (host 1 by the exchange alone); one host stops at once."""
    import signal

    from avs_jax.train import interrupts

    assert interrupts.agreed_signal(signal.SIGTERM, 7) == signal.SIGTERM  # one process
    flags = {0: signal.SIGTERM, 1: None}  # what each host's StopFlag holds
    exchanged = []

    def allgather(x):
        exchanged.append(int(x))
        return np.array([flags[0] or 0, flags[1] or 0], np.int32)

    monkeypatch.setattr(interrupts.jax, "process_count", lambda: 2)
    monkeypatch.setattr(interrupts.multihost_utils, "process_allgather", allgather)
    for host in (0, 1):
        stops = [s for s in range(7, 60) if interrupts.agreed_signal(flags[host], s) is not None]
        assert stops[0] == 25 == interrupts.STOP_SYNC_EVERY
        assert interrupts.agreed_signal(flags[host], 25) == signal.SIGTERM
    assert exchanged[:2] == [signal.SIGTERM, signal.SIGTERM]  # host 0 told its flag
    flags[0] = None
    assert interrupts.agreed_signal(None, 50) is None  # nobody signalled: go on


def test_validation_mean_weights_by_batch_size_or_by_the_metrics_own_count():
    """Batch means weighted by batch size; a metric with a "weight/" count is weighted by it, so
    a batch where it covers nothing (NaN, count 0) drops out; none anywhere gives NaN."""
    records = [
        (4, {"loss": 1.0, "pose": float("nan"), "weight/pose": 0.0}),
        (4, {"loss": 3.0, "pose": 10.0, "weight/pose": 2.0}),
        (2, {"loss": 6.0, "pose": 4.0, "weight/pose": 1.0}),
    ]
    means = _weighted_mean(records)
    assert set(means) == {"loss", "pose"}
    np.testing.assert_allclose(means["loss"], (4 * 1 + 4 * 3 + 2 * 6) / 10)
    np.testing.assert_allclose(means["pose"], (2 * 10 + 1 * 4) / 3)
    none = _weighted_mean([(4, {"pose": float("nan"), "weight/pose": 0.0})] * 2)
    assert np.isnan(none["pose"])


def _copy_run(full_run, dest):
    """A copy of the full run's workdir (checkpoints 8 and 12 (the latest two; 12 is also the
    best), metrics.jsonl)."""
    shutil.copytree(full_run[0], dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


# (file of checkpoint 12, how it is broken): the ways a full disk or a copy cut short leave it.
BROKEN = [
    ("state/manifest.ocdbt", "truncated"),
    ("state/_METADATA", "truncated"),
    ("meta/metadata", "emptied"),
]


@pytest.mark.parametrize("name,how", BROKEN)
def test_resume_falls_back_to_the_newest_checkpoint_that_reads(
    tmp_path, full_run, caplog, name, how
):
    workdir = _copy_run(full_run, tmp_path / "run")
    path = workdir / "checkpoints" / "12" / name
    with open(path, "r+b") as f:
        f.truncate(10 if how == "truncated" else 0)
    with caplog.at_level(logging.WARNING):
        out = run(workdir)
    said = [r.getMessage() for r in caplog.records]
    skipped = [m for m in said if "checkpoints/12 cannot be read (" in m]
    assert len(skipped) == 1 and "moved to" in skipped[0], said
    assert "resuming from checkpoint 8, the newest that can be read" in said
    assert (workdir / "checkpoints_unreadable" / "12" / name).exists()
    # Steps 9-12 again, exactly as the uninterrupted run; metrics.jsonl holds each step once.
    full = full_run[1]["train"]
    assert [r["step"] for r in out["train"]] == [9, 10, 11, 12]
    np.testing.assert_allclose(
        [r["loss"] for r in out["train"]], [r["loss"] for r in full[8:]], rtol=1e-6, atol=0
    )
    assert [r["step"] for r in read_metrics(str(workdir), "train")] == list(range(1, 13))
    assert [r["step"] for r in read_metrics(str(workdir), "eval")] == [4, 8, 12]
    # The new checkpoint 12 is whole.
    _, meta = checkpointing.restore_variables(str(workdir / "checkpoints"), 12)
    assert meta["step"] == 12


def test_resume_with_no_readable_checkpoint_names_them_all(tmp_path, full_run):
    workdir = _copy_run(full_run, tmp_path / "run")
    (workdir / "checkpoints" / "12" / "meta" / "metadata").write_text("")
    with open(workdir / "checkpoints" / "8" / "state" / "manifest.ocdbt", "r+b") as f:
        f.truncate(10)
    with pytest.raises(
        checkpointing.CorruptCheckpointError,
        match=r"no checkpoint under .*checkpoints can be read: step 12: "
        r"JSONDecodeError: .*; step 8: ValueError: ",
    ):
        run(workdir)
    # Nothing was moved: the user decides what to do with them.
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [
        "12",
        "8",
    ]


def test_resume_of_another_model_names_the_parameters_and_config(tmp_path, full_run):
    workdir = _copy_run(full_run, tmp_path / "run")
    with pytest.raises(checkpointing.CheckpointMismatchError) as e:
        run(workdir, task=train_toy.ToyTask(features=16), learning_rate=1e-2)
    msg = str(e.value)
    assert "checkpoints/12 does not fit the model of this config" in msg
    assert "shape of params/encoder/kernel: checkpoint (3, 3, 3, 8), model (3, 3, 3, 16)" in msg
    assert "train.learning_rate: 0.03 -> 0.01" in msg
    assert (workdir / "checkpoints" / "12").is_dir()  # a mismatch moves nothing aside


def test_metrics_past_the_restored_step_are_dropped_on_resume(tmp_path, full_run):
    """A kill after step 12 was logged but before its checkpoint: the rerun resumes from 8 and
    logs 9-12 again; metrics.jsonl then holds each step once, with the rerun's values."""
    workdir = _copy_run(full_run, tmp_path / "run")
    shutil.rmtree(workdir / "checkpoints" / "12")
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write('{"step": 12, "split": "tra')  # the line a kill cut short
    out = run(workdir)
    logged = read_metrics(str(workdir), "train")
    assert [r["step"] for r in logged] == list(range(1, 13))
    assert [r["step"] for r in read_metrics(str(workdir), "eval")] == [4, 8, 12]
    np.testing.assert_allclose(
        [r["loss"] for r in logged[8:]], [r["loss"] for r in out["train"]], rtol=1e-7
    )


HOLD_LOCK = """
import sys, time
from avs_jax.workdir_lock import workdir_lock
with workdir_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_run_in_a_workdir_is_refused_and_a_dead_holders_lock_taken_over(tmp_path, caplog):
    import os
    import socket
    import subprocess

    from avs_jax.workdir_lock import WorkdirLockedError

    root = Path(__file__).resolve().parents[1]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
        cwd=root,
        env=dict(os.environ, PYTHONPATH=str(root)),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            WorkdirLockedError,
            match=rf"is in use by pid {holder.pid} on host "
            rf"{socket.gethostname()} since .*lock file .*\.lock",
        ):
            run(tmp_path)
        assert not (tmp_path / "checkpoints").exists()  # refused before touching anything
        # What a run records beside its checkpoints (stage 1's camera.json) waits for the lock.
        with pytest.raises(WorkdirLockedError):
            train_and_evaluate(
                train_toy.config(),
                str(tmp_path),
                train_toy.ToyTask(),
                train_toy.train_iter,
                on_start=lambda: (tmp_path / "camera.json").write_text("{}"),
            )
        assert not (tmp_path / "camera.json").exists()
    finally:
        holder.kill()  # as kill -9: the holder's record stays in the file
        holder.wait()
    with caplog.at_level(logging.WARNING):
        out = run(tmp_path, num_epochs=1)
    assert out["step"] == 4
    assert any(
        f"taking over the lock of pid {holder.pid}" in r.getMessage() for r in caplog.records
    )
    assert (tmp_path / ".lock").read_text() == ""  # released on a clean exit


def test_evaluation_names_an_unreadable_best_checkpoint(tmp_path, full_run):
    from avs_jax.evaluation.checkpoints import load_variables

    workdir = _copy_run(full_run, tmp_path / "run")
    best = min(full_run[1]["eval"], key=lambda r: r["abs_rel"])["step"]
    with open(workdir / "checkpoints" / str(best) / "state" / "manifest.ocdbt", "r+b") as f:
        f.truncate(10)
    with pytest.raises(
        checkpointing.CorruptCheckpointError,
        match=rf"checkpoint .*run/checkpoints/{best} cannot be read: ",
    ):
        load_variables(str(workdir), "best")
    # Metadata that does not read, of any checkpoint (the best is chosen among all of them).
    other = 12 if best != 12 else 8
    (workdir / "checkpoints" / str(other) / "meta" / "metadata").write_text("{")
    with pytest.raises(
        checkpointing.CorruptCheckpointError,
        match=rf"checkpoint .*run/checkpoints/{other} cannot be read: its "
        "metadata: JSONDecodeError",
    ):
        load_variables(str(workdir), "best")


def _recording_freezes(seen: list[int], **kw):
    """train_toy's iterator, noting gc.get_freeze_count() at each batch it reads."""

    class Recording:
        def __init__(self):
            self.it = train_toy.train_iter(**kw)
            self.get_state, self.set_state = self.it.get_state, self.it.set_state

        def __iter__(self):
            return self

        def __next__(self):
            seen.append(gc.get_freeze_count())
            return next(self.it)

    return Recording


def test_the_heap_is_frozen_while_training_and_given_back_after(tmp_path):
    # Full collections scan every object the process holds (0.15-0.27 s with JAX, Flax, grain
    # and TFDS loaded): the loop freezes the set-up's objects, and unfreezes them at the end,
    # also when training stops on an error.
    assert gc.get_freeze_count() == 0
    seen: list[int] = []
    run(tmp_path / "ok", train_iter=_recording_freezes(seen))
    assert seen[0] == 0  # the first batch is read during the set-up
    assert min(seen[1:]) > 0  # the rest while training (the prefetcher stops before the release)
    assert gc.get_freeze_count() == 0
    seen.clear()
    with pytest.raises(NonFiniteLossError):
        run(tmp_path / "nan", train_iter=_recording_freezes(seen, n=64, poison=40))
    assert max(seen) > 0 and gc.get_freeze_count() == 0
