"""Grain input pipelines for AVS-Net stage 1 (BV2/BV1 samples), the triples stage and evaluation.

Data flow: ``builder.as_data_source(split)`` -> ``grain.MapDataset.source`` -> host
shard -> map decode (JPEG with Pillow; depth cap; the echo moved to the chirp onset; BatVision STFT;
resizes: nearest for depth, bilinear for RGB and STFT) -> [in-memory cache, ``cache_decoded``] ->
shuffle(seed) -> repeat (train) -> random_map augment -> batch of ``global_batch /
process_count`` -> ``to_iter_dataset`` with read threads, ``mp_prefetch`` worker processes for
training (``num_workers=-1``: `worker_count`). Every transform is a top-level class so that
workers can pickle it. Training with ``config.device_prep`` (the default) stops the decode at
uint8 pixels (stage 1: and the waveform) and skips the augment: the train step makes the STFT
and ZoeDepth's augmentation (`avs_jax/data/device_prep.py`, `avs_jax/train/avsnet_task.py`) or
Monodepth2's (`avs_jax/data/device_triples.py`, `avs_jax/train/relative_task.py`) on the device.

Batches (dict of numpy arrays, NHWC, float32 unless noted):
  stage 1:  image [B, H, W, 3] in [0, 1]; echo [B, H, W, 2] ([left, right] STFT magnitude resized
            to (H, W)); depth [B, H, W] metres, 0 = invalid, values >= max_depth -> 0.
  stage-1 training with device_prep: image uint8 [B, H, W, 3] (the decoded 8-bit pixels, /255 on
            the device); wave [B, 2, L] ([left, right] waveform moved to the canonical onset, then
            cut to the round trip to max_depth and zero-padded to it: L = 7782 for BV2's 30 m;
            without the cut, zero-padded to L = stft.num_samples, with wave_length int32 [B], each
            recording's own length); depth as above; never augmented here.
  triples:  frames [B, 3, H, W, 3] in [0, 1] (t-20, t, t+20), un-augmented (the loss uses them);
            frames_aug (same, colour-jittered: the network inputs, Monodepth2); intrinsics
            [B, 3, 3] at (H, W); poses [B, 3, 4, 4] camera-to-world; has_pose bool [B].
  triples training with device_prep: frames uint8 [B, 3, H, W, 3], no frames_aug, the rest as
            above; never augmented here.
  eval:     the above plus sample_id (str [B]), valid_example (bool [B]; padded rows False) and,
            for samples, depth_full [B, H0, W0] at the native ground-truth resolution and focal
            [B] (the camera's focal length as a fraction of the image). Evaluation batches are
            always made on the host (stage 1: image float32 and echo).

Iterator state: the returned ``grain.DatasetIterator`` supports ``get_state``/``set_state`` and
orbax's ``grain.checkpoint.CheckpointSave(it)`` / ``CheckpointRestore(it)`` (see
``checkpoint_args``) for an exact resume: same data order and same augmentation draws (those
made on the device come from the step's key, restored with the train state).
"""

from __future__ import annotations

import os

import grain
import ml_collections
from absl import flags

from avs_jax.data import datasets
from avs_jax.data.transforms import (
    CachedMapDataset,
    DecodeSample,
    DecodeTriple,
    MonodepthAugment,
    PadBatch,
    PaddedBatches,
    ZoeDepthAugment,
)
from avs_jax.errors import BadInputError

# Host pi draws its host-side augmentation from seed config.seed + 1 + AUGMENT_HOST_STRIDE * pi.
AUGMENT_HOST_STRIDE = 7919

# -- datasets ------------------------------------------------------------------------------------


def _process_info(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax  # pylint: disable=g-import-not-at-top  (workers need not import JAX)

        process_index, process_count = jax.process_index(), jax.process_count()
    return process_index, process_count


def _source(builder_or_source, split: str, eval_mode: bool = False):
    if hasattr(builder_or_source, "as_data_source"):
        splits = builder_or_source.info.splits
        if split not in splits:
            raise BadInputError(
                f"split {split!r} has no examples in {builder_or_source.data_dir} "
                f"(its CSVs were empty); available: {sorted(splits)}"
            )
        source = builder_or_source.as_data_source(split)
        # Evaluation scores a training-size dataset against its native-size depth_full.
        return datasets.eval_source(builder_or_source, source, split) if eval_mode else source
    return builder_or_source


def device_prep(config: ml_collections.ConfigDict) -> bool:
    """Whether training batches are raw (uint8 images; stage 1: wave) for the device to prepare."""
    return bool(config.get("device_prep", False))


# The most worker processes `num_workers=-1` starts: enough for an 8-accelerator host at the
# paper's sizes (docs/performance.md, "End to end"), few enough that their memory stays modest.
MAX_AUTO_WORKERS = 16


def worker_count(num_workers: int) -> int:
    """``config.num_workers``, with -1 resolved to the cores this process may use, less one for
    the training loop itself, at most `MAX_AUTO_WORKERS`."""
    if num_workers >= 0:
        return num_workers
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(cores - 1, MAX_AUTO_WORKERS))


def _decode(config: ml_collections.ConfigDict, eval_mode: bool) -> grain.transforms.Map:
    if config.name == "bv1_triples":
        return DecodeTriple(config.image_size, eval_mode=eval_mode, device_prep=device_prep(config))
    return DecodeSample(
        config.image_size, config.max_depth, config.stft.to_dict(), eval_mode, device_prep(config)
    )


def host_batch_size(global_batch: int, process_count: int) -> int:
    """Per-host batch: the global batch split evenly over hosts."""
    if global_batch % process_count:
        raise BadInputError(
            f"global batch {global_batch} is not divisible by {process_count} hosts"
        )
    return global_batch // process_count


def make_train_dataset(
    builder_or_source,
    config: ml_collections.ConfigDict,
    split: str = "train",
    *,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """Infinite shuffled training dataset of per-host batches (see module docstring), augmented
    here unless the train step augments them (stage 1 with `config.device_prep`)."""
    pi, pc = _process_info(process_index, process_count)
    ds = grain.MapDataset.source(_source(builder_or_source, split))[pi::pc]
    # Decode before the shuffle: a per-element Map, so the same elements in the same order as
    # decoding after it, and the (optional) cache below sees each example under one index.
    ds = ds.map(_decode(config, eval_mode=False))
    if config.get("cache_decoded", False):
        ds = CachedMapDataset(ds)
    if config.shuffle:
        ds = ds.shuffle(seed=config.seed)  # reshuffled every epoch by the repeat below
    ds = ds.repeat(None)
    if config.augment and not device_prep(config):  # else augmented in the train step
        aug = config.aug.to_dict()
        aug_t = MonodepthAugment(aug) if config.name == "bv1_triples" else ZoeDepthAugment(aug)
        # Each host its own draws: after the [pi::pc] split, row i of every host would otherwise
        # get the same flip, rotation and colour (one host: the seed of before).
        ds = ds.random_map(aug_t, seed=config.seed + 1 + AUGMENT_HOST_STRIDE * pi)
    ds = ds.batch(host_batch_size(config.batch_size, pc), drop_remainder=True)
    it = ds.to_iter_dataset(
        grain.ReadOptions(
            num_threads=config.num_threads, prefetch_buffer_size=config.prefetch_buffer_size
        )
    )
    workers = worker_count(config.num_workers)
    if workers > 0:
        # grain's workers read absl flags; outside an absl app (tests, notebooks) use the defaults.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=workers, per_worker_buffer_size=config.worker_buffer_size
            )
        )
    return it


def create_train_iterator(
    builder_or_source, config: ml_collections.ConfigDict, split: str = "train", **kwargs
) -> grain.DatasetIterator:
    """Iterator over training batches; checkpoint it with ``checkpoint_args``."""
    return iter(make_train_dataset(builder_or_source, config, split, **kwargs))


def make_eval_dataset(
    builder_or_source,
    config: ml_collections.ConfigDict,
    split: str = "test",
    batch_size: int | None = None,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """Unshuffled, un-augmented batches of every example of ``split`` (last batch padded).

    With several hosts, this host's share (every ``process_count``-th example), padded to the
    number of batches of the largest share, so that every host runs the same validation steps.
    Batches carry ``sample_id``, ``valid_example`` and (samples) ``depth_full``.
    """
    pi, pc = _process_info(process_index, process_count)
    bs = batch_size or host_batch_size(config.batch_size, pc)
    source = _source(builder_or_source, split, eval_mode=True)
    if len(source) < pc:
        raise BadInputError(
            f"split {split!r} has {len(source)} examples, fewer than the {pc} hosts that share it"
        )
    ds = grain.MapDataset.source(source)[pi::pc]
    ds = ds.map(_decode(config, eval_mode=True))
    if config.get("cache_decoded", False):  # kept for the next pass over the same dataset object
        ds = CachedMapDataset(ds)
    ds = ds.batch(bs, drop_remainder=False, batch_fn=PadBatch(bs))
    if pc > 1:  # the same number of batches on every host, that of the largest share
        largest_share = -(-len(source) // pc)
        ds = PaddedBatches(ds, -(-largest_share // bs))
    return ds.to_iter_dataset(
        grain.ReadOptions(
            num_threads=config.num_threads, prefetch_buffer_size=config.prefetch_buffer_size
        )
    )


def create_eval_iterator(
    builder_or_source,
    config: ml_collections.ConfigDict,
    split: str = "test",
    batch_size: int | None = None,
    **kwargs,
) -> grain.DatasetIterator:
    """Iterator over evaluation batches (see ``make_eval_dataset``)."""
    return iter(make_eval_dataset(builder_or_source, config, split, batch_size, **kwargs))


# -- checkpoints ---------------------------------------------------------------------------------


def checkpoint_args(iterator: grain.DatasetIterator, restore: bool = False):
    """Orbax args that save (or restore into) the iterator's state, for a ``Composite`` item."""
    if restore:
        return grain.checkpoint.CheckpointRestore(iterator)
    return grain.checkpoint.CheckpointSave(iterator)
