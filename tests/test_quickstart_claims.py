"""The quickstart's claim lines (issue: one line per claim, saying whether it holds), on
hand-made tables, and its reuse of earlier stages only when their settings match."""

import csv
import json
import os

import numpy as np
import pytest

from avs_jax import quickstart, sim_roots
from avs_jax.config_files import load_config
from avs_jax.evaluation.claims import (
    NO_IMAGES,
    claims,
    structure,
    structure_line,
    write_claims,
)
from tfds_batvision.simulate import assign_splits


def _m(abs_rel, a1):
    return {"abs_rel": abs_rel, "a1": a1}


def _tables(gt_median=0.20, constant=0.35, echo_median=(0.30, 0.45)):
    rows = {
        "no": {"none": _m(0.99, 0.0)},
        "rgb_echoes": {"median": _m(*echo_median), "mean_std": _m(0.32, 0.40)},
        "rgb": {"median": _m(0.40, 0.30), "mean_std": _m(0.38, 0.31)},
        "gt": {"median": _m(gt_median, 0.6), "constant": _m(constant, 0.3)},
    }
    return {
        "table1": {
            "bv2": {"rgb_echoes": _m(0.4, 0.5), "rgb": _m(0.6, 0.3)},
            "bv1": {"rgb_echoes": _m(0.3, 0.4), "rgb": _m(0.25, 0.45)},
        },
        "table2": {"bv1": {"monodepth2": rows}},
    }


def test_each_claim_line_says_whether_it_holds():
    out = claims(_tables())
    assert [holds for _, holds in out] == [True, False, True, True, True, False]
    text = [sentence for sentence, _ in out]
    assert text[0].startswith("Table 1, BV2 test") and text[1].startswith("Table 1, BV1 test")
    assert "(0.300 < 0.400 < 0.990)" in text[2]
    assert "constant" in text[3] and "(0.200 < 0.350)" in text[3]
    assert "rgb_echoes scale" in text[4] and "rgb scale" in text[5]
    # rgb: median 0.40 > mean-std 0.38 -> fails; rgb_echoes: 0.30 <= 0.32 and 0.45 >= 0.40.


def test_a_row_over_no_image_fails_its_claim_and_says_so():
    """A row whose every sample was left out has None metrics: its claims do not hold and say
    why (they used to raise TypeError formatting None), the other claims are unchanged."""
    empty = {"abs_rel": None, "a1": None}
    t = _tables()
    t["table1"]["bv1"]["rgb_echoes"] = dict(empty)
    t["table2"]["bv1"]["monodepth2"]["rgb"]["median"] = dict(empty)
    out = claims(t)
    assert out[0] == claims(_tables())[0]
    assert out[1] == (f"Table 1, BV1 test: {NO_IMAGES}", False)
    assert out[2] == (f"Table 2, BV1 monodepth2: {NO_IMAGES}", False)
    assert [s for s, _ in out[3:]] == [s for s, _ in claims(_tables())[3:5]]  # rgb's ablation gone


def test_structure_guard_fails_when_the_depth_is_worse_than_a_constant():
    out = dict(claims(_tables(gt_median=0.375, constant=0.350)))
    guard = [s for s in out if "constant" in s]
    assert len(guard) == 1 and out[guard[0]] is False
    # Without the constant row (older tables.json) the other lines are unchanged.
    t = _tables()
    del t["table2"]["bv1"]["monodepth2"]["gt"]["constant"]
    assert len(claims(t)) == 5


def test_structure_is_each_depth_against_a_constant_with_its_target():
    t = _tables(gt_median=0.21, constant=0.35)
    t["table1_oracle"] = {
        # BV1 first, as a JSON reader may give it: the records still read BV2 first.
        "bv1": {"rgb": _m(0.20, 0.6), "rgb_echoes": _m(0.15, 0.7), "constant": _m(0.30, 0.4)},
        "bv2": {"rgb": _m(0.26, 0.5), "rgb_echoes": _m(0.24, 0.6), "constant": _m(0.50, 0.3)},
    }
    out = structure(t)
    got = [(r["table"], r["dataset"], r["model"], round(r["multiple"], 6), r["meets"]) for r in out]
    assert got == [
        ("table1", "bv2", "rgb_echoes", 0.48, True),
        ("table1", "bv2", "rgb", 0.52, False),
        ("table1", "bv1", "rgb_echoes", 0.5, True),  # at the target: meets it
        ("table1", "bv1", "rgb", round(0.2 / 0.3, 6), False),
        ("table2", "bv1", "monodepth2", 0.6, True),
    ]
    assert [r["target"] for r in out] == [0.5, 0.5, 0.5, 0.5, 0.7]
    assert structure_line(out[1]) == (
        "Table 1, BV2 Only-RGB M_p: 0.52× a constant's Abs Rel (0.260 / 0.500; target ≤ 0.5×)"
    )
    assert structure_line(out[4]).startswith("Table 2, BV1 monodepth2: 0.60×")
    # No oracle rows (an older tables.json), or an empty cell: only what can be computed.
    del t["table1_oracle"]
    t["table2"]["bv1"]["monodepth2"]["gt"]["constant"] = {"abs_rel": None, "a1": None}
    assert structure(t) == []


def _tiny_quickstart_config(**bv1):
    """The quickstart's config with a tiny BV1 root (2 rooms of 2 frames), `bv1` changed."""
    config = load_config("quickstart")
    config.sim.workers = 1
    tiny = dict(scenes=2, frames_per_scene=2, height=8, width=16, split_fractions=(1, 0, 1))
    config.sim.bv1.update({**tiny, "test_frame_stride": 1, **bv1})
    return config


def test_quickstart_bv1_split_and_stride_reach_the_simulator(tmp_path):
    """`sim.bv1.split_fractions` decides how many rooms each CSV gets (42 test rooms in the
    quickstart) and `test_frame_stride` how many frames a test room keeps; here 1 / 0 / 2 of 3
    tiny rooms of 4 frames at stride 2, read back from the written CSVs."""
    config = load_config("quickstart")
    s = config.sim.bv1
    counts = {
        n: assign_splits(s.scenes, s.split_fractions, 1).count(n) for n in ("train", "val", "test")
    }
    assert counts == {"train": 10, "val": 2, "test": 42}
    assert s.frames_per_scene // s.test_frame_stride == 20

    config = _tiny_quickstart_config(
        scenes=3, frames_per_scene=4, split_fractions=(1, 0, 2), test_frame_stride=2
    )
    root = str(tmp_path / "bv1")
    sim_roots.simulate_root(config, root, "bv1", seed=1)
    frames = {}
    for split in ("train", "val", "test"):
        with open(os.path.join(root, f"{split}.csv")) as f:
            frames[split] = len(list(csv.DictReader(f)))
    assert frames == {"train": 4, "val": 0, "test": 4}  # two test rooms of frames 0 and 2


def test_rerun_reuses_a_simulated_root_only_with_the_same_settings(tmp_path):
    """A second run reuses the simulated root; one with another rig speed refuses it, naming
    the marker file and the key, instead of building tables from stale rooms."""
    config = _tiny_quickstart_config()
    root = str(tmp_path / "bv1")
    assert sim_roots.simulate_root(config, root, "bv1", seed=1) is True
    stamp = os.path.getmtime(os.path.join(root, "train.csv"))
    assert sim_roots.simulate_root(config, root, "bv1", seed=1) is False  # reused, not redone
    assert os.path.getmtime(os.path.join(root, "train.csv")) == stamp
    config.sim.workers = 2  # does not change the rooms: still reused
    assert sim_roots.simulate_root(config, root, "bv1", seed=1) is False
    config.sim.bv1.step_m = 0.01
    with pytest.raises(ValueError, match=r"bv1/\.complete.*step_m: 0\.02 -> 0\.01"):
        sim_roots.simulate_root(config, root, "bv1", seed=1)
    config.sim.bv1.step_m = 0.02
    with pytest.raises(ValueError, match=r"seed: 1 -> 2"):
        sim_roots.simulate_root(config, root, "bv1", seed=2)


def test_a_build_is_reused_only_if_made_from_the_root_as_it_is(tmp_path, monkeypatch):
    """A run killed after simulating a root anew and before building from it used to reuse, on
    the next run, the dataset built from the root it replaced (only that run knew the root was
    new). The source record written beside a finished build decides instead."""
    import tfds_batvision.build

    calls = []
    monkeypatch.setattr(
        tfds_batvision.build, "build_dataset", lambda *a, overwrite: calls.append(overwrite)
    )
    root, tfds = tmp_path / "root", tmp_path / "tfds"
    root.mkdir()
    (root / ".complete").write_text('{"seed": 0}')
    sim_roots.build_from_root("bv1", str(root), str(tfds), fresh=False)  # no record: built
    sim_roots.build_from_root("bv1", str(root), str(tfds), fresh=False)  # as recorded: reused
    sim_roots.build_from_root("bv1", str(root), str(tfds), fresh=True)  # simulated now: built
    (root / ".complete").write_text('{"seed": 5}')  # simulated anew by a run that was killed
    sim_roots.build_from_root("bv1", str(root), str(tfds), fresh=False)
    sim_roots.build_from_root("bv1_triples", str(root), str(tfds), fresh=False)  # its own record
    sim_roots.build_from_root("bv1", str(root), str(tfds), fresh=False)
    assert calls == [True, False, True, True, True, False]
    assert (tfds / ".bv1_source.json").read_text() == '{"seed": 5}'


def test_settings_check_names_every_difference_and_accepts_old_empty_markers(tmp_path):
    path = str(tmp_path / quickstart.SETTINGS_FILE)
    settings = {"config": {"model": {"width": 8}, "sizes": (1, 2)}, "data": {"seed": 0}}
    sim_roots.check_settings(path, settings)  # written
    sim_roots.check_settings(
        path, {"config": {"model": {"width": 8}, "sizes": [1, 2]}, "data": {"seed": 0}}
    )  # a tuple reads back as a list
    with pytest.raises(ValueError) as e:
        sim_roots.check_settings(
            path,
            {"config": {"model": {"width": 16}, "sizes": (1, 2), "new": 1}, "data": {"seed": 0}},
        )
    msg = str(e.value)
    assert path in msg and "config.model.width: 8 -> 16" in msg
    assert "config.new: '<unset>' -> 1" in msg and "sizes" not in msg
    empty = tmp_path / "old"
    empty.write_text("")
    sim_roots.check_settings(str(empty), settings)  # a marker from before: accepted
    assert empty.read_text() == ""


def _fake_training(monkeypatch, record, stopped_at=None):
    """quickstart._train with a training that calls `record(config)`: unfinished before each
    training, finished after it (unless `stopped_at`, a step at which it stops unfinished)."""
    calls = {"n": 0}

    def finished(workdir, n):
        calls["n"] += 1
        return stopped_at is None and calls["n"] % 2 == 0  # checked before, then after

    def train(cfg, workdir):
        record(cfg)
        if stopped_at is None:
            return {"step": 4, "stopped": "done"}
        return {"step": stopped_at, "stopped": "stop_at_step"}

    monkeypatch.setattr(quickstart, "_finished", finished)
    monkeypatch.setattr("avs_jax.train.run.train", train)


def test_a_training_stopped_early_stops_the_quickstart_and_resumes(tmp_path, monkeypatch):
    """`stop_at_step` pauses a run: the quickstart stops there (it used to evaluate the half-
    trained model and print its claims), and the run resumes without the flag."""
    import ml_collections

    from avs_jax.errors import BadInputError

    trained = []
    _fake_training(monkeypatch, lambda cfg: trained.append(cfg.train.stop_at_step), stopped_at=2)
    monkeypatch.setattr("avs_jax.data.datasets.open_dataset", lambda data: None)
    monkeypatch.setattr("avs_jax.data.datasets.split_size", lambda builder, split: 8)
    run = str(tmp_path / "run")
    cfg = ml_collections.ConfigDict(
        {
            "data": {"data_dir": "/x", "batch_size": 2},
            "train": {"stop_at_step": 2, "num_steps": 4, "num_epochs": 1, "steps_per_epoch": 4},
        }
    )
    with pytest.raises(BadInputError, match=r"run stopped at step 2 of 4 \(stop_at_step\)"):
        quickstart._train(cfg, run, {"seed": 0})
    os.makedirs(os.path.join(run, "checkpoints", "2"))
    cfg.train.stop_at_step = -1  # not a setting: the same run resumes
    _fake_training(monkeypatch, lambda cfg: trained.append(cfg.train.stop_at_step))
    quickstart._train(cfg, run, {"seed": 0})
    assert trained == [2, -1]


def test_run_settings_know_npz_weights_by_content_not_path(tmp_path, monkeypatch):
    """A run started from a weights .npz resumes after the file (the shipped weights of a moved
    clone) changes folder, and refuses a file of other content under the same name."""
    import ml_collections

    trained = []
    _fake_training(monkeypatch, lambda cfg: trained.append(cfg.init_from))
    monkeypatch.setattr("avs_jax.data.datasets.open_dataset", lambda data: None)
    monkeypatch.setattr("avs_jax.data.datasets.split_size", lambda builder, split: 8)
    run = str(tmp_path / "run")
    for folder in ("a", "b"):
        os.makedirs(tmp_path / folder)
        np.savez(tmp_path / folder / "w.npz", x=np.arange(3.0))

    def cfg(init_from):
        return ml_collections.ConfigDict(
            {
                "init_from": init_from,
                "data": {"data_dir": "/x", "batch_size": 2},
                "train": {"num_steps": 4, "num_epochs": 1, "steps_per_epoch": 4},
            }
        )

    quickstart._train(cfg(str(tmp_path / "a" / "w.npz")), run, {})
    os.makedirs(os.path.join(run, "checkpoints", "2"))
    quickstart._train(cfg(str(tmp_path / "b" / "w.npz")), run, {})  # moved: same content
    assert len(trained) == 2
    np.savez(tmp_path / "b" / "w.npz", x=np.arange(4.0))
    with pytest.raises(ValueError, match=r"config\.init_from: 'sha256:"):
        quickstart._train(cfg(str(tmp_path / "b" / "w.npz")), run, {})
    with pytest.raises(ValueError, match=r"config\.init_from: 'sha256:.*' -> '/ckpt/7:pose_net'"):
        quickstart._train(cfg("/ckpt/7:pose_net"), run, {})


def test_run_settings_protect_checkpoints_not_failed_starts(tmp_path, monkeypatch):
    """A run folder with a checkpoint refuses another config; one whose start failed before
    any checkpoint takes the new config (nothing there to mix in)."""
    import ml_collections

    trained = []
    _fake_training(monkeypatch, lambda cfg: trained.append(cfg.train.lr))
    monkeypatch.setattr("avs_jax.data.datasets.open_dataset", lambda data: None)
    monkeypatch.setattr("avs_jax.data.datasets.split_size", lambda builder, split: 8)
    run = str(tmp_path / "run")

    def cfg(lr):
        return ml_collections.ConfigDict(
            {
                "data": {"data_dir": "/x", "batch_size": 2},
                "train": {"lr": lr, "num_steps": 4, "num_epochs": 1, "steps_per_epoch": 4},
            }
        )

    quickstart._train(cfg(1.0), run, {"seed": 0})
    quickstart._train(cfg(2.0), run, {"seed": 0})  # no checkpoint yet: redone with lr 2
    assert trained == [1.0, 2.0]
    os.makedirs(os.path.join(run, "checkpoints", "4"))
    quickstart._train(cfg(2.0), run, {"seed": 0})  # same settings: resumed
    with pytest.raises(ValueError, match=r"quickstart_settings\.json.*train\.lr: 2\.0 -> 3\.0"):
        quickstart._train(cfg(3.0), run, {"seed": 0})
    with pytest.raises(ValueError, match=r"data\.seed: 0 -> 1"):
        quickstart._train(cfg(2.0), run, {"seed": 1})
    assert trained == [1.0, 2.0, 2.0]
    # The data folder is a path, not a setting: a moved workdir still resumes.
    moved = cfg(2.0)
    moved.data.data_dir = "/elsewhere"
    quickstart._train(moved, run, {"seed": 0})
    assert len(trained) == 4
    # Nor is how fast it is read: a run made with other read threads or without the decoded
    # examples cached still resumes, also one whose record (from before NOT_SETTINGS) holds them.
    moved.data.num_threads = 4
    moved.data.cache_decoded = True
    moved.train.prefetch_to_device = 0
    quickstart._train(moved, run, {"seed": 0})
    path = os.path.join(run, quickstart.SETTINGS_FILE)
    with open(path) as f:
        record = json.load(f)
    record["config"]["data"]["num_threads"] = 8
    record["config"]["data"]["cache_decoded"] = False
    with open(path, "w") as f:
        json.dump(record, f)
    quickstart._train(moved, run, {"seed": 0})
    assert len(trained) == 6


def test_write_claims_saves_the_lines_the_records_and_extras(tmp_path):
    t = _tables(gt_median=0.21, constant=0.35)
    lines, records = claims(t), structure(t)
    path = write_claims(str(tmp_path), lines, records, seconds=12.5)
    saved = json.loads(open(path).read())
    assert path.endswith("claims.json")
    assert saved["claims"] == [{"claim": s, "holds": h} for s, h in lines]
    assert saved["structure"] == records and saved["seconds"] == 12.5
