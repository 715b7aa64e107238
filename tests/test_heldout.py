"""avs_jax/heldout.py: the held-out sets' simulation settings and their summary table. The
whole option (simulate, build, evaluate a finished quickstart) is run in docs/quickstart.md."""

from avs_jax import heldout
from avs_jax.config_files import load_config


def test_a_set_changes_only_its_settings_and_simulates_test_rooms_only():
    config = load_config("quickstart", "")
    assert not config.heldout.enabled  # an option: the README's quickstart does not run it
    base = config.sim
    small = heldout.set_sim_config(config, "small_rooms").sim
    for layout in ("bv2", "bv1"):
        assert (small[layout].min_room, small[layout].max_room) == (1.5, 3.0)
        assert tuple(small[layout].split_fractions) == (0, 0, 1)
        assert small[layout].scenes == config.heldout.scenes[layout]
        # Everything else as the quickstart trained on: image size, onset jitter, scale.
        for key in ("height", "width", "onset_jitter", "global_scale", "frames_per_scene"):
            assert small[layout][key] == base[layout][key], (layout, key)
    assert small.workers == base.workers
    # Below every trained room, and the other sets outside training's ranges too.
    assert small.bv2.max_room <= base.bv2.min_room and small.bv1.max_room <= base.bv1.min_room
    large = heldout.set_sim_config(config, "large_rooms").sim
    assert large.bv2.min_room >= base.bv2.max_room and large.bv1.min_room >= base.bv1.max_room
    same = heldout.set_sim_config(config, "other_rooms").sim
    assert (same.bv2.min_room, same.bv2.max_room) == (base.bv2.min_room, base.bv2.max_room)
    seeds = [s.seed for s in config.heldout.sets.values()]
    assert len(set(seeds)) == len(seeds) and min(seeds) > config.seed + 1  # rooms never trained on


def _m(abs_rel):
    return {"abs_rel": abs_rel, "a1": 1 - abs_rel, "n_images": 3}  # better on both


def test_summary_counts_the_four_claims_apart_from_the_ablation():
    config = load_config("quickstart", "")
    tables = {
        "table1": {
            "bv2": {"rgb_echoes": _m(0.3), "rgb": _m(0.5)},
            "bv1": {"rgb_echoes": _m(0.31), "rgb": _m(0.45)},
        },
        "table2": {
            "bv1": {
                "monodepth2": {
                    "no": {"none": _m(0.99)},
                    "rgb": {"median": _m(0.4), "mean_std": _m(0.41)},
                    "rgb_echoes": {"median": _m(0.35), "mean_std": _m(0.34)},
                    "gt": {"median": _m(0.2), "constant": _m(0.4)},
                }
            }
        },
    }
    from avs_jax.evaluation.claims import claims

    lines = claims(tables)
    # 2 Table 1 lines, the order, the structure, and 2 ablation lines (one fails: 0.35 > 0.34).
    assert len(lines) == 6 and sum(h for _, h in lines) == 5
    md = heldout.summary_markdown({"other_rooms": {**tables, "claims": lines}}, config.heldout.sets)
    row = [r for r in md.splitlines() if r.startswith("| other_rooms")][0]
    assert "| 0.300 / 0.500 | 0.310 / 0.450 | 0.350 / 0.400 / 0.990 | 0.200 / 0.400 |" in row
    assert row.endswith("| 4 of 4 | 1 of 2 |")
    assert "seed 1000" in row
    assert "Canonical camera" not in md  # said only when the evaluation used it
    camera = {**tables, "claims": lines, "canonical_camera": {"train_focal": {"rgb": 0.6}}}
    md = heldout.summary_markdown({"other_rooms": camera}, config.heldout.sets)
    assert "Canonical camera: M_p × the test camera's focal length / training's." in md
