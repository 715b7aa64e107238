"""Pretrained PyTorch weights (ResNet-18, MiDaS DPT, ZoeDepth, Monodepth2) as Flax variables.

The paper starts every network from public pretrained weights (DESIGN.md: "No network at run
time"). Users hold them as PyTorch files; this module reads them without PyTorch where it can
(`.safetensors`, `.npz`; `.pth`/`.pt` need torch and import it lazily), converts names and
layouts to our NHWC Flax modules, and writes an orbax checkpoint of
`{"params": ..., "batch_stats": ...}` that `load_pretrained` reads back and `merge_pretrained`
places into a model's variables (what `config.init_from` uses).

Conversion is strict: every leaf of the Flax model must be filled from the state dict, every
tensor of the state dict must be used or be on the source's list of intentionally skipped keys
(e.g. torchvision's `fc.*`), and every shape must agree. Anything else raises
`WeightImportError` naming each key, so nothing is ever silently left at its random init.

Command line (one orbax checkpoint per model at --out; Monodepth2 writes OUT/depth, OUT/pose):

    python -m avs_jax.import_weights --source=resnet18 --in=resnet18.pth --out=/ckpt/resnet18 \
        [--in_channels=2 (echo encoder) | 6 (pose encoder)]
    python -m avs_jax.import_weights --source=monodepth2 \
        --in=encoder.pth,depth.pth,pose_encoder.pth,pose.pth --out=/ckpt/md2
    python -m avs_jax.import_weights --source=midas_dpt --in=dpt_beit_large_384.pt \
        --image_size=256,512 --out=/ckpt/midas
    python -m avs_jax.import_weights --source=zoedepth --in=ZoeD_M12_N.pt \
        --image_size=256,512 --out=/ckpt/zoedepth

Then, e.g. for the echo encoder of AVS-Net:
    variables = merge_pretrained(variables, load_pretrained("/ckpt/resnet18"), "echo_encoder")

Layout conventions (PyTorch -> Flax):
  Conv2d weight [O, I, kh, kw]            -> kernel [kh, kw, I, O] (HWIO)
  ConvTranspose2d weight [I, O, kh, kw]   -> kernel [kh, kw, I, O]: spatially flipped for
                                             flax ConvTranspose, as is for
                                             layers.ConvTransposeNonOverlap
  Linear weight [O, I]                    -> kernel [I, O]  (BEiT's fused qkv stays fused)
  BatchNorm weight/bias/running_mean/var  -> params scale/bias, batch_stats mean/var
  LayerNorm weight/bias                   -> scale/bias
  BEiT relative_position_bias_table       -> resized to the model's patch grid
  RGB stem conv1 [O, 3, 7, 7]             -> [O, 6, 7, 7] duplicated and halved (pose pairs)
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from avs_jax.errors import InputError

StateDict = dict[str, np.ndarray]
Variables = dict[str, Any]


class WeightImportError(InputError, ValueError):
    """A state dict does not fit the model: names the missing, unexpected and misshaped keys."""


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------

# safetensors dtype names -> numpy dtypes (bfloat16 is widened to float32 on read).
_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


def read_safetensors(path: str | Path) -> StateDict:
    """Reads a `.safetensors` file into numpy arrays (no torch, no `safetensors` package).

    Format: 8-byte little-endian header length N, N bytes of JSON header
    `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`, then the
    raw little-endian buffer that the offsets index.
    """
    path = Path(path)
    # Memory-mapped: a 1.3 GB BEiT-L file is not held twice.
    raw = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else b""
    if len(raw) < 8:
        raise WeightImportError(f"{path}: too short to be a safetensors file ({len(raw)} bytes)")
    (n,) = struct.unpack("<Q", bytes(raw[:8]))
    if 8 + n > len(raw):
        raise WeightImportError(f"{path}: header length {n} runs past the end of the file")
    try:
        header = json.loads(bytes(raw[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightImportError(f"{path}: header is not JSON ({e})") from e
    buffer = raw[8 + n:]
    out: StateDict = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(buffer):
            raise WeightImportError(f"{path}: tensor {name!r} lies outside the file")
        chunk = buffer[begin:end]
        if dtype == "BF16":
            # bfloat16 is the top half of a float32.
            u16 = chunk.view("<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        elif dtype in _ST_DTYPES:
            arr = chunk.view(np.dtype(_ST_DTYPES[dtype]).newbyteorder("<"))
        else:
            raise WeightImportError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        shape = tuple(info["shape"])
        if arr.size != int(np.prod(shape)):
            raise WeightImportError(f"{path}: tensor {name!r} has {arr.size} values for shape "
                                    f"{shape}")
        out[name] = np.array(arr.reshape(shape), dtype=arr.dtype.newbyteorder("="))
    return out


def write_safetensors(path: str | Path, tensors: Mapping[str, np.ndarray]) -> None:
    """Writes numpy arrays as a `.safetensors` file (the inverse of `read_safetensors`)."""
    header: dict[str, Any] = {}
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _ST_NAMES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header).encode("utf-8")
    head += b" " * (-len(head) % 8)  # the format pads the header to 8-byte alignment
    Path(path).write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def read_npz(path: str | Path) -> StateDict:
    """Reads a state dict saved with `np.savez` (keys are the PyTorch names)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def read_torch(path: str | Path) -> StateDict:
    """Reads a `.pth`/`.pt` state dict through torch (imported here only: torch is optional)."""
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise WeightImportError(
            f"{path}: reading .pth/.pt files needs PyTorch, which is not installed. Convert the "
            "file to .safetensors or .npz on a machine with torch (e.g. "
            "`np.savez(out, **{k: v.numpy() for k, v in sd.items()})`), or install torch."
        ) from e
    try:
        # weights_only: a checkpoint is data; never run the code a pickle may carry.
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pylint: disable=broad-except  (torch raises several kinds)
        raise WeightImportError(
            f"{path}: torch.load(weights_only=True) failed ({type(e).__name__}: {e}). If you "
            "trust the file, load it yourself and save its state dict as .npz or .safetensors."
        ) from e
    # Checkpoints wrap the state dict in various ways; unwrap the common ones.
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    out: StateDict = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.detach().float().numpy() if v.is_floating_point() else v.numpy()
        elif isinstance(v, (int, float, bool)):
            # Monodepth2's encoder.pth stores its training height/width/use_stereo beside the
            # weights; kept as 0-d arrays so they are reported as skipped, not lost silently.
            out[k] = np.asarray(v)
    return out


def read_state_dict(path: str | Path) -> StateDict:
    """Reads a state dict from `.safetensors`, `.npz` or (with torch) `.pth`/`.pt`/`.bin`/`.ckpt`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightImportError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return read_safetensors(path)
    if suffix == ".npz":
        return read_npz(path)
    if suffix in (".pth", ".pt", ".bin", ".ckpt"):
        return read_torch(path)
    raise WeightImportError(f"{path}: unknown weight format {suffix!r}; expected .safetensors, "
                            ".npz, .pth or .pt")


# --------------------------------------------------------------------------------------------
# Layout conversions
# --------------------------------------------------------------------------------------------

def conv_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch Conv2d weight [O, I, kh, kw] -> Flax/lax HWIO kernel [kh, kw, I, O]."""
    return np.transpose(w, (2, 3, 1, 0))


def conv_transpose_kernel(w: np.ndarray, transpose_kernel: bool = False) -> np.ndarray:
    """PyTorch ConvTranspose2d weight [I, O, kh, kw] -> kernel of `flax.linen.ConvTranspose`.

    PyTorch's transposed convolution is the gradient of a convolution: with a dilated input it
    correlates with the spatially flipped kernel. Flax's `ConvTranspose(transpose_kernel=False)`
    correlates the dilated input with the kernel as stored (no flip) and stores [kh, kw, I, O],
    so the kernel is flipped here. With `transpose_kernel=True` Flax flips and swaps I/O itself
    and stores [kh, kw, O, I]. PyTorch `padding=p, output_padding=q` corresponds to Flax explicit
    padding `((k-1-p, k-1-p+q), ...)` in both cases (tests/test_import_weights.py).
    """
    if transpose_kernel:
        return np.transpose(w, (2, 3, 1, 0))
    return np.ascontiguousarray(np.transpose(w, (2, 3, 0, 1))[::-1, ::-1])


def linear_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch Linear weight [O, I] -> Flax Dense kernel [I, O]."""
    return np.transpose(w)


def split_qkv(w: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits a fused attention qkv weight ([3·D, D] Linear or [3·D] bias) into q, k, v."""
    return tuple(np.split(w, 3, axis=axis))  # type: ignore[return-value]


def qkv_bias(q_bias: np.ndarray, v_bias: np.ndarray) -> np.ndarray:
    """BEiT's qkv bias [3·D]: separate q and v biases, the key has none (zeros)."""
    return np.concatenate([q_bias, np.zeros_like(q_bias), v_bias])


def adapt_input_channels(w: np.ndarray, in_channels: int) -> np.ndarray:
    """Stem conv weight [O, 3, kh, kw] (RGB) -> [O, in_channels, kh, kw].

    For a multiple of 3 (Monodepth2's pose encoder on a pair of frames, 6 channels) the RGB
    weights are duplicated and divided by the number of frames, so the conv on
    `[img, img]` equals the RGB conv on `img` (REFERENCE.md, Monodepth2). Otherwise (the 2-channel
    echo STFT) each channel gets the sum of the RGB weights divided by `in_channels`, so an input
    equal on every channel gives the response of the grey image with that value.
    """
    if w.shape[1] == in_channels:
        return w
    if w.shape[1] != 3:
        raise WeightImportError(f"stem conv has {w.shape[1]} input channels; can only adapt 3 "
                                f"-> {in_channels}")
    if in_channels % 3 == 0:
        n = in_channels // 3
        return np.concatenate([w] * n, axis=1) / n
    return np.repeat(w.sum(axis=1, keepdims=True), in_channels, axis=1) / in_channels


def _resize_axis_half_pixel(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Linear resize of one axis with PyTorch's align_corners=False convention."""
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = np.maximum(pos, 0.0)
    lo = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (pos - lo).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac


def interpolate_rel_pos_table(table: np.ndarray, old_grid: tuple[int, int],
                              new_grid: tuple[int, int], num_extra: int = 3) -> np.ndarray:
    """BEiT relative-position bias table for another patch grid.

    `table` is [(2·Wh−1)·(2·Ww−1) + num_extra, heads]: one bias per relative offset of the
    `old_grid` (Wh, Ww) patches, then the cls-to-token, token-to-cls and cls-to-cls entries. The
    offset part is resized bilinearly (align_corners=False, as MiDaS's BEiT does at run time when
    the input is not 384×384) to the (2·Wh'−1)·(2·Ww'−1) offsets of `new_grid`; the extra entries
    are kept.
    """
    oh, ow = 2 * old_grid[0] - 1, 2 * old_grid[1] - 1
    nh, nw = 2 * new_grid[0] - 1, 2 * new_grid[1] - 1
    if table.shape[0] != oh * ow + num_extra:
        raise WeightImportError(f"relative position table has {table.shape[0]} rows, expected "
                                f"{oh * ow + num_extra} for a {old_grid} patch grid")
    grid = table[:oh * ow].reshape(oh, ow, -1).astype(np.float64)
    grid = _resize_axis_half_pixel(_resize_axis_half_pixel(grid, nh, 0), nw, 1)
    return np.concatenate([grid.reshape(nh * nw, -1), table[oh * ow:]], 0).astype(table.dtype)


# --------------------------------------------------------------------------------------------
# Name mapping and strict accounting
# --------------------------------------------------------------------------------------------

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


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, v in flat.items():
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return out


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


def map_state_dict(state_dict: Mapping[str, np.ndarray], template: Mapping[str, Any],
                   rules: Sequence[Rule], skip: Iterable[str] = (),
                   transforms: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
                   what: str = "state dict") -> tuple[Variables, list[str]]:
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
    flat = _flatten(template)
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
            shapes.append(f"{key}: {tuple(np.asarray(state_dict[key]).shape)} converts to "
                          f"{tuple(arr.shape)}, but {'/'.join(path)} has shape {want}")
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
    return _unflatten(out), skipped


def strip_prefix(state_dict: Mapping[str, np.ndarray], prefix: str) -> StateDict:
    """Keeps the keys under `prefix` (e.g. "module." of DataParallel checkpoints) without it."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def add_prefix(state_dict: Mapping[str, np.ndarray], prefix: str) -> StateDict:
    """Puts every key under `prefix` (to combine several files into one namespace)."""
    return {prefix + k: v for k, v in state_dict.items()}


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------

# torchvision ResNet-18 <-> avs_jax.models.resnet.ResNet18 (module names follow torchvision).
RESNET18_RULES = (
    Rule(r"conv1", "conv1"),
    Rule(r"bn1", "bn1"),
    Rule(r"layer(\d+)_(\d+)/downsample_conv", r"layer\1.\2.downsample.0"),
    Rule(r"layer(\d+)_(\d+)/downsample_bn", r"layer\1.\2.downsample.1"),
    Rule(r"layer(\d+)_(\d+)/(\w+)", r"layer\1.\2.\3"),
)
# The ImageNet classifier is not part of the feature extractor.
RESNET18_SKIP = (r"fc\..*",)


def prefixed_rules(rules: Sequence[Rule], flax_prefix: str, torch_prefix: str) -> tuple[Rule, ...]:
    """The same rules for a submodule: Flax path under `flax_prefix/`, PyTorch keys under
    `torch_prefix.` (the prefixes add no regex groups, so backreferences keep their numbers)."""
    out = []
    for r in rules:
        if callable(r.torch):
            torch = (lambda m, f=r.torch: f"{torch_prefix}.{f(m)}") if torch_prefix else r.torch
        else:
            torch = f"{torch_prefix}.{r.torch}" if torch_prefix else r.torch
        out.append(Rule(f"{re.escape(flax_prefix)}/{r.pattern}" if flax_prefix else r.pattern,
                        torch, r.kind))
    return tuple(out)


def import_resnet18(state_dict: Mapping[str, np.ndarray], template: Variables,
                    what: str = "resnet18") -> tuple[Variables, list[str]]:
    """torchvision ResNet-18 state dict -> ResNet18 variables (fc skipped; stem adapted to the
    template's input channels with `adapt_input_channels`)."""
    in_channels = template["params"]["conv1"]["kernel"].shape[2]
    return map_state_dict(state_dict, template, RESNET18_RULES, RESNET18_SKIP,
                          {"conv1.weight": lambda w: adapt_input_channels(w, in_channels)}, what)


# Monodepth2 (nianticlabs) released files: encoder.pth / pose_encoder.pth hold a ResnetEncoder
# (keys "encoder.<torchvision name>", plus the training "height", "width", "use_stereo"), depth.pth
# a DepthDecoder whose modules sit in one nn.ModuleList "decoder" in the insertion order of its
# OrderedDict: ("upconv", i, 0), ("upconv", i, 1) for i = L-1 … 0, then ("dispconv", s) for each
# scale; pose.pth a PoseDecoder with ModuleList "net" = [squeeze, pose 0, pose 1, pose 2].
# ConvBlock = Conv3x3 (pad + "conv") + ELU, so an upconv's weight is "decoder.N.conv.conv.weight"
# and a dispconv's (a bare Conv3x3) "decoder.N.conv.weight".
MONODEPTH2_SKIP = (r"encoder\.fc\..*", r"height", r"width", r"use_stereo")


def monodepth2_depth_rules(num_levels: int, scales: Sequence[int]) -> tuple[Rule, ...]:
    """Rules from avs_jax.models.depthnet.DepthNet to Monodepth2's encoder.pth + depth.pth keys."""
    scales = sorted(scales)

    def upconv(m: re.Match) -> str:
        i, j = int(m.group(1)), int(m.group(2))
        return f"decoder.{2 * (num_levels - 1 - i) + j}.conv.conv"

    def dispconv(m: re.Match) -> str:
        return f"decoder.{2 * num_levels + scales.index(int(m.group(1)))}.conv"

    return prefixed_rules(RESNET18_RULES, "encoder", "encoder") + (
        Rule(r"decoder/upconv_(\d+)_(\d+)/conv", upconv),
        Rule(r"decoder/dispconv_(\d+)", dispconv),
    )


MONODEPTH2_POSE_RULES = prefixed_rules(RESNET18_RULES, "encoder", "encoder") + (
    Rule(r"decoder/squeeze", "net.0"),
    Rule(r"decoder/pose_(\d)", lambda m: f"net.{int(m.group(1)) + 1}"),
)


def import_monodepth2_depth(encoder_sd: Mapping[str, np.ndarray],
                            depth_sd: Mapping[str, np.ndarray], template: Variables,
                            what: str = "monodepth2 encoder.pth + depth.pth"
                            ) -> tuple[Variables, list[str]]:
    """Monodepth2 encoder.pth + depth.pth -> avs_jax.models.depthnet.DepthNet variables.

    The two files do not share key prefixes ("encoder." vs "decoder."), so they are read as one
    state dict. The scales and the number of decoder levels come from the template.
    """
    dec = template["params"]["decoder"]
    num_levels = sum(1 for k in dec if re.fullmatch(r"upconv_\d+_0", k))
    scales = [int(k.split("_")[1]) for k in dec if k.startswith("dispconv_")]
    in_channels = template["params"]["encoder"]["conv1"]["kernel"].shape[2]
    sd = {**encoder_sd, **depth_sd}
    return map_state_dict(sd, template, monodepth2_depth_rules(num_levels, scales),
                          MONODEPTH2_SKIP,
                          {"encoder.conv1.weight": lambda w: adapt_input_channels(w, in_channels)},
                          what)


def import_monodepth2_pose(encoder_sd: Mapping[str, np.ndarray], pose_sd: Mapping[str, np.ndarray],
                           template: Variables,
                           what: str = "monodepth2 pose_encoder.pth + pose.pth"
                           ) -> tuple[Variables, list[str]]:
    """Monodepth2 pose_encoder.pth + pose.pth -> avs_jax.models.posenet.PoseNet variables.

    The released pose encoder already has the 6-channel stem; an ImageNet ResNet-18 file in its
    place gets the duplicated-and-halved stem (`adapt_input_channels`).
    """
    in_channels = template["params"]["encoder"]["conv1"]["kernel"].shape[2]
    sd = {**encoder_sd, **pose_sd}
    return map_state_dict(sd, template, MONODEPTH2_POSE_RULES, MONODEPTH2_SKIP,
                          {"encoder.conv1.weight": lambda w: adapt_input_channels(w, in_channels)},
                          what)


# MiDaS v3.1 DPT (isl-org/MiDaS, BEiT backbones) <-> avs_jax.models.midas.MiDaS. Upstream:
# `pretrained.model` is timm's Beit; `pretrained.act_postprocessK` a Sequential [readout,
# Transpose, Unflatten, 1x1 conv, resample] (readout "project" = Sequential(Linear, GELU));
# `scratch.layerK_rn`, `scratch.refinenetK` (resConfUnit1/2 with conv1/conv2, out_conv) and
# the head `scratch.output_conv` = [conv3x3, Interpolate, conv3x3, ReLU, conv1x1, ReLU, Id].
MIDAS_DPT_RULES = (
    Rule(r"encoder/patch_embed", "pretrained.model.patch_embed.proj"),
    Rule(r"encoder", "pretrained.model"),  # cls_token (and pos_embed of ViTs)
    Rule(r"encoder/blocks_(\d+)", r"pretrained.model.blocks.\1"),  # gamma_1, gamma_2
    Rule(r"encoder/blocks_(\d+)/attn", r"pretrained.model.blocks.\1.attn"),  # q/v bias, table
    Rule(r"encoder/blocks_(\d+)/attn/(qkv|proj)", r"pretrained.model.blocks.\1.attn.\2"),
    Rule(r"encoder/blocks_(\d+)/(norm1|norm2)", r"pretrained.model.blocks.\1.\2"),
    Rule(r"encoder/blocks_(\d+)/mlp_fc(\d)", r"pretrained.model.blocks.\1.mlp.fc\2"),
    Rule(r"encoder/act_postprocess(\d)/readout_project",
         r"pretrained.act_postprocess\1.0.project.0"),
    Rule(r"encoder/act_postprocess(\d)/conv1x1", r"pretrained.act_postprocess\1.3"),
    Rule(r"encoder/act_postprocess([12])/resample", r"pretrained.act_postprocess\1.4",
         "conv_transpose_scatter"),
    Rule(r"encoder/act_postprocess(\d)/resample", r"pretrained.act_postprocess\1.4"),
    Rule(r"(layer\d_rn)", r"scratch.\1"),
    Rule(r"(refinenet\d)/(resConfUnit\d)/(conv\d)", r"scratch.\1.\2.\3"),
    Rule(r"(refinenet\d)/out_conv", r"scratch.\1.out_conv"),
    Rule(r"head_conv1", "scratch.output_conv.0"),
    Rule(r"head_conv2", "scratch.output_conv.2"),
    Rule(r"head_conv3", "scratch.output_conv.4"),
)
# Not used by DPT's forward: the classifier side of timm's Beit, the index buffers (recomputed
# by the model), and refinenet4's first residual unit (refinenet4 gets no skip input).
MIDAS_DPT_SKIP = (r"pretrained\.model\.(norm|fc_norm|head)\..*", r".*relative_position_index",
                  r".*k_bias", r"scratch\.refinenet4\.resConfUnit1\..*")

# MiDaS's hooks per BEiT depth (midas/dpt_depth.py): BEiT-L/16 and BEiT-B/16.
MIDAS_BEIT_HOOKS = {24: (5, 11, 17, 23), 12: (2, 5, 8, 11)}


def _block_indices(state_dict: Mapping[str, np.ndarray], prefix: str) -> list[int]:
    rx = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in state_dict if (m := rx.match(k))})


def midas_config_from_state_dict(state_dict: Mapping[str, np.ndarray], image_size: Sequence[int],
                                 prefix: str = "") -> dict[str, Any]:
    """MiDaS(...) keyword arguments read off a MiDaS BEiT DPT state dict (e.g. BEiT-L/16-384:
    embed 1024, 24 blocks, 16 heads, hooks 5/11/17/23, reassemble 256/512/1024/1024)."""
    def get(key: str) -> np.ndarray:
        if prefix + key not in state_dict:
            raise WeightImportError(f"not a MiDaS BEiT DPT state dict: no {prefix + key}")
        return state_dict[prefix + key]

    embed = get("pretrained.model.patch_embed.proj.weight")
    depth = len(_block_indices(state_dict, prefix + "pretrained.model.blocks."))
    if depth not in MIDAS_BEIT_HOOKS:
        raise WeightImportError(f"MiDaS BEiT with {depth} blocks: known depths are "
                                f"{sorted(MIDAS_BEIT_HOOKS)}")
    return dict(
        image_size=tuple(int(v) for v in image_size), embed_dim=int(embed.shape[0]),
        depth=depth,
        num_heads=int(get("pretrained.model.blocks.0.attn.relative_position_bias_table").shape[1]),
        patch_size=int(embed.shape[2]), hooks=MIDAS_BEIT_HOOKS[depth],
        reassemble_features=tuple(int(get(f"pretrained.act_postprocess{k}.3.weight").shape[0])
                                  for k in range(1, 5)),
        features=int(get("scratch.layer1_rn.weight").shape[0]),
        head_features=int(get("scratch.output_conv.2.weight").shape[0]),
        use_rel_pos_bias=True, use_abs_pos_emb=False)


def _midas_table_transforms(state_dict: Mapping[str, np.ndarray], template_midas: Variables,
                            grid: tuple[int, int], prefix: str
                            ) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Relative-position tables resized from the checkpoint's square grid to the model's grid."""
    out = {}
    for name, sub in template_midas["params"]["encoder"].items():
        if not name.startswith("blocks_") or "relative_position_bias_table" not in sub["attn"]:
            continue
        key = f"{prefix}pretrained.model.blocks.{name[7:]}.attn.relative_position_bias_table"
        if key not in state_dict:
            continue  # reported as missing by map_state_dict
        rows = state_dict[key].shape[0]
        n = int(round(np.sqrt(rows - 3)))  # 2·g − 1 offsets per axis
        if n * n != rows - 3 or n % 2 == 0:
            raise WeightImportError(f"{key}: {rows} rows is not the table of a square patch grid")
        old = ((n + 1) // 2, (n + 1) // 2)
        out[key] = lambda t, old=old: interpolate_rel_pos_table(t, old, grid)
    return out


def import_midas_dpt(state_dict: Mapping[str, np.ndarray], template: Variables,
                     grid: tuple[int, int], prefix: str = "", flax_prefix: str = "",
                     extra_rules: Sequence[Rule] = (), extra_skip: Sequence[str] = (),
                     what: str = "midas_dpt") -> tuple[Variables, list[str]]:
    """MiDaS BEiT DPT state dict -> avs_jax.models.midas.MiDaS variables.

    Args:
      grid: the model's patch grid (image_size // patch_size); each block's relative-position
        table is resized to it from the checkpoint's (square) grid as MiDaS does at run time.
      prefix: PyTorch prefix of the DPT ("core.core." inside a ZoeDepth checkpoint).
      flax_prefix: Flax path of the MiDaS module inside `template` ("midas" in AVSNet).
      extra_rules / extra_skip: more rules and skips for what surrounds the DPT (ZoeDepth).
    Blocks after the last hook (they do not reach DPT's output) are reported as skipped.
    """
    sub = template if not flax_prefix else {
        c: _get_path(template[c], flax_prefix.split("/")) for c in ("params",)}
    n_blocks = sum(1 for k in sub["params"]["encoder"] if k.startswith("blocks_"))
    unused = [i for i in _block_indices(state_dict, prefix + "pretrained.model.blocks.")
              if i >= n_blocks]
    skip = [re.escape(prefix) + s for s in MIDAS_DPT_SKIP]
    skip += [re.escape(f"{prefix}pretrained.model.blocks.{i}.") + ".*" for i in unused]
    rules = prefixed_rules(MIDAS_DPT_RULES, flax_prefix, prefix.rstrip("."))
    return map_state_dict(state_dict, template, (*rules, *extra_rules), (*skip, *extra_skip),
                          _midas_table_transforms(state_dict, sub, tuple(grid), prefix), what)


# ZoeDepth v1 (isl-org/ZoeDepth zoedepth_v1.py) <-> avs_jax.models.avsnet.AVSNet, variant "rgb"
# (the Only-RGB row). Upstream: the DPT under "core.core."; `conv2` on the bottleneck; every
# head MLP is a Sequential [conv, act, conv(, act)] ("_net" in the seed regressor, projectors and
# attractors, "mlp" in the conditional log-binomial), so conv1 -> index 0, conv2 -> index 2.
def _mlp_index(m: re.Match) -> str:
    return {"1": "0", "2": "2"}[m.group(m.lastindex)]


ZOEDEPTH_HEAD_RULES = (
    Rule(r"conv2", "conv2"),
    Rule(r"metric_bins/(seed_bin_regressor|seed_projector)/conv(\d)",
         lambda m: f"{m.group(1)}._net.{_mlp_index(m)}"),
    Rule(r"metric_bins/(projectors|attractors)_(\d+)/conv(\d)",
         lambda m: f"{m.group(1)}.{m.group(2)}._net.{_mlp_index(m)}"),
    Rule(r"metric_bins/conditional_log_binomial/conv(\d)",
         lambda m: f"conditional_log_binomial.mlp.{_mlp_index(m)}"),
)
# LogBinomial's constant buffers (bin indices, K - 1): recomputed by the model.
ZOEDEPTH_SKIP = (r"conditional_log_binomial\.log_binomial_transform\.(k_idx|K_minus_1)",)


def import_zoedepth(state_dict: Mapping[str, np.ndarray], template: Variables,
                    grid: tuple[int, int], what: str = "zoedepth") -> tuple[Variables, list[str]]:
    """ZoeDepth (N) checkpoint -> AVSNet variables of the "rgb" variant (MiDaS at "midas",
    `conv2`, the metric-bins head at "metric_bins"). `grid` as in `import_midas_dpt`.

    To start AVS-Net ("rgb_echoes") from it, merge the three subtrees:
    `for name in ("midas", "conv2", "metric_bins"): v = merge_pretrained(v, subtree(zoe, name),
    name)`; the echo encoder and the cross-attention keep their own initialisation.
    """
    sd = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state_dict.items()}
    return import_midas_dpt(sd, template, grid, prefix="core.core.", flax_prefix="midas",
                            extra_rules=ZOEDEPTH_HEAD_RULES, extra_skip=ZOEDEPTH_SKIP, what=what)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

def save_pretrained(path: str | Path, variables: Variables,
                    metadata: Mapping[str, Any] | None = None) -> Path:
    """Writes `{"params", "batch_stats"}` as an orbax checkpoint at `path` (+ `import.json`)."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = {"params": variables.get("params", {}), "batch_stats": variables.get("batch_stats", {})}
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path / "state", tree, force=True)
    (path / "import.json").write_text(json.dumps(dict(metadata or {}), indent=1, default=str))
    return path


def load_pretrained(path: str | Path) -> Variables:
    """Reads a checkpoint written by `save_pretrained` -> {"params": ..., "batch_stats": ...}."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    path = Path(path).absolute()
    state = path / "state"
    if not state.exists():
        raise WeightImportError(f"{path}: not a pretrained-weights checkpoint (no 'state' inside; "
                                "write one with `python -m avs_jax.import_weights`)")
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(state)
    return {"params": tree.get("params") or {}, "batch_stats": tree.get("batch_stats") or {}}


def _get_path(tree: Mapping[str, Any], path: Sequence[str]) -> Any:
    node = tree
    for k in path:
        if not isinstance(node, Mapping) or k not in node:
            return None
        node = node[k]
    return node


def subtree(pretrained: Variables, prefix: str | Sequence[str]) -> Variables:
    """The part of imported variables under `prefix` (every collection that has it)."""
    path = tuple(p for p in prefix.split("/") if p) if isinstance(prefix, str) else tuple(prefix)
    out = {}
    for collection, tree in pretrained.items():
        node = _get_path(tree, path) if tree else None
        if node is not None:
            out[collection] = node
    if not out:
        raise WeightImportError(f"pretrained variables have nothing under {'/'.join(path)!r}")
    return out


def merge_pretrained(variables: Variables, pretrained: Variables,
                     prefix: str | Sequence[str] = ()) -> Variables:
    """Puts an imported subtree at `prefix` (e.g. "encoder" or ("depth", "encoder")) of `variables`.

    Every collection of `pretrained` (params, batch_stats) replaces the subtree at the same
    path in `variables`; the two subtrees must have the same leaves with the same shapes (a
    mismatch raises, naming the leaves). Returns a new dict; `variables` is not modified.
    """
    if isinstance(prefix, str):
        prefix = tuple(p for p in prefix.split("/") if p)
    prefix = tuple(prefix)
    # A fresh dict at every level, so the caller's (possibly frozen) variables stay untouched.
    out = {c: (_unflatten(_flatten(v)) if isinstance(v, Mapping) else v)
           for c, v in variables.items()}
    for collection, sub in pretrained.items():
        if not sub:
            continue
        where = "/".join((collection,) + prefix)
        target = _get_path(out, (collection,) + prefix)
        if target is None:
            raise WeightImportError(f"merge_pretrained: the model has no {where!r}")
        have, new = _flatten(target), _flatten(sub)
        problems = [f"missing in pretrained: {'/'.join(k)}" for k in have if k not in new]
        problems += [f"not in the model: {'/'.join(k)}" for k in new if k not in have]
        problems += [f"{'/'.join(k)}: pretrained {tuple(np.shape(new[k]))} vs model "
                     f"{tuple(np.shape(have[k]))}" for k in have
                     if k in new and tuple(np.shape(new[k])) != tuple(np.shape(have[k]))]
        if problems:
            raise WeightImportError(f"merge_pretrained at {where}:\n  " + "\n  ".join(problems))
        node = out[collection]
        for k in prefix[:-1]:
            node = node[k]
        # Keep the model's dtypes (e.g. float32 params even if the file held float16).
        converted = _unflatten({k: np.asarray(v).astype(have[k].dtype) for k, v in new.items()})
        if prefix:
            node[prefix[-1]] = converted
        else:
            out[collection] = converted
    return out


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def model_template(model: Any, *inputs: Any, **kwargs: Any) -> Variables:
    """Shapes of a Flax model's variables (no computation): the target of `map_state_dict`."""
    import jax  # pylint: disable=import-outside-toplevel

    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs, **kwargs))
    return {k: v for k, v in variables.items() if k in ("params", "batch_stats")}


def _cli_resnet18(paths: Sequence[Path], args: Any) -> tuple[Variables, list[str]]:
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    from avs_jax.models.resnet import ResNet18  # pylint: disable=import-outside-toplevel

    if len(paths) != 1:
        raise WeightImportError(f"--source=resnet18 takes one file, got {len(paths)}")
    widths = tuple(int(w) for w in args.widths.split(","))
    template = model_template(ResNet18(widths=widths), jnp.zeros((1, 64, 64, args.in_channels)),
                              train=False)
    return import_resnet18(read_state_dict(paths[0]), template, str(paths[0]))


def _cli_monodepth2(paths: Sequence[Path], args: Any) -> dict[str, tuple[Variables, list[str]]]:
    """Monodepth2's released files, told apart by their names as released: encoder.pth +
    depth.pth -> OUT/depth (DepthNet), pose_encoder.pth + pose.pth -> OUT/pose (PoseNet)."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    from avs_jax.models.depthnet import DepthNet  # pylint: disable=import-outside-toplevel
    from avs_jax.models.posenet import PoseNet  # pylint: disable=import-outside-toplevel

    by_stem = {p.stem: p for p in paths}
    unknown = set(by_stem) - {"encoder", "depth", "pose_encoder", "pose"}
    if unknown:
        raise WeightImportError(f"--source=monodepth2: unknown files {sorted(unknown)}; expected "
                                "encoder.*, depth.*, pose_encoder.*, pose.* (as released)")
    out = {}
    if {"encoder", "depth"} <= set(by_stem):
        template = model_template(DepthNet(), jnp.zeros((1, 64, 64, 3)), train=False)
        out["depth"] = import_monodepth2_depth(
            read_state_dict(by_stem["encoder"]), read_state_dict(by_stem["depth"]), template,
            f"{by_stem['encoder']} + {by_stem['depth']}")
    if {"pose_encoder", "pose"} <= set(by_stem):
        template = model_template(PoseNet(), jnp.zeros((1, 64, 64, 6)), train=False)
        out["pose"] = import_monodepth2_pose(
            read_state_dict(by_stem["pose_encoder"]), read_state_dict(by_stem["pose"]), template,
            f"{by_stem['pose_encoder']} + {by_stem['pose']}")
    if not out or len(out) * 2 != len(by_stem):
        raise WeightImportError("--source=monodepth2 needs encoder + depth and/or pose_encoder + "
                                f"pose files, got {sorted(by_stem)}")
    return out


def _image_size(args: Any) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in args.image_size.split(","))
    except ValueError as e:
        raise WeightImportError(f"--image_size={args.image_size!r}: expected H,W") from e
    return h, w


def _cli_midas_dpt(paths: Sequence[Path], args: Any) -> tuple[Variables, list[str]]:
    """A MiDaS v3.1 BEiT DPT file (dpt_beit_large_384.pt, dpt_beit_base_384.pt) -> MiDaS
    variables for --image_size (the model's configuration is read off the file)."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    from avs_jax.models.midas import MiDaS  # pylint: disable=import-outside-toplevel

    if len(paths) != 1:
        raise WeightImportError(f"--source=midas_dpt takes one file, got {len(paths)}")
    sd = read_state_dict(paths[0])
    kwargs = midas_config_from_state_dict(sd, _image_size(args))
    template = model_template(MiDaS(**kwargs), jnp.zeros((1, *kwargs["image_size"], 3)))
    p = kwargs["patch_size"]
    grid = (kwargs["image_size"][0] // p, kwargs["image_size"][1] // p)
    variables, skipped = import_midas_dpt(sd, template, grid, what=str(paths[0]))
    print(f"MiDaS configuration read from {paths[0]}: {kwargs}")
    return variables, skipped


def zoedepth_config_from_state_dict(state_dict: Mapping[str, np.ndarray],
                                    image_size: Sequence[int],
                                    bin_centers_type: str = "softplus") -> Any:
    """`config.model` (avs_jax.models.avsnet, variant "rgb") matching a ZoeDepth checkpoint.

    Shapes give every width; `bin_centers_type` cannot be read off them ("softplus" for
    ZoeD_M12_N, "normed" for ZoeD_M12_K, whose attractors predict 2 channels per attractor).
    The depth range and the attractor settings are configuration, not weights.
    """
    from avs_jax.models.avsnet import default_model_config  # pylint: disable=C0415

    def out_ch(key: str) -> int:
        if key not in state_dict:
            raise WeightImportError(f"not a ZoeDepth state dict: no {key}")
        return int(state_dict[key].shape[0])

    c = default_model_config("paper")
    c.variant = "rgb"
    c.midas.update(midas_config_from_state_dict(state_dict, image_size, prefix="core.core."))
    n_levels = len(_block_indices(state_dict, "attractors."))
    c.bins.n_bins = out_ch("seed_bin_regressor._net.2.weight")
    c.bins.bin_embedding_dim = out_ch("seed_projector._net.2.weight")
    c.bins.seed_mlp_dim = out_ch("seed_bin_regressor._net.0.weight")
    c.bins.mlp_dim = out_ch("projectors.0._net.0.weight")
    per_attractor = 2 if bin_centers_type == "normed" else 1
    c.bins.bin_centers_type = bin_centers_type
    c.bins.n_attractors = tuple(out_ch(f"attractors.{i}._net.2.weight") // per_attractor
                                for i in range(n_levels))
    return c


def _cli_zoedepth(paths: Sequence[Path], args: Any) -> tuple[Variables, list[str]]:
    """A ZoeDepth checkpoint (ZoeD_M12_N.pt, "softplus" bins) -> AVSNet "rgb" variables."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    from avs_jax.models.avsnet import AVSNet  # pylint: disable=import-outside-toplevel

    if len(paths) != 1:
        raise WeightImportError(f"--source=zoedepth takes one file, got {len(paths)}")
    sd = read_state_dict(paths[0])
    sd = {k[len("model."):] if k.startswith("model.") else k: v for k, v in sd.items()}
    c = zoedepth_config_from_state_dict(sd, _image_size(args), args.bin_centers_type)
    h, w = c.midas.image_size
    template = model_template(AVSNet(c), jnp.zeros((1, h, w, 3)), None, train=False)
    p = c.midas.patch_size
    print(f"ZoeDepth configuration read from {paths[0]}: midas {dict(c.midas)}, bins "
          f"{dict(c.bins)}")
    return import_zoedepth(sd, template, (h // p, w // p), what=str(paths[0]))


# Each source returns either (variables, skipped) -> one checkpoint at --out, or a dict
# {part: (variables, skipped)} -> one checkpoint per part at --out/part.
SOURCES: dict[str, Callable[[Sequence[Path], Any], Any]] = {
    "resnet18": _cli_resnet18,
    "monodepth2": _cli_monodepth2,
    "midas_dpt": _cli_midas_dpt,
    "zoedepth": _cli_zoedepth,
}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m avs_jax.import_weights --source=... --in=FILE[,FILE] --out=DIR`."""
    import argparse  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, choices=sorted(_all_sources()))
    parser.add_argument("--in", dest="inputs", required=True,
                        help="weight file(s), comma separated (.safetensors, .npz, .pth/.pt)")
    parser.add_argument("--out", required=True, help="directory of the orbax checkpoint")
    parser.add_argument("--in_channels", type=int, default=3,
                        help="resnet18: input channels of the stem (6: pose pair, 2: echo)")
    parser.add_argument("--widths", default="64,64,128,256,512",
                        help="resnet18: stem and stage widths (ResNet-18's by default)")
    parser.add_argument("--image_size", default="256,512",
                        help="midas_dpt/zoedepth: H,W the model runs at (the BEiT position "
                             "tables are resized to its patch grid); 256,512 is the paper's")
    parser.add_argument("--bin_centers_type", default="softplus", choices=("softplus", "normed"),
                        help="zoedepth: softplus (ZoeD_M12_N) or normed (ZoeD_M12_K)")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.inputs.split(",") if p]
    try:
        result = _all_sources()[args.source](paths, args)
    except WeightImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    parts = result if isinstance(result, dict) else {"": result}
    for part, (variables, skipped) in parts.items():
        n = sum(int(np.prod(np.shape(v))) for v in _flatten(variables).values())
        out = save_pretrained(Path(args.out) / part if part else args.out, variables, {
            "source": args.source, "part": part, "inputs": [str(p) for p in paths],
            "skipped": skipped, "num_values": n})
        counters = [k for k in skipped if k.endswith("num_batches_tracked")]
        shown = [k for k in skipped if k not in counters]
        if counters:
            shown.append(f"{len(counters)} BatchNorm step counters")
        print(f"wrote {out} ({n} values); intentionally skipped: "
              f"{', '.join(shown) or 'nothing'}")
    return 0


def _all_sources() -> dict[str, Callable[[Sequence[Path], Any], Any]]:
    return SOURCES


if __name__ == "__main__":
    sys.exit(main())
