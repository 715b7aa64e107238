"""Simulated BatVision roots made once and reused: the settings each was made with are recorded
beside it, and a rerun with other settings is refused, naming the file and the keys that differ
(the quickstart's reuse, avs_jax/quickstart.py, and its held-out sets, avs_jax/heldout.py)."""

from __future__ import annotations

import json
import os
from typing import Callable

from avs_jax.config_files import differences
from avs_jax.errors import BadInputError


def plain(x):
    """`x` as JSON would give it back (tuples as lists), for comparing settings."""
    return json.loads(json.dumps(x, sort_keys=True))


def check_settings(
    path: str, settings: dict, compared: Callable[[dict], dict] | None = None
) -> None:
    """Raises if the JSON file `path` records other settings; writes `settings` if it is absent.

    An empty file (a marker from before settings were recorded) is accepted as it is.
    `compared`: what of the recorded settings to compare (a record from before may hold keys
    that `settings` now leaves out).
    """
    settings = plain(settings)
    if not os.path.exists(path):
        _write_atomically(path, json.dumps(settings, indent=1, sort_keys=True))
        return
    with open(path) as f:
        text = f.read()
    if not text.strip():
        return
    try:
        recorded = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInputError(
            f"{path}: not valid JSON ({e}); delete its folder to redo that stage"
        ) from e
    diffs = differences(compared(recorded) if compared else recorded, settings)
    if diffs:
        shown = "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "")
        raise BadInputError(
            f"{path}: {os.path.dirname(path)} was made with other settings ({shown}). Delete "
            "that folder to redo it with this config, or use a new --workdir."
        )


def _write_atomically(path: str, text: str) -> None:
    """Writes `path` whole or not at all (a kill mid-write would leave an empty record, which
    reads as a marker from before settings were recorded)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def build_from_root(name: str, root: str, tfds_dir: str, fresh: bool) -> None:
    """Builds TFDS dataset `name` from the simulated `root` unless it was built from this root.

    `fresh`: the root was simulated by this run. A build also counts as made from the root only
    when the source record written beside it after it finished (`.<name>_source.json`, the
    root's `.complete`) matches: a run killed after simulating a root anew and before building
    from it would otherwise reuse the build of the root it replaced.
    """
    from tfds_batvision.build import build_dataset

    with open(os.path.join(root, ".complete")) as f:
        source = f.read()
    record = os.path.join(tfds_dir, f".{name}_source.json")
    built_from = None
    if os.path.exists(record):
        with open(record) as f:
            built_from = f.read()
    rebuild = fresh or built_from != source
    if rebuild and os.path.exists(record):
        os.remove(record)
    build_dataset(name, root, tfds_dir, overwrite=rebuild)
    if rebuild:
        os.makedirs(tfds_dir, exist_ok=True)
        _write_atomically(record, source)


def sim_settings(config, layout: str, seed: int) -> dict:
    """What a simulated root depends on (the worker count does not change it)."""
    return {"layout": layout, "seed": seed, **config.sim[layout].to_dict()}


def simulate_root(config, root: str, layout: str, seed: int) -> bool:
    """Simulates `layout` into `root` unless it is there; True when it simulated."""
    from tfds_batvision.simulate import simulate_dataset

    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        check_settings(done, sim_settings(config, layout, seed))
        return False
    s = config.sim[layout]
    # The simulator's default split unless the config names one.
    split = {"split_fractions": tuple(s.split_fractions)} if "split_fractions" in s else {}
    simulate_dataset(
        layout,
        root,
        s.scenes,
        seed=seed,
        height=s.height,
        width=s.width,
        frames_per_scene=s.frames_per_scene,
        min_room=s.min_room,
        max_room=s.max_room,
        min_canonical_room=s.get("min_canonical_room"),
        global_scale=s.global_scale,
        workers=config.sim.workers,
        overwrite=True,
        supersample=s.get("supersample", 1),
        step_m=s.get("step_m"),
        max_turn_deg=s.get("max_turn_deg"),
        window_prob=s.get("window_prob"),
        onset_jitter=s.get("onset_jitter"),
        max_order=s.get("max_order"),
        max_obstacles=s.get("max_obstacles"),
        hfov_range_deg=s.get("hfov_range_deg"),
        test_frame_stride=s.get("test_frame_stride", 1),
        **split,
    )
    check_settings(done, sim_settings(config, layout, seed))
    return True
