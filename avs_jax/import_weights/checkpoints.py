"""Imported weights on disk and in a model: write, read back, take a subtree, merge.

An import is an orbax checkpoint of `{"params": ..., "batch_stats": ...}` at DIR/state, with
DIR/import.json saying where it came from (source, input files, skipped keys; for ZoeDepth also
"model_config", the `config.model` that reproduces upstream).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from flax import traverse_util

from avs_jax.import_weights.errors import WeightImportError
from avs_jax.import_weights.mapping import Variables, get_path


def save_pretrained(
    path: str | Path, variables: Variables, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Writes `{"params", "batch_stats"}` as an orbax checkpoint at `path` (+ `import.json`)."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = {"params": variables.get("params", {}), "batch_stats": variables.get("batch_stats", {})}
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path / "state", tree, force=True)
    (path / "import.json").write_text(json.dumps(dict(metadata or {}), indent=1, default=str))
    return path


def read_imported(path: str | Path) -> Variables:
    """Reads a checkpoint written by `save_pretrained`, or a training run's checkpoint step folder,
    -> {"params": ..., "batch_stats": ...}."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    path = Path(path).absolute()
    state = path / "state"
    if not state.exists():
        raise WeightImportError(
            f"{path}: not a pretrained-weights checkpoint (no 'state' inside; "
            "write one with `python -m avs_jax.import_weights`)"
        )
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(state)
    # A training run's checkpoint (avs_jax/train/state.py) keeps BatchNorm's under model_state.
    stats = tree.get("batch_stats") or (tree.get("model_state") or {}).get("batch_stats")
    return {"params": tree.get("params") or {}, "batch_stats": stats or {}}


def save_weights_npz(path: str | Path, variables: Variables) -> Path:
    """Writes `{"params", "batch_stats"}` as one numpy .npz, keys "params/midas/.../kernel".

    The compact form of pretrained weights that ship with the repository (a few MB, one file, no
    orbax layout): `read_weights_npz` reads it back and `config.init_from` takes it like a checkpoint.
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {}
    for collection in ("params", "batch_stats"):
        for key, leaf in traverse_util.flatten_dict(variables.get(collection) or {}).items():
            flat["/".join((collection, *key))] = np.asarray(leaf)
    with open(path, "wb") as f:
        np.savez(f, **flat)
    return path


def read_weights_npz(path: str | Path) -> Variables:
    """Reads a `save_weights_npz` file -> {"params": ..., "batch_stats": ...} of numpy arrays."""
    path = Path(path).absolute()
    try:
        with np.load(path, allow_pickle=False) as data:
            flat = {tuple(k.split("/")): np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError) as e:
        raise WeightImportError(f"{path}: not a readable .npz of weights ({e})") from e
    bad = sorted("/".join(k) for k in flat if k[0] not in ("params", "batch_stats") or len(k) < 2)
    if bad:
        raise WeightImportError(
            f"{path}: keys must start with 'params/' or 'batch_stats/'; found {bad[:3]}"
        )
    out = {"params": {}, "batch_stats": {}}
    for collection in out:
        part = {k[1:]: v for k, v in flat.items() if k[0] == collection}
        out[collection] = traverse_util.unflatten_dict(part) if part else {}
    return out


def subtree(pretrained: Variables, prefix: str | Sequence[str]) -> Variables:
    """The part of imported variables under `prefix` (every collection that has it)."""
    path = tuple(p for p in prefix.split("/") if p) if isinstance(prefix, str) else tuple(prefix)
    out = {}
    for collection, tree in pretrained.items():
        node = get_path(tree, path) if tree else None
        if node is not None:
            out[collection] = node
    if not out:
        raise WeightImportError(f"pretrained variables have nothing under {'/'.join(path)!r}")
    return out


def merge_pretrained(
    variables: Variables, pretrained: Variables, prefix: str | Sequence[str] = ()
) -> Variables:
    """Puts an imported subtree at `prefix` (e.g. "encoder" or ("depth", "encoder")) of `variables`.

    Every collection of `pretrained` (params, batch_stats) replaces the subtree at the same
    path in `variables`; the two subtrees must have the same leaves with the same shapes (a
    mismatch raises, naming the leaves). Returns a new dict; `variables` is not modified.
    """
    if isinstance(prefix, str):
        prefix = tuple(p for p in prefix.split("/") if p)
    prefix = tuple(prefix)
    flatten, unflatten = traverse_util.flatten_dict, traverse_util.unflatten_dict
    # A fresh dict at every level, so the caller's (possibly frozen) variables stay untouched.
    out = {
        c: (unflatten(flatten(v)) if isinstance(v, Mapping) else v) for c, v in variables.items()
    }
    for collection, sub in pretrained.items():
        if not sub:
            continue
        where = "/".join((collection,) + prefix)
        target = get_path(out, (collection,) + prefix)
        if target is None:
            raise WeightImportError(f"merge_pretrained: the model has no {where!r}")
        have, new = flatten(target), flatten(sub)
        problems = [f"missing in pretrained: {'/'.join(k)}" for k in have if k not in new]
        problems += [f"not in the model: {'/'.join(k)}" for k in new if k not in have]
        problems += [
            f"{'/'.join(k)}: pretrained {tuple(np.shape(new[k]))} vs model "
            f"{tuple(np.shape(have[k]))}"
            for k in have
            if k in new and tuple(np.shape(new[k])) != tuple(np.shape(have[k]))
        ]
        if problems:
            raise WeightImportError(f"merge_pretrained at {where}:\n  " + "\n  ".join(problems))
        node = out[collection]
        for k in prefix[:-1]:
            node = node[k]
        # Keep the model's dtypes (e.g. float32 params even if the file held float16).
        converted = unflatten({k: np.asarray(v).astype(have[k].dtype) for k, v in new.items()})
        if prefix:
            node[prefix[-1]] = converted
        else:
            out[collection] = converted
    return out
