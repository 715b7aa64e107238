"""Pretrained weights into a fresh run's variables (`config.init_from`, `init_from_target`)."""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from avs_jax.errors import MissingInputError


def pretrained_sources(config: ml_collections.ConfigDict) -> list[tuple[str, str]]:
    """(path, target) pairs of `config.init_from`: "DIR" (target `config.init_from_target`) or a
    comma-separated list of "DIR:TARGET", e.g. "/ckpt/midas:midas,/ckpt/resnet18:echo_encoder"."""
    out = []
    for item in (p.strip() for p in config.init_from.split(",") if p.strip()):
        path, _, target = item.partition(":")
        out.append((path, target if _ else config.get("init_from_target", "")))
    return out


def load_pretrained(path: str, variables: dict, target: str = "") -> dict:
    """`variables` with the pretrained weights at `path` put in place under `target`.

    `path` is a checkpoint written by `python -m avs_jax.import_weights`, a training run's
    checkpoint step folder, an orbax checkpoint of {"params", ["batch_stats"]} or of a bare params
    tree, or a `.npz` written by `import_weights.save_weights_npz`. Its tree replaces the model's
    subtree at `target` ("/"-separated, "" = the root; at the root each top-level module of the
    checkpoint replaces the model's module of that name, so that e.g. a ZoeDepth import fills
    the visual part of AVS-Net and leaves its echo branch alone). Strict: a leaf missing on
    either side or a shape mismatch raises, naming it (avs_jax.import_weights.merge_pretrained),
    so nothing is silently left at its random initialisation.
    """
    from avs_jax import import_weights as iw

    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise MissingInputError(f"config.init_from: pretrained checkpoint {path} does not exist")
    if path.endswith(".npz"):
        loaded = iw.read_weights_npz(path)
    elif os.path.isdir(os.path.join(path, "state")):
        loaded = iw.read_imported(path)
    else:
        loaded = ocp.StandardCheckpointer().restore(path)
        if not (isinstance(loaded, dict) and "params" in loaded):
            loaded = {"params": loaded}
    loaded = {c: t for c, t in loaded.items() if t}
    host = jax.tree.map(np.asarray, variables)
    if target:
        merged = iw.merge_pretrained(host, loaded, target)
    else:
        merged = host
        for module in loaded["params"]:
            merged = iw.merge_pretrained(merged, iw.subtree(loaded, module), module)
    logging.info("%s: pretrained weights loaded under %r", path, target or "/")
    # Back onto the devices with the shardings the model's variables had.
    return jax.tree.map(
        lambda new, old: (
            jax.device_put(np.asarray(new, old.dtype), old.sharding)
            if isinstance(old, jax.Array)
            else np.asarray(new, old.dtype)
        ),
        merged,
        variables,
    )
