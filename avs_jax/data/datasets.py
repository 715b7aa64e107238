"""Opens the TFDS BatVision dataset a config names, building it first when it can."""

from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import ml_collections

from avs_jax.errors import BadInputError, InputError


class DatasetNotFoundError(InputError, FileNotFoundError):
    """The dataset is not built and there is no BatVision root to build it from."""


def dataset_name(data: ml_collections.ConfigDict, name: str | None = None) -> str:
    """The builder config `data` reads: `data.name` (or `name`), sized by `data.stored_size`.

    bv2 with stored_size (256, 512) -> bv2_256x512 (images stored as pixels at that size), which
    must then be `data.image_size`: the pipeline takes stored pixels as they are.
    """
    from tfds_batvision.stored import config_name

    name = name or data.name
    stored = tuple(data.get("stored_size") or ())
    if stored and stored != tuple(data.image_size):
        raise BadInputError(
            f"config.data.stored_size={stored} but config.data.image_size="
            f"{tuple(data.image_size)}: the stored images are used as they are, so set both to "
            "the same (H, W), or config.data.stored_size=() to read the full-resolution dataset"
        )
    return config_name(name, stored)


def open_dataset(data: ml_collections.ConfigDict, name: str | None = None):
    """The prepared TFDS builder of `data.name` (or `name`) in `data.data_dir`.

    With `data.stored_size`, the dataset of images stored at that size (`dataset_name`), beside
    the full-resolution one. Built from `data.manual_dir` (a BatVision root) when not built yet;
    an error says what to run when neither exists.
    """
    from tfds_batvision.batvision import Batvision
    from tfds_batvision.build import build_dataset
    from tfds_batvision.stored import parse_config_name

    name = dataset_name(data, name)
    builder = Batvision(config=name, data_dir=data.data_dir, file_format="array_record")
    if builder.is_prepared():
        return builder
    if not data.get("manual_dir"):
        base, size = parse_config_name(name)
        flag = f" --image_size={size[0]},{size[1]}" if size else ""
        folder = os.path.join(data.data_dir, "batvision", name)
        old = [v for v in os.listdir(folder) if v[0].isdigit()] if os.path.isdir(folder) else []
        old = f" (only version {', '.join(sorted(old))}: rebuild it)" if old else ""
        raise DatasetNotFoundError(
            f"dataset batvision/{name} is not built in {os.path.abspath(data.data_dir)}{old} and "
            "config.data.manual_dir is empty: build it with `python -m tfds_batvision.build "
            f"--config={base}{flag} --manual_dir=<BatVision root> --data_dir={data.data_dir}` or "
            "set --config.data.manual_dir"
        )
    return build_dataset(name, data.manual_dir, data.data_dir)


def split_size(builder, split: str) -> int:
    """Examples in `split` (0 when the split is absent: TFDS stores no empty split)."""
    from tfds_batvision.batvision import split_size as _split_size

    return _split_size(builder, split)


class FullDepthSource:
    """A training-size dataset's split read for evaluation: `depth` is the native-size ground
    truth `depth_full` [H0, W0], which the decode resizes by nearest neighbour to exactly the
    stored `depth` and scores at full resolution (as for a full-resolution dataset)."""

    def __init__(self, source: Sequence[dict], split: str):
        self.source = source
        self.split = split

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int) -> dict[str, Any]:
        ex = self.source[index]
        if ex["depth_full"].size == 0:
            raise BadInputError(
                f"split {self.split!r} of a training-size dataset keeps no full-resolution depth "
                "(only val and test do): evaluate on val or test, or read the full-resolution "
                "dataset (config.data.stored_size=())"
            )
        return {**ex, "depth": ex["depth_full"]}


def eval_source(builder, source: Sequence[dict], split: str) -> Sequence[dict]:
    """`source` of `builder`'s `split` for evaluation: `FullDepthSource` when it has depth_full."""
    if "depth_full" in builder.info.features:
        return FullDepthSource(source, split)
    return source
