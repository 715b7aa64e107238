"""The pretrained weights the quickstart starts from (avs_jax/assets/, made by
avs_jax/sim_pretrain.py): they fit the quickstart's models, and they hold depth structure on
rooms of a seed that neither their corpus nor the quickstart used."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avs_jax import import_weights as iw
from avs_jax import sim_pretrain
from avs_jax.config_files import load_config
from avs_jax.train.avsnet_task import AVSNetTask
from avs_jax.train.pretrained import load_pretrained
from tfds_batvision import simulate
from tfds_batvision.sim import scene as scene_lib

QUICKSTART = load_config("quickstart")


def test_the_quickstart_starts_from_the_shipped_file_made_from_rooms_of_its_own_seed():
    path = QUICKSTART.stage1.init_from
    assert os.path.samefile(path, os.path.join(sim_pretrain.ASSETS, sim_pretrain.WEIGHTS))
    assert not QUICKSTART.relative.init_from  # measured, not adopted (docs/quickstart.md)
    pretrain = load_config("sim_pretrain")
    assert pretrain.stage1.model.variant == "rgb" and not pretrain.stage1.init_from
    # The corpus's seed is none of the quickstart's BV2 seeds (0-2) or held-out sets' (1000-1050):
    # the quickstart's test rooms are not in it.
    used = set(range(3)) | {held["seed"] for held in QUICKSTART.heldout.sets.values()}
    assert pretrain.seed not in used


def _frames(layout: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB [n, H, W, 3] in [0, 1] and z-depth [n, H, W] (m) of `n` rooms drawn as the quickstart
    draws `layout`'s, the first frame of each."""
    s = QUICKSTART.sim[layout]
    cfg = simulate.scene_config(
        layout,
        height=s.height,
        width=s.width,
        frames_per_scene=2,
        min_room=s.min_room,
        max_room=s.max_room,
        global_scale=s.global_scale,
    )
    rgb, depth = [], []
    for i in range(n):
        scene = scene_lib.sample_scene(np.random.default_rng([seed, i]), cfg)
        image, z, _ = scene_lib.render_frame(scene, 0)
        rgb.append(image)
        depth.append(z)
    return np.float32(rgb), np.float32(depth)


def _structure(pred: np.ndarray, depth: np.ndarray) -> float:
    """Mean per-image Abs Rel of `pred` scaled by the truth's median, over that of a constant
    depth equal to the median (the quickstart's structure multiple; 1: no structure)."""
    ratios = []
    for p, d in zip(pred, depth):
        med = np.median(d)
        scaled = p * med / np.median(p)
        ratios.append(np.mean(np.abs(scaled - d) / d) / np.mean(np.abs(med - d) / d))
    return float(np.mean(ratios))


@pytest.fixture(scope="module")
def bv2_rooms():
    return _frames("bv2", 16, seed=4242)


def test_stage1_weights_fill_the_visual_part_and_hold_room_structure(bv2_rooms):
    """The tiny ZoeDepth fills the Only-RGB model strictly (every leaf, every shape) and the
    visual modules of RGB-Echoes (its echo branch and fusion are left to train); the depth it
    gives on 16 BV2-like rooms of an unseen seed holds structure (measured: 0.38x a constant's
    Abs Rel; the random network it replaces 1.0-1.2x over three initial seeds)."""
    saved = iw.read_weights_npz(QUICKSTART.stage1.init_from)
    rgb, depth = bv2_rooms
    batch = {"image": jnp.asarray(rgb), "echo": jnp.zeros((*rgb.shape[:3], 2), jnp.float32)}
    for variant in ("rgb_echoes", "rgb"):
        config = QUICKSTART.stage1.copy_and_resolve_references()
        config.model.variant = variant
        task = AVSNetTask(config)
        fresh = jax.jit(task.init_variables)(jax.random.key(0), batch)
        loaded = load_pretrained(config.init_from, fresh)
        for module, tree in loaded["params"].items():
            source = saved if module in saved["params"] else fresh
            jax.tree.map(np.testing.assert_array_equal, tree, source["params"][module])
        assert set(saved["params"]) <= set(fresh["params"])
        left_to_train = set(fresh["params"]) - set(saved["params"])
        assert bool(left_to_train) == (variant == "rgb_echoes"), left_to_train
    # The Only-RGB model (the loop's last): the file alone decides its depth.
    pred = np.asarray(task.predict(loaded, batch["image"]))[..., 0]
    random = np.asarray(task.predict(fresh, batch["image"]))[..., 0]
    assert _structure(pred, depth) < 0.6
    assert _structure(random, depth) > 0.85


def test_the_mode_simulates_trains_and_writes_weights_the_quickstart_can_start_from(
    tmp_path, monkeypatch
):
    """`mode="sim_pretrain"` end to end at a toy size: simulate, build, train, export; the .npz
    holds the run's final params (what `init_from` then loads), `install` copies it to the
    assets folder, and a second run reuses everything (no new training step)."""
    from avs_jax import main
    from avs_jax.evaluation.checkpoints import load_variables

    config = load_config("sim_pretrain")
    config.sim.workers = 1
    config.sim.bv2.update(scenes=6, split_fractions=(4, 1, 1))
    config.stage1.train.update(num_steps=2, progress_bar=False)
    config.stage1.checkpoint.async_save = False
    config.install = True
    monkeypatch.setattr(sim_pretrain, "ASSETS", str(tmp_path / "assets"))
    out = main.run(config, str(tmp_path / "w"))
    assert out == str(tmp_path / "w" / sim_pretrain.WEIGHTS)
    installed = tmp_path / "assets" / sim_pretrain.WEIGHTS
    assert installed.read_bytes() == open(out, "rb").read()
    variables, meta = load_variables(str(tmp_path / "w" / "zoedepth"), step=None)
    assert meta["step"] == 2
    saved = iw.read_weights_npz(out)
    jax.tree.map(
        np.testing.assert_array_equal, saved["params"], jax.device_get(variables["params"])
    )
    metrics = (tmp_path / "w" / "zoedepth" / "metrics.jsonl").read_text()
    assert main.run(config, str(tmp_path / "w")) == out
    assert (tmp_path / "w" / "zoedepth" / "metrics.jsonl").read_text() == metrics
