"""Opens the TFDS BatVision dataset a config names, building it first when it can."""

from __future__ import annotations

import os

import ml_collections

from avs_jax.errors import InputError


class DatasetNotFoundError(InputError, FileNotFoundError):
    """The dataset is not built and there is no BatVision root to build it from."""


def open_dataset(data: ml_collections.ConfigDict, name: str | None = None):
    """The prepared TFDS builder of `data.name` (or `name`) in `data.data_dir`.

    Built from `data.manual_dir` (a BatVision root) when not built yet; an error says what to
    run when neither exists.
    """
    from tfds_batvision.batvision import Batvision
    from tfds_batvision.build import build_dataset

    name = name or data.name
    builder = Batvision(config=name, data_dir=data.data_dir, file_format="array_record")
    if builder.is_prepared():
        return builder
    if not data.get("manual_dir"):
        raise DatasetNotFoundError(
            f"dataset batvision/{name} is not built in {os.path.abspath(data.data_dir)} and "
            "config.data.manual_dir is empty: build it with `python -m tfds_batvision.build "
            f"--config={name} --manual_dir=<BatVision root> --data_dir={data.data_dir}` or set "
            "--config.data.manual_dir"
        )
    return build_dataset(name, data.manual_dir, data.data_dir)


def split_size(builder, split: str) -> int:
    """Examples in `split` (0 when the split is absent: TFDS stores no empty split)."""
    from tfds_batvision.batvision import split_size as _split_size

    return _split_size(builder, split)
