"""Stage 1 end to end on simulated BV2: main entry point, exact resume, 1 vs 4 devices, and the
evaluation loading the checkpoint (issue: AVS-Net stage 1, "Must show")."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from cpu_devices import xla_flags

from avs_jax.config_files import load_config

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4
# A checkpoint after every step, all kept, and Adam's eps at 1e-3 (default 1e-8), for
# test_one_and_four_devices_give_the_same_step, which compares a 4-device run with the shared
# 1-device run after one step: at 1e-8 Adam divides the float rounding of a near-zero gradient
# (different summation orders on 1 and 4 devices) by its own size and turns it into an lr-sized
# step; at 1e-3 updates follow the gradients, which is what data parallelism must preserve.
OVERRIDES = [
    f"--config.train.num_steps={STEPS}",
    "--config.train.log_every=1",
    "--config.train.eval_every=1",
    f"--config.checkpoint.keep={STEPS}",
    "--config.train.progress_bar=False",
    "--config.checkpoint.async_save=False",
    "--config.train.eps=1e-3",
]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    from tfds_batvision.build import build_dataset
    from tfds_batvision.simulate import simulate_dataset

    base = tmp_path_factory.mktemp("stage1")
    root = simulate_dataset(
        "bv2",
        str(base / "bv2"),
        num_scenes=5,
        seed=11,
        height=64,
        width=128,
        frames_per_scene=4,
        progress=False,
    )
    build_dataset("bv2", root, base / "tfds")
    return str(base / "tfds")


def _main(workdir, tfds_dir, *extra, devices=1):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(devices))
    cmd = [
        sys.executable,
        "-m",
        "avs_jax.main",
        "--config=configs/avsnet.py:tiny",
        f"--workdir={workdir}",
        f"--config.data.data_dir={tfds_dir}",
        *OVERRIDES,
        *extra,
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]


def _losses(workdir):
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def _params(workdir, step=None):
    from avs_jax.evaluation.checkpoints import load_variables

    variables, meta = load_variables(str(workdir), step=step)
    return meta, [np.asarray(x) for x in jax.tree.leaves(variables)]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, tfds_dir):
    """One uninterrupted STEPS-step run on one device, shared by the tests that read its losses
    or checkpoints (each run of main costs ~30-70 s of start-up and compilation on 2 cores;
    conftest.py's compilation cache shares the compiled steps with the runs of the same config)."""
    whole = tmp_path_factory.mktemp("whole")
    _main(whole, tfds_dir)
    return whole


def test_interrupted_run_resumes_exactly(tmp_path, tfds_dir, whole_run):
    whole, cut = whole_run, tmp_path / "cut"
    _main(cut, tfds_dir, "--config.train.stop_at_step=2")  # interrupted after step 2
    assert max(_losses(cut)) == 2
    _main(cut, tfds_dir)  # started again: resumes
    ref = _losses(whole)
    assert sorted(ref) == list(range(1, STEPS + 1))
    # The resumed run continues the same data order and random stream, step for step.
    np.testing.assert_allclose([_losses(cut)[s] for s in ref], [ref[s] for s in ref], rtol=1e-6)
    (_, a), (_, b) = _params(whole), _params(cut)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_one_and_four_devices_give_the_same_step(tmp_path, tfds_dir, whole_run):
    four = tmp_path / "four"
    # The shared run's first two steps, with its batch of 4 split over 4 devices.
    _main(four, tfds_dir, "--config.train.stop_at_step=2", devices=4)
    l1, l4 = _losses(whole_run), _losses(four)
    assert sorted(l4) == [1, 2]
    # Step 1: the same parameters and batch, only the forward pass is sharded.
    np.testing.assert_allclose(l4[1], l1[1], rtol=1e-6)
    # Step 2 is evaluated at parameters that carry step 1's rounding (different summation
    # orders, amplified where Adam divides a near-eps gradient by its own size): 1e-5 relative
    # measured on a CPU without AVX-512, 0 on one with it; 5.3e-5 there once the CPU's resize
    # became matmuls, whose summation order follows each device's share of the batch. A missing
    # all-reduce shows in the parameters below, by 100x their bound.
    np.testing.assert_allclose(l4[2], l1[2], rtol=1e-4)
    # The parameters are compared after step 1: step 2's update, taken at parameters that
    # already differ by rounding, turned a cancelling sum's rounding into ~1% of that update in
    # one 12-element tensor (1e-5; measured).
    (_, p1), (_, p4) = _params(whole_run, step=1), _params(four, step=1)
    # Per tensor, the RMS difference: a gradient that is not the whole batch's (a missing
    # all-reduce, per-device statistics) moves every element by about an update, 1e-4 to 1e-3
    # here, 100x this bound; rounding moves one element of a cancelling sum (a bias, a layer
    # scale) by up to 2e-6 (measured), which an element-wise bound turned into a failure on one
    # CPU and not on another.
    rms = lambda x: float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))  # noqa: E731
    for a, b in zip(p1, p4):
        assert rms(a - b) <= 1e-6 + 1e-5 * rms(b), (a.shape, rms(a - b), rms(b))


# The training stage's set-up with `distributed.multi_host` as one process of a one-process
# cluster; the loop is replaced (it is run on two processes in test_train_parallel.py).
MULTI_HOST_SETUP = r"""
import sys
import jax
from avs_jax.config_files import load_config
from avs_jax.train import loop, run
config = load_config("avsnet", "tiny")
config.data.data_dir = sys.argv[1]
config.distributed.multi_host = True
def loop_stub(*args, **kwargs):
    print("initialised", jax.distributed.is_initialized(), jax.process_count())
    return {"stopped": "done", "step": 0}
loop.train_and_evaluate = loop_stub
run.train(config, sys.argv[2])
"""


def test_training_initialises_the_distributed_runtime_before_reading_data(
    tmp_path, tfds_dir, local_coordinator
):
    """jax.distributed refuses to start once anything has asked JAX for devices, which the input
    pipeline does (the process index): the stage must initialise it first (README, "Several
    hosts"; a two-process run of main trained once this held)."""
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_NUM_PROCESSES="1",
        JAX_PROCESS_ID="0",
        **local_coordinator,
    )
    out = subprocess.run(
        [sys.executable, "-c", MULTI_HOST_SETUP, tfds_dir, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "initialised True 1" in out.stdout


def test_evaluation_loads_the_checkpoint_and_rejects_another_variant(whole_run):
    from avs_jax.evaluation.checkpoints import CheckpointMismatchError, load_run

    run = whole_run
    task, variables, cfg = load_run(str(run), "avsnet", "rgb_echoes")
    image = np.random.default_rng(0).uniform(size=(1, 64, 128, 3)).astype(np.float32)
    echo = np.ones((1, 64, 128, 2), np.float32)
    depth = np.asarray(task.predict(variables, image, echo))
    assert np.isfinite(depth).all() and (depth > 0).all() and (depth <= cfg.model.max_depth).all()
    with pytest.raises(CheckpointMismatchError, match="'rgb_echoes' variant, configured as 'rgb'"):
        load_run(str(run), "avsnet", "rgb")
    with pytest.raises(
        CheckpointMismatchError, match="'avsnet' checkpoint given where a 'relative'"
    ):
        load_run(str(run), "relative")


def test_external_predictions_are_scaled_and_evaluated(tmp_path, tfds_dir, whole_run):
    """Plug-and-play: .npy relative predictions of an outside model join Table 2."""
    from avs_jax.evaluation.evaluate import evaluate
    from avs_jax.evaluation.external import PredictionError
    from tfds_batvision.batvision import Batvision

    run = whole_run
    # The "outside model" predicts the ground truth / 7 as a disparity.
    preds = tmp_path / "preds"
    preds.mkdir()
    builder = Batvision(config="bv2", data_dir=tfds_dir, file_format="array_record")
    ids = []
    for ex in builder.as_data_source("test"):
        sid = ex["sample_id"].decode() if isinstance(ex["sample_id"], bytes) else ex["sample_id"]
        depth = np.where(ex["depth"] > 0, ex["depth"], 5.0)
        np.save(preds / (sid.replace("/", "__") + ".npy"), 7.0 / depth)
        ids.append(sid)
    config = load_config("evaluate", "export")
    config.data_dir = tfds_dir
    config.stage1.rgb_echoes = str(run)
    del config.datasets["bv1"]
    config.table2_datasets = ("bv2",)
    config.external.predictions = str(preds)
    config.gradcam.num_samples = 0
    config.figures.num_per_dataset = 1
    out = evaluate(config, str(tmp_path / "eval"))
    rows = json.load(open(tmp_path / "eval" / "tables.json"))["table2"]["bv2"]["external"]
    assert rows["no"]["none"]["n_images"] == len(ids)
    # Ground-truth median scaling recovers the ground truth; unscaled it is 7 times too near.
    assert rows["gt"]["median"]["abs_rel"] < 1e-4
    assert abs(rows["no"]["none"]["abs_rel"] - 6 / 7) < 1e-3
    assert "rgb_echoes" in rows and (tmp_path / "eval" / "export" / "scales.csv").exists()
    assert len(list((tmp_path / "eval" / "figures").glob("*.png"))) == 1
    assert out["table1"]["bv2"]["rgb_echoes"]["n_images"] == len(ids)
    # A missing file is an error naming it, unless allow_missing.
    os.remove(preds / (ids[0].replace("/", "__") + ".npy"))
    with pytest.raises(PredictionError, match=ids[0].replace("/", "__")):
        evaluate(config, str(tmp_path / "eval2"))
    config.allow_missing = True
    out = evaluate(config, str(tmp_path / "eval3"))
    assert out["missing"] == [ids[0]]
    # The sample leaves every Table 2 row (compared on the same images), not Table 1.
    rows = out["table2"]["bv2"]
    assert rows["external"]["no"]["none"]["n_images"] == len(ids) - 1
    assert rows["external"]["gt"]["median"]["n_images"] == len(ids) - 1
    assert out["table1"]["bv2"]["rgb_echoes"]["n_images"] == len(ids)


def _untrained_checkpoint(workdir, tfds_dir, variant):
    """A step-0 checkpoint of the tiny `variant` laid out as main writes one (the training
    loop's Checkpointer and metadata), without starting main: the figures need a checkpoint
    of the variant, not a trained one, and a main run costs ~40-70 s on 2 cores."""
    import optax

    from avs_jax.evaluation.checkpoints import dummy_batch
    from avs_jax.train.avsnet_task import AVSNetTask
    from avs_jax.train.checkpointing import Checkpointer
    from avs_jax.train.state import create_train_state, data_mesh, init_variables

    config = load_config("avsnet", "tiny")
    config.model.variant = variant
    config.data.data_dir = tfds_dir
    config.checkpoint.async_save = False
    task = AVSNetTask(config)
    variables = init_variables(task, jax.random.key(0), dummy_batch(config), data_mesh())
    state = create_train_state(variables, optax.adam(1e-3), jax.random.key(1), data_mesh())
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint)
    ckpt.save(0, state, meta=dict(config=json.loads(config.to_json_best_effort())))
    ckpt.close()


def test_evaluation_draws_the_gradcam_figures_of_both_variants(
    tmp_path, tfds_dir, whole_run, monkeypatch
):
    """Fig. 6 as the quickstart draws it: the RGB-Echoes run beside an Only-RGB run, Grad-CAM on
    the STFT and on RGB for the first test samples, one panel per sample (each valid)."""
    from PIL import Image

    from avs_jax.evaluation.evaluate import evaluate

    rgb = tmp_path / "rgb"
    _untrained_checkpoint(rgb, tfds_dir, "rgb")
    config = load_config("evaluate", "")
    config.data_dir = tfds_dir
    config.stage1.rgb_echoes, config.stage1.rgb = str(whole_run), str(rgb)
    del config.datasets["bv1"]
    config.table2_datasets = ()
    config.figures.num_per_dataset = 0
    config.gradcam.num_samples = 2
    out = evaluate(config, str(tmp_path / "eval"))
    assert len(out["gradcam"]) == 2
    assert set(out["table1"]["bv2"]) == {"rgb_echoes", "rgb"}
    for path in out["gradcam"]:
        assert Path(path).parent == tmp_path / "eval" / "figures" and "gradcam_bv2" in path
        img = np.asarray(Image.open(path).convert("L"), np.float32)
        assert img.shape[0] > 200 and img.std() > 10  # drawn panels, not a blank canvas
    # The panels show M_p as the tables scored it: with the canonical camera and a training
    # focal length half the test camera's, twice the M_p of the evaluation without it.
    from avs_jax.evaluation import figures
    from tfds_batvision.intrinsics import NOMINAL_HFOV_DEG, nominal_intrinsics, relative_focal

    shown = []
    panel = figures.gradcam_panel
    monkeypatch.setattr(
        figures, "gradcam_panel", lambda *a, **k: (shown.append(a[4:6]), panel(*a, **k))[1]
    )
    evaluate(config, str(tmp_path / "off"))
    bv2 = relative_focal(nominal_intrinsics(128, 64, NOMINAL_HFOV_DEG["bv2"]), (64, 128))
    config.canonical_camera.enabled = True
    config.canonical_camera.train_focal = bv2 / 2
    evaluate(config, str(tmp_path / "on"))
    assert len(shown) == 4
    for off, on in zip(shown[:2], shown[2:]):
        for d_off, d_on in zip(off, on):  # RGB-Echoes, Only-RGB
            np.testing.assert_allclose(d_on, 2 * d_off, rtol=1e-6)


def test_canonical_camera_reads_the_training_camera_and_leaves_the_same_camera_alone(
    tmp_path, tfds_dir, whole_run
):
    """With the canonical camera on, the run's training camera is the one its training recorded
    (the simulator's BV2 camera); tested on that same camera, M_p and Table 1 do not change."""
    from avs_jax.evaluation.evaluate import evaluate
    from tfds_batvision.intrinsics import NOMINAL_HFOV_DEG, nominal_intrinsics, relative_focal

    config = load_config("evaluate", "")
    config.data_dir = tfds_dir
    config.stage1.rgb_echoes = str(whole_run)
    del config.datasets["bv1"]
    config.table2_datasets = ()
    config.figures.num_per_dataset = 0
    config.gradcam.num_samples = 0
    off = evaluate(config, str(tmp_path / "off"))
    config.canonical_camera.enabled = True
    on = evaluate(config, str(tmp_path / "on"))
    tables = json.load(open(tmp_path / "on" / "tables.json"))
    bv2 = relative_focal(nominal_intrinsics(128, 64, NOMINAL_HFOV_DEG["bv2"]), (64, 128))
    assert tables["canonical_camera"]["train_focal"]["rgb_echoes"] == pytest.approx(bv2, rel=1e-6)
    # Training recorded it in the run (what avs_jax.predict reads without the training data).
    assert json.load(open(whole_run / "camera.json"))["focal"] == pytest.approx(bv2, rel=1e-6)
    assert on["table1"] == off["table1"]


def test_tiny_rgb_echoes_overfits_a_handful_of_simulated_samples(tfds_dir):
    """Issue must-show: the tiny `rgb_echoes` model (configs/avsnet.py:tiny) fits 4 fixed
    simulated BV2 samples, read through the real input pipeline (JPEG, WAV -> STFT, depth with
    sensor holes): plain Adam on SILog, the loss falls at least 3×."""
    import optax
    import train_toy

    from avs_jax.data import datasets, input_pipeline
    from avs_jax.train.avsnet_task import AVSNetTask
    from avs_jax.train.state import data_mesh, init_compiler_options, init_variables

    config = load_config("avsnet", "tiny")
    config.data.data_dir = tfds_dir
    config.data.augment = False
    batch = next(
        input_pipeline.create_eval_iterator(
            datasets.open_dataset(config.data), config.data, "train", batch_size=4
        )
    )
    assert np.asarray(batch["valid_example"]).all()
    assert len(set(map(str, batch["sample_id"]))) == 4
    batch = {k: np.asarray(batch[k]) for k in ("image", "echo", "depth")}
    assert (batch["depth"] == 0).any() and (batch["depth"] > 0).mean() > 0.5  # holes and returns
    task = AVSNetTask(config)
    variables = init_variables(task, jax.random.key(0), batch, data_mesh())
    params = variables.pop("params")
    tx = optax.adam(2e-3)
    # XLA:CPU level 1, as the inits: the step compiles in ~20 s instead of ~28 s alone on 2
    # cores and runs as fast.
    step = train_toy.plain_adam_step(task, tx, init_compiler_options())
    state, opt_state, losses = variables, train_toy.optimizer_state(tx, params), []
    for _ in range(120):
        params, state, opt_state, loss, _ = step(params, state, opt_state, batch, None)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    # The drop is chaotic in the last bits (BatchNorm on 4 samples, Adam): measured 4.6-15x over
    # init seeds 0-2 with XLA's AVX-512 and AVX2 code, and 4.98x on an AMD EPYC; 3x keeps a
    # margin. A step that applied no update would stay near 1x.
    assert min(losses[-5:]) * 3 <= losses[0], losses[::10]
