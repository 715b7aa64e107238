"""State dict readers: `.safetensors` and `.npz` without PyTorch, `.pth`/`.pt` through it."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from absl import logging

from avs_jax.import_weights.errors import WeightImportError

StateDict = dict[str, np.ndarray]

# safetensors dtype names -> numpy dtypes (bfloat16 is widened to float32 on read).
_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
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
        header = json.loads(bytes(raw[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightImportError(f"{path}: header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise WeightImportError(f"{path}: header is not a JSON object of tensors")
    buffer = raw[8 + n :]
    out: StateDict = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= set(info)):
            raise WeightImportError(
                f"{path}: tensor {name!r} lacks dtype, shape or data_offsets in the header"
            )
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
            raise WeightImportError(
                f"{path}: tensor {name!r} has {arr.size} values for shape {shape}"
            )
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
        header[name] = {
            "dtype": _ST_NAMES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header).encode("utf-8")
    head += b" " * (-len(head) % 8)  # the format pads the header to 8-byte alignment
    Path(path).write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def read_npz(path: str | Path) -> StateDict:
    """Reads a state dict saved with `np.savez` (keys are the PyTorch names)."""
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy's reasons for a file that is not an .npz vary
        raise WeightImportError(
            f"{path}: not a readable .npz file ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise WeightImportError(f"{path}: a single array, not an .npz of named tensors")
    with f:
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
    if not isinstance(obj, Mapping):
        raise WeightImportError(
            f"{path}: holds a {type(obj).__name__}, not a state dict (a mapping of names to "
            "tensors)"
        )
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
    """Reads a state dict from `.safetensors`, `.npz` or (with torch) `.pth`/`.pt`/`.bin`/`.ckpt`."""
    path = Path(path)
    if not path.is_file():
        raise WeightImportError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        state = read_safetensors(path)
    elif suffix == ".npz":
        state = read_npz(path)
    elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
        state = read_torch(path)
    else:
        raise WeightImportError(
            f"{path}: unknown weight format {suffix!r}; expected .safetensors, .npz, .pth or .pt"
        )
    return strip_data_parallel(state, path)


def strip_data_parallel(state: StateDict, path: str | Path) -> StateDict:
    """A model saved inside torch's DataParallel has every key under "module."; without it
    (ZoeDepth's own loader strips it too). Said in the log."""
    prefix = "module."
    if state and all(k.startswith(prefix) for k in state):
        logging.info("%s: every key starts with %r (DataParallel): prefix removed", path, prefix)
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state
