"""Names, PyTorch -> Flax: module-path rules, and the strict accounting of every key and leaf.

`map_state_dict` fills every leaf of a Flax variables template from a state dict by `Rule`s,
converting each tensor's layout (`avs_jax.import_weights.layouts`); a leaf without a source, a
tensor neither used nor on the skip list, or a shape mismatch raises `WeightImportError` naming
each one.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from flax import traverse_util

from avs_jax.import_weights.errors import WeightImportError
from avs_jax.import_weights.layouts import conv_kernel, conv_transpose_kernel, linear_kernel

Variables = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Rule:
    """Maps Flax module paths matching `pattern` to the PyTorch module prefix `torch`.

    `pattern` is a regular expression matched (fully) against the Flax module path joined by
    "/", e.g. r"layer(\\d)_(\\d)/downsample_conv"; `torch` is its replacement template, e.g.
    r"layer\\1.\\2.downsample.0", or a function of the match (for computed indices, e.g. the
    positions in Monodepth2's `nn.ModuleList`). Leaves map by name (`_LEAF_NAMES`: kernel and
    scale -> weight, batch_stats mean/var -> running_mean/var, anything else keeps its name,
    e.g. BEiT's `gamma_1`). `kind` says how a kernel converts: "auto" by its rank (4-D: conv,
    2-D: linear), "conv_transpose" for `flax.linen.ConvTranspose` (flipped,
    `conv_transpose_kernel`), "conv_transpose_t" for its `transpose_kernel=True`,
    "conv_transpose_scatter" for `layers.ConvTransposeNonOverlap` (no flip).
    """

    pattern: str
    torch: str | Callable[[re.Match], str]
    kind: str = "auto"


# Flax leaf name -> PyTorch leaf name, per collection.
_LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}

# Keys that never hold weights (BatchNorm's step counter).
ALWAYS_SKIPPED = (r".*num_batches_tracked",)


def _convert_leaf(kind: str, leaf: str, arr: np.ndarray) -> np.ndarray:
    if leaf != "kernel":
        return arr
    if kind == "conv_transpose":
        return conv_transpose_kernel(arr, transpose_kernel=False)
    if kind == "conv_transpose_t":
        return conv_transpose_kernel(arr, transpose_kernel=True)
    if kind == "conv_transpose_scatter":
        # avs_jax.models.layers.ConvTransposeNonOverlap (kernel == stride) scatters each input
        # pixel through kernel[p, q] directly: [I, O, kh, kw] -> [kh, kw, I, O], no flip.
        return np.transpose(arr, (2, 3, 0, 1))
    if arr.ndim == 4:
        return conv_kernel(arr)
    if arr.ndim == 2:
        return linear_kernel(arr)
    return arr


def map_state_dict(
    state_dict: Mapping[str, np.ndarray],
    template: Mapping[str, Any],
    rules: Sequence[Rule],
    skip: Iterable[str] = (),
    transforms: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    what: str = "state dict",
) -> tuple[Variables, list[str]]:
    """Fills every leaf of `template` (Flax variables or their shapes) from a PyTorch state dict.

    Args:
      state_dict: PyTorch name -> array.
      template: {"params": ..., "batch_stats": ...} whose leaves have `.shape` (e.g. from
        `jax.eval_shape(model.init, ...)`).
      rules: module-path rules, first match wins.
      skip: regular expressions of PyTorch keys intentionally not imported (reported).
      transforms: PyTorch key -> function applied to the raw tensor before layout conversion
        (e.g. `adapt_input_channels` for the pose stem).
      what: name of the source in error messages (the file).

    Returns:
      (variables with numpy float32 leaves in the template's structure, skipped PyTorch keys).

    Raises:
      WeightImportError naming every Flax leaf without a source tensor, every unused PyTorch
      key, and every shape mismatch.
    """
    transforms = dict(transforms or {})
    skip_res = [re.compile(s) for s in (*ALWAYS_SKIPPED, *skip)]
    compiled = [(re.compile(r.pattern), r) for r in rules]
    flat = traverse_util.flatten_dict(template)
    used: set[str] = set()
    missing, shapes, unmapped = [], [], []
    out = {}
    for path, leaf_value in flat.items():
        collection, modules, leaf = path[0], path[1:-1], path[-1]
        module_path = "/".join(modules)
        rule = next(((rx, r) for rx, r in compiled if rx.fullmatch(module_path)), None)
        if rule is None:
            unmapped.append("/".join(path))
            continue
        rx, r = rule
        prefix = rx.sub(r.torch, module_path, count=1) if r.torch else ""
        tleaf = _LEAF_NAMES.get((collection, leaf), leaf)
        key = f"{prefix}.{tleaf}" if prefix else tleaf
        if key not in state_dict:
            missing.append(f"{key} (for {'/'.join(path)})")
            continue
        arr = np.asarray(state_dict[key])
        if key in transforms:
            arr = transforms[key](arr)
        arr = _convert_leaf(r.kind, leaf, arr)
        want = tuple(leaf_value.shape)
        if tuple(arr.shape) != want:
            shapes.append(
                f"{key}: {tuple(np.asarray(state_dict[key]).shape)} converts to "
                f"{tuple(arr.shape)}, but {'/'.join(path)} has shape {want}"
            )
            used.add(key)
            continue
        used.add(key)
        out[path] = arr.astype(np.float32)
    skipped, unexpected = [], []
    for key in state_dict:
        if key in used:
            continue
        (skipped if any(s.fullmatch(key) for s in skip_res) else unexpected).append(key)
    problems = []
    if unmapped:
        problems.append("Flax leaves no rule maps: " + ", ".join(unmapped))
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    if shapes:
        problems.append("wrong shapes: " + "; ".join(shapes))
    if problems:
        raise WeightImportError(f"{what} does not fit the model:\n  " + "\n  ".join(problems))
    return traverse_util.unflatten_dict(out), skipped


def prefixed_rules(rules: Sequence[Rule], flax_prefix: str, torch_prefix: str) -> tuple[Rule, ...]:
    """The same rules for a submodule: Flax path under `flax_prefix/`, PyTorch keys under
    `torch_prefix.` (the prefixes add no regex groups, so backreferences keep their numbers)."""
    out = []
    for r in rules:
        if callable(r.torch):
            torch = (lambda m, f=r.torch: f"{torch_prefix}.{f(m)}") if torch_prefix else r.torch
        else:
            torch = f"{torch_prefix}.{r.torch}" if torch_prefix else r.torch
        out.append(
            Rule(
                f"{re.escape(flax_prefix)}/{r.pattern}" if flax_prefix else r.pattern, torch, r.kind
            )
        )
    return tuple(out)


def get_path(tree: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The node of a nested dict at `path` (a sequence of keys), or None if it has none."""
    node = tree
    for k in path:
        if not isinstance(node, Mapping) or k not in node:
            return None
        node = node[k]
    return node


def model_template(model: Any, *inputs: Any, **kwargs: Any) -> Variables:
    """Shapes of a Flax model's variables (no computation): the target of `map_state_dict`."""
    import jax  # pylint: disable=import-outside-toplevel

    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs, **kwargs))
    return {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
