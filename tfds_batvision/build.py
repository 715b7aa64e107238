"""Builds a BatVision TFDS dataset without TensorFlow: ``python -m tfds_batvision.build``.

  python -m tfds_batvision.build --config=bv2 --manual_dir=DIR --data_dir=DIR [--skip_bad]
      [--image_size=256,512]

Writes ``array_record`` files under ``DATA_DIR/batvision/<config>/<version>/``; with
``--image_size=H,W`` the config is ``<config>_<H>x<W>`` (images stored as pixels at that size,
``batvision.py``), beside the full-resolution one in the same data dir. TFDS writes into
an ``incomplete.*`` folder and renames it on success, so a failed build leaves nothing that a later
read takes as complete. Progress is shown by TFDS's tqdm bars. A bad file stops the build with one
line naming it and what is wrong (exit status 1); ``--skip_bad`` skips its sample and reports it.
A split CSV that is not UTF-8 or lists one sample twice with different values stops the build
even with ``--skip_bad``; an exact repeat of a row is dropped with a warning (``batvision.py``).
"""

from __future__ import annotations

import os
import sys

import tensorflow_datasets as tfds
from absl import app, flags, logging

from tfds_batvision import stored
from tfds_batvision.batvision import Batvision
from tfds_batvision.validate import BadFileError

CONFIGS = stored.BASE_CONFIGS


def build_dataset(
    config_name: str,
    manual_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    skip_bad: bool = False,
    overwrite: bool = False,
    image_size: tuple[int, ...] = (),
) -> Batvision:
    """Builds (or reuses) the ``config_name`` dataset from the BatVision root ``manual_dir``.

    ``config_name``: bv2, bv1, bv1_triples, or one with a stored size (bv2_256x512);
    ``image_size`` (H, W) names the latter from the former. Returns the prepared builder: read
    with ``builder.as_data_source(split)``. ``builder.skipped`` lists (file, problem) of samples
    skipped with ``skip_bad``. ``overwrite`` rebuilds even when a complete dataset already exists
    in ``data_dir``.
    """
    base, size = stored.parse_config_name(config_name)
    if image_size:
        if size and tuple(size) != tuple(image_size):
            raise ValueError(f"config {config_name!r} and image_size {tuple(image_size)} differ")
        config_name = stored.config_name(base, image_size)
    builder = Batvision(
        config=config_name,
        data_dir=os.fspath(data_dir),
        skip_bad=skip_bad,
        file_format="array_record",
    )
    mode = (
        tfds.download.GenerateMode.FORCE_REDOWNLOAD
        if overwrite
        else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    )
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=os.fspath(manual_dir), download_mode=mode
            )
        )
    except AssertionError as e:
        if "Manual directory" in str(e):  # TFDS's check, met only when there is something to build
            raise BadFileError(
                manual_dir,
                "does not exist or is empty: pass the BatVision root (BV2: "
                "the folder of the location folders; BV1: the folder of train.csv)",
            ) from e
        # TFDS cannot write a split without examples: here every sample of a split was skipped.
        if "No examples were yielded" not in str(e):
            raise
        raise BadFileError(
            manual_dir,
            "a split has no valid samples left after --skip_bad; skipped: "
            + "; ".join(f"{p}: {why}" for p, why in builder.skipped),
        ) from e
    if stored.parse_config_name(builder.builder_config.name)[1]:
        # Raw pixels barely compress; reading them without decompressing is ~4x cheaper.
        stored.store_uncompressed(builder.data_dir)
    if builder.skipped:
        logging.warning(
            "Skipped %d bad sample(s):\n%s",
            len(builder.skipped),
            "\n".join(f"  {p}: {why}" for p, why in builder.skipped),
        )
    return builder


def _define_flags() -> None:
    """Command-line flags, defined only when run as a program (the module is also a library)."""
    flags.DEFINE_enum("config", "bv2", CONFIGS, "Which BatVision dataset to build.")
    flags.DEFINE_string("manual_dir", None, "BatVision root folder.", required=True)
    flags.DEFINE_string("data_dir", None, "TFDS data dir to write into.", required=True)
    flags.DEFINE_bool("skip_bad", False, "Skip samples with bad files and report them.")
    flags.DEFINE_bool("overwrite", False, "Rebuild even if the dataset exists.")
    flags.DEFINE_list(
        "image_size",
        [],
        "H,W: store images as pixels at this training size (config <config>_<H>x<W>); "
        "empty: the encoded files at full resolution.",
    )


def main(argv):
    del argv
    f = flags.FLAGS
    try:
        size = stored.check_size([int(v) for v in f.image_size]) if f.image_size else ()
    except ValueError:
        sys.exit(
            f"tfds_batvision.build: --image_size={','.join(f.image_size)}: expected H,W, two "
            "positive integers (e.g. 256,512)"
        )
    try:
        builder = build_dataset(
            f.config, f.manual_dir, f.data_dir, f.skip_bad, f.overwrite, image_size=size
        )
    except BadFileError as e:
        logging.debug("traceback of the error below", exc_info=True)
        sys.exit(f"tfds_batvision.build: bad BatVision input: {e}")
    sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
    print(f"Built batvision/{builder.builder_config.name} in {builder.data_dir}: {sizes}")
    for split, summary in builder.onset_stats.items():
        print(f"  {split} echo onsets: {summary}")
    if builder.skipped:
        print(f"Skipped {len(builder.skipped)} bad sample(s):")
        for path, why in builder.skipped:
            print(f"  {path}: {why}")
    return 0


if __name__ == "__main__":
    _define_flags()
    sys.exit(app.run(main))
