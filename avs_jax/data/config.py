"""The `config.data` section: which BatVision dataset, at what size, and how it is read.

Kept apart from the input pipeline so that configs (and code that only builds models from
them, such as the benchmarks) need neither grain nor TFDS.
"""

from __future__ import annotations

import ml_collections

from avs_jax.data import audio
from avs_jax.errors import BadInputError
from tfds_batvision.onset import CANONICAL_ONSET

# Paper / reference defaults per dataset (docs/reference.md, paper Sec. 4).
_MAX_DEPTH = {"bv2": 30.0, "bv1": 12.0, "bv1_triples": 12.0}  # evaluation caps, paper Sec. 4.2
_IMAGE_SIZE = {"bv2": (256, 512), "bv1": (256, 512), "bv1_triples": (192, 640)}
_BATCH = {"bv2": 16, "bv1": 16, "bv1_triples": 12}  # ZoeDepth batch 16; Monodepth2 batch 12


def default_data_config(name: str) -> ml_collections.ConfigDict:
    """``config.data`` section for ``name`` in {'bv2', 'bv1', 'bv1_triples'} with paper defaults."""
    if name not in _MAX_DEPTH:
        raise BadInputError(f"unknown dataset {name!r}; choose one of {sorted(_MAX_DEPTH)}")
    c = ml_collections.ConfigDict()
    c.name = name
    c.data_dir = "data/tfds"  # TFDS data dir (array_record files)
    c.manual_dir = ""  # BatVision root, only needed to build
    c.image_size = _IMAGE_SIZE[name]  # (H, W): 256x512 stage 1, 192x640 triples (paper Sec. 4)
    c.max_depth = _MAX_DEPTH[name]  # metres; depth >= max_depth -> 0 (invalid)
    c.batch_size = _BATCH[name]  # global batch over all hosts
    c.shuffle = True
    c.seed = 0
    # mp_prefetch worker processes for training; -1: one per core the process may use, less one
    # for the training loop, at most 16 (input_pipeline.worker_count); 0: none.
    c.num_workers = -1
    c.worker_buffer_size = 2  # batches each worker keeps ready
    c.num_threads = 4  # read/decode threads per process
    c.prefetch_buffer_size = 8  # elements prefetched by the read threads
    # Keep decoded examples in memory after their first read (later epochs and validations skip
    # JPEG, STFT and resizes). Only for data that fits: ~200 kB per 64x128 sample, ~1.5 MB at
    # 256x512, per process and per worker.
    c.cache_decoded = False
    # (H, W) = image_size: read batvision/<name>_<H>x<W>, images stored as pixels at that size by
    # `tfds_batvision.build --image_size=H,W` (no JPEG decode or resize per epoch); () = full size.
    c.stored_size = ()
    c.augment = True
    # Training batches: the host only decodes (uint8 images; stage 1 also depth and the
    # onset-aligned waveform) and the train step makes the echo STFT and the augmentation
    # (ZoeDepth's, Monodepth2's) on the device from the step's key: on the host they cost more
    # CPU per sample than an accelerator step. False: all of it on the host, as evaluation does.
    c.device_prep = True
    c.aug = ml_collections.ConfigDict()
    # ZoeDepth stage-1 augmentation (config_zoedepth.json values).
    c.aug.rotation_deg = 1.0  # uniform in [-1, 1] degrees
    c.aug.flip_p = 0.5  # also Monodepth2's
    c.aug.color_p = 0.5
    c.aug.gamma = (0.9, 1.1)
    c.aug.brightness = (0.9, 1.1)
    c.aug.colour = (0.9, 1.1)  # per-channel gain
    # Monodepth2 colour jitter for triples (same parameters for the 3 frames).
    c.aug.jitter_p = 0.5
    c.aug.jitter_brightness = (0.8, 1.2)
    c.aug.jitter_contrast = (0.8, 1.2)
    c.aug.jitter_saturation = (0.8, 1.2)
    c.aug.jitter_hue = 0.1  # hue shift in [-0.1, 0.1] turns
    c.stft = ml_collections.ConfigDict()
    c.stft.n_fft = audio.N_FFT
    c.stft.win_length = audio.WIN_LENGTH
    c.stft.hop_length = audio.HOP_LENGTH
    c.stft.sample_rate = audio.SAMPLE_RATE
    c.stft.cut_to_max_depth = name == "bv2"  # BV2 cut to the 2*max_depth round trip; BV1 none
    # Echo range of the cut (metres); 0 = the dataset's max_depth. A BV2-trained model evaluated
    # zero-shot on BV1 uses BV2's settings (paper Sec. 4.1): cut_to_max_depth and 30 m.
    c.stft.max_depth = 0.0
    # "onset": move each recording so its chirp arrives at sample `onset` before the cut (real BV1
    # files start ~690 samples later than BV2's: 2.7 m of range otherwise); "off": the paper's raw
    # cut. docs/reference.md, "Echo onset alignment".
    c.stft.align = "onset"
    c.stft.onset = CANONICAL_ONSET  # BV2's onset, so aligned BV2 keeps the paper's cut
    # device_prep without the cut: the room each recording (after alignment) is zero-padded to
    # before it goes to the device with its own length; real BV1 raw_long files hold ~4180
    # samples (>= 4170), 20000 for BV2. A longer recording is an error naming this setting.
    c.stft.num_samples = 8192 if name != "bv2" else 20480
    return c
