"""Stage-1 inputs made in the train step (avs_jax/data/device_prep.py, issue 34): the echo STFT
against the host's, no-randomness equality with the host pipeline, flip, rotation against PIL, the
augmentation's statistics, exact resume, and a tiny training run through the real loop."""

import batvision_fixture as fx  # tests/ is on sys.path (pytest rootdir-less prepend)
import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest
import soundfile as sf

from avs_jax.config_files import load_config
from avs_jax.data import audio, transforms
from avs_jax.data import device_prep as dp
from avs_jax.data import input_pipeline as ip
from avs_jax.data.config import default_data_config
from avs_jax.errors import BadInputError
from avs_jax.train.avsnet_task import AVSNetTask
from avs_jax.train.state import TrainState
from avs_jax.train.step import cast_inputs, step_rng
from tfds_batvision.build import build_dataset

SMALL = (16, 32)
STFT = (audio.N_FFT, audio.WIN_LENGTH, audio.HOP_LENGTH)
AUG = default_data_config("bv2").aug.to_dict()  # ZoeDepth's values
NO_AUG = dict(AUG, flip_p=0.0, color_p=0.0, rotation_deg=0.0)

# float32 against the host's float64 STFT: each bin of a 512-point FFT carries ~log2(512) = 9
# roundings of eps = 6e-8 of its frame's energy, and the largest bin of a frame is at least that
# energy (Parseval: 512 bins share 512 * ||x||^2), so a bin is off by ~5e-7 of its frame's peak;
# the bilinear resize only averages. 1e-5 of the spectrogram's peak leaves a 20x margin (measured:
# 1.3e-7 to 2.4e-7 on random waveforms, 7e-8 on the real recording).
ECHO_ATOL = 1e-5


def _echo_close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=ECHO_ATOL * float(np.max(want)))


@pytest.fixture(scope="module")
def bv2_builder(tmp_path_factory):
    d = tmp_path_factory.mktemp("bv2")
    root = fx.write_bv2(
        d / "root", {"L": {"train": 4, "val": 2, "test": 1}}, hw=(24, 32), frames=1000
    )
    return build_dataset("bv2", root, d / "data")


def _data(aug=None, **kw):
    c = default_data_config("bv2")
    c.image_size, c.num_workers, c.num_threads, c.batch_size = SMALL, 0, 1, 2
    c.prefetch_buffer_size = 2
    c.update(kw)
    c.aug.update(aug or {})
    return c


def _task(data, compute_dtype="float32"):
    config = load_config("avsnet", "tiny")
    config.data = data
    config.train.compute_dtype = compute_dtype
    return AVSNetTask(config)


# -- echo STFT -------------------------------------------------------------------------------------


def test_echo_features_equal_the_host_on_random_waveforms():
    x = np.random.default_rng(0).standard_normal((2, 2, 7782)).astype(np.float32)
    got = np.asarray(jax.jit(lambda w: dp.echo_features(w, (256, 512), *STFT))(x))
    for b in range(2):
        _echo_close(got[b], audio.echo_features(x[b], (256, 512), 30.0))  # 257 -> 256 rows


def test_echo_features_equal_the_host_on_the_real_bv2_recording():
    data, sr = sf.read(fx.REAL_BV2_WAV, dtype="int32")
    wav = (data.T.astype(np.float64) / 2**31).astype(np.float32)
    cut = audio.cut_or_pad(wav, audio.echo_cut_length(30.0))
    got = np.asarray(dp.echo_features(cut[None], (64, 128), *STFT))[0]
    _echo_close(got, audio.echo_features(wav, (64, 128), 30.0))


def test_echo_features_of_recordings_used_whole_keep_their_own_lengths():
    """No cut (BV1's own setting): zero-padded to one length, each reflected and resized as the
    host does with the recording alone."""
    rng = np.random.default_rng(1)
    lengths = np.array([3487, 4096, 3000])
    x = np.zeros((3, 2, 4096), np.float32)
    for b, n in enumerate(lengths):
        x[b, :, :n] = rng.standard_normal((2, n))
    got = np.asarray(dp.echo_features(x, (64, 128), *STFT, lengths=jnp.asarray(lengths)))
    for b, n in enumerate(lengths):
        _echo_close(got[b], audio.echo_features(x[b, :, :n], (64, 128), None))


# -- host batches against device batches -----------------------------------------------------------


def test_without_randomness_the_device_path_equals_the_host_pipeline(bv2_builder):
    """Flip and colour at p 0, no rotation: the raw pipeline + the task's device inputs give the
    host pipeline's batch. The image is exactly equal: the host path was the same 8-bit pixels
    times float32(1/255), so sending uint8 loses nothing (the JPEG is 8-bit)."""
    kw = dict(process_index=0, process_count=1)
    host_cfg = _data(device_prep=False, augment=False, shuffle=False)
    raw_cfg = _data(aug=NO_AUG, shuffle=False)  # device_prep and augment on by default
    assert raw_cfg.device_prep and raw_cfg.augment
    host = next(ip.create_train_iterator(bv2_builder, host_cfg, **kw))
    raw = next(ip.create_train_iterator(bv2_builder, raw_cfg, **kw))
    assert set(host) == {"image", "echo", "depth"} and set(raw) == {"image", "wave", "depth"}
    assert raw["image"].dtype == np.uint8 and raw["wave"].shape == (2, 2, 7782)
    task = _task(raw_cfg)
    fn = jax.jit(lambda b, k: task.model_inputs(b, k, train=True))
    image, echo, depth = (np.asarray(a) for a in fn(raw, jax.random.key(0)))
    np.testing.assert_array_equal(image, host["image"])
    np.testing.assert_array_equal(depth, host["depth"])
    _echo_close(echo, host["echo"])


def test_recordings_used_whole_go_with_their_length(bv2_builder):
    ex = bv2_builder.as_data_source("train")[0]
    stft = dict(default_data_config("bv2").stft.to_dict(), cut_to_max_depth=False)
    host = transforms.DecodeSample(SMALL, 30.0, stft).map(ex)
    raw = transforms.DecodeSample(SMALL, 30.0, dict(stft, num_samples=2048), device_prep=True)
    out = raw.map(ex)
    n = int(out["wave_length"])
    assert out["wave"].shape == (2, 2048) and n > 1000 and not out["wave"][:, n:].any()
    batch = {k: np.asarray(v)[None] for k, v in out.items()}
    _, echo, _ = _task(_data(stft=stft)).model_inputs(batch)  # the task reads wave_length
    _echo_close(np.asarray(echo)[0], host["echo"])
    with pytest.raises(BadInputError, match="longer than config.data.stft.num_samples=500"):
        transforms.DecodeSample(SMALL, 30.0, dict(stft, num_samples=500), device_prep=True).map(ex)


def test_evaluation_batches_stay_on_the_host_and_the_task_reads_both_forms(bv2_builder):
    cfg = _data()
    ev = next(ip.create_eval_iterator(bv2_builder, cfg, "val", process_index=0, process_count=1))
    assert {"image", "echo", "depth"} <= set(ev) and ev["image"].dtype == np.float32
    raw = transforms.DecodeSample(SMALL, 30.0, cfg.stft.to_dict(), device_prep=True)
    src = bv2_builder.as_data_source("val")
    rows = [raw.map(src[i]) for i in range(2)]
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    task = _task(cfg)
    a = task.model_inputs({k: ev[k] for k in ("image", "echo", "depth")})
    b = task.model_inputs(batch)  # eval form of a raw batch: no augmentation
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    _echo_close(np.asarray(b[1]), np.asarray(a[1]))


# -- augmentation ----------------------------------------------------------------------------------


def _scene(b=2, h=16, w=32):
    rng = np.random.default_rng(2)
    image = rng.random((b, h, w, 3)).astype(np.float32)
    depth = rng.uniform(0.5, 10, (b, h, w)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = 0
    echo = rng.random((b, h, w, 2)).astype(np.float32)
    return image, depth, echo


def test_flip_mirrors_image_and_depth_and_swaps_the_ears():
    image, depth, echo = _scene()
    out = dp.zoedepth_augment(image, depth, echo, jax.random.key(0), dict(NO_AUG, flip_p=1.0))
    got_i, got_d, got_e = (np.asarray(a) for a in out)
    np.testing.assert_array_equal(got_i, image[:, :, ::-1])
    np.testing.assert_array_equal(got_d, depth[:, :, ::-1])
    np.testing.assert_array_equal(got_e[..., 0], echo[..., 1])  # left <- right, not mirrored
    np.testing.assert_array_equal(got_e[..., 1], echo[..., 0])
    same = dp.zoedepth_augment(image, depth, echo, jax.random.key(0), NO_AUG)
    for a, want in zip(same, (image, depth, echo)):
        np.testing.assert_array_equal(np.asarray(a), want)


@pytest.mark.parametrize("angle", [0.9, -0.7, 15.0])
def test_rotation_is_pils(angle):
    """Same sign (counter-clockwise), centre (W/2, H/2) and fill (0) as transforms._rotate, the
    host's PIL rotation; bilinear to float32 rounding, depth by nearest (input values or 0)."""
    image, depth, echo = _scene()
    draws = dp.draw_zoedepth(jax.random.key(0), 2, NO_AUG)
    draws["angle"] = jnp.full((2,), angle, jnp.float32)
    got_i, got_d, _ = (np.asarray(a) for a in dp.apply_zoedepth(image, depth, echo, draws))
    for b in range(2):
        want = transforms._rotate(image[b], angle, PIL.Image.BILINEAR)
        np.testing.assert_allclose(got_i[b], want, atol=1e-5)
        # Nearest picks the pixel holding a float32 position: a position within ~1e-5 of a pixel
        # edge may round to the other side of it in float64 (none at these sizes and angles).
        want_d = transforms._rotate(depth[b], angle, PIL.Image.NEAREST)
        assert np.mean(got_d[b] != want_d) <= 0.002
        assert np.isin(got_d[b], np.append(depth[b], 0)).all()
    if abs(angle) > 10:  # the corners leave the frame
        assert (got_i == 0).any() and (got_d == 0).sum() > (depth == 0).sum()


def test_rotation_sign_by_hand():
    """+90 degrees turns a point right of the centre to above it (counter-clockwise on screen)."""
    x = np.zeros((1, 8, 8, 1), np.float32)
    x[0, 3, 6] = 1.0  # row 3 (centre 4), column 6: right of the centre (4, 4)
    out = np.asarray(dp.rotate(jnp.asarray(x), jnp.array([90.0]), bilinear=False))[0, ..., 0]
    assert np.argwhere(out == 1).tolist() == [[1, 3]]  # above the centre


def test_augmentation_statistics_are_zoedepths():
    n = 20000
    d = jax.tree.map(np.asarray, dp.draw_zoedepth(jax.random.key(3), n, AUG))

    def binomial_ok(hits, p):  # within 5 standard deviations of n * p
        return abs(hits.sum() - n * p) <= 5 * np.sqrt(n * p * (1 - p))

    assert binomial_ok(d["flip"], AUG["flip_p"]) and binomial_ok(d["colour"], AUG["color_p"])
    assert binomial_ok(d["flip"] & d["colour"], AUG["flip_p"] * AUG["color_p"])  # independent
    assert np.abs(d["angle"]).max() <= AUG["rotation_deg"]
    counts, _ = np.histogram(d["angle"], bins=10, range=(-1, 1))  # uniform: n/10 per bin
    assert np.all(np.abs(counts - n / 10) <= 5 * np.sqrt(n * 0.1 * 0.9)), counts
    for key, cfg_key in (("gamma", "gamma"), ("brightness", "brightness"), ("gain", "colour")):
        lo, hi = AUG[cfg_key]
        assert d[key].min() >= lo and d[key].max() <= hi
        mean_sd = (hi - lo) / np.sqrt(12 * d[key].size)
        assert abs(d[key].mean() - (lo + hi) / 2) <= 5 * mean_sd
    assert abs(np.corrcoef(d["gain"][:, 0], d["gain"][:, 1])[0, 1]) < 0.05  # per channel


def test_applied_flip_and_colour_rates_and_colour_values():
    """From the outputs: how many images came out mirrored or recoloured, and every recoloured
    pixel is clip(x ** gamma * brightness * gain) with its sample's draws."""
    n, p_colour = 512, 0.3
    image = np.random.default_rng(4).uniform(0.05, 0.95, (n, 2, 3, 3)).astype(np.float32)
    depth, echo = np.zeros((n, 2, 3), np.float32), np.zeros((n, 2, 3, 2), np.float32)
    aug = dict(AUG, rotation_deg=0.0, color_p=p_colour)
    key = jax.random.key(5)
    out = np.asarray(dp.zoedepth_augment(image, depth, echo, key, aug)[0])
    d = jax.tree.map(np.asarray, dp.draw_zoedepth(key, n, aug))
    flipped = np.where(d["flip"][:, None, None, None], image[:, :, ::-1], image)
    coloured = ~np.all(out == flipped, axis=(1, 2, 3))
    np.testing.assert_array_equal(coloured, d["colour"])
    assert abs(coloured.sum() - n * p_colour) <= 5 * np.sqrt(n * p_colour * (1 - p_colour))
    assert abs(d["flip"].sum() - n / 2) <= 5 * np.sqrt(n / 4)
    g, b, c = d["gamma"], d["brightness"], d["gain"]
    want = np.clip(
        flipped ** g[:, None, None, None] * b[:, None, None, None] * c[:, None, None], 0, 1
    )
    np.testing.assert_allclose(out[coloured], want[coloured], rtol=1e-5)


def test_stage1_inputs_swap_the_ears_on_the_waveform_as_zoedepth_augment_does_on_the_stft():
    """The train step flips the waveform's channels before the STFT (cheaper): the same inputs
    as `zoedepth_augment` of the finished echo, for every draw."""
    rng = np.random.default_rng(6)
    b = 8
    image = rng.integers(0, 256, (b, 16, 32, 3), np.uint8)
    depth = rng.uniform(0.5, 10, (b, 16, 32)).astype(np.float32)
    wave = rng.standard_normal((b, 2, 7782)).astype(np.float32)
    stft = dict(zip(("n_fft", "win_length", "hop_length"), STFT))
    key = jax.random.key(8)
    got = dp.stage1_inputs(image, depth, wave, stft, rng=key, aug=AUG)
    echo = dp.echo_features(wave, SMALL, *STFT)
    want = dp.zoedepth_augment(dp.as_unit_float(image), depth, echo, key, AUG)
    assert 0 < int(np.sum(dp.draw_zoedepth(key, b, AUG)["flip"])) < b  # both cases present
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    np.testing.assert_array_equal(np.asarray(got[2]), np.asarray(want[1]))
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[2]), rtol=1e-6, atol=1e-7)


# -- the step's key --------------------------------------------------------------------------------


def test_the_same_step_key_gives_the_same_batch_and_steps_differ(bv2_builder):
    cfg = _data()
    raw = next(ip.create_train_iterator(bv2_builder, cfg, process_index=0, process_count=1))
    task = _task(cfg)
    fn = jax.jit(lambda b, k: task.model_inputs(b, k, train=True))
    base = jax.random.key(7)

    def at(step):
        state = TrainState(jnp.int32(step), {}, {}, (), base)
        return [np.asarray(a) for a in fn(raw, step_rng(state))]

    a, again, other = at(3), at(3), at(4)
    for x, y in zip(a, again):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], other[0])  # rotation angles differ at least


def test_compute_dtype_applies_after_the_uint8_conversion(bv2_builder):
    cfg = _data()
    raw = next(ip.create_train_iterator(bv2_builder, cfg, process_index=0, process_count=1))
    task = _task(cfg, "bfloat16")
    cast = cast_inputs(raw, jnp.bfloat16, task.cast_keys)  # what the step does first
    assert cast["image"].dtype == np.uint8 and cast["wave"].dtype == np.float32
    image, echo, depth = task.model_inputs(cast, jax.random.key(0), train=True)
    assert (image.dtype, echo.dtype, depth.dtype) == (jnp.bfloat16, jnp.bfloat16, jnp.float32)
    assert float(image.max()) > 0.5  # scaled to [0, 1] before the cast, not 0 or 255


# -- the real loop ---------------------------------------------------------------------------------


def test_tiny_stage1_trains_through_the_loop_with_device_prep(bv2_builder, tmp_path):
    """configs/avsnet.py:tiny made smaller, raw batches from the real pipeline, validation on host
    batches of the val split: it trains (finite losses, moved parameters) and validates."""
    from avs_jax.train.loop import train_and_evaluate

    config = load_config("avsnet", "tiny")
    config.data = _data(image_size=(32, 64))
    config.model.midas.image_size = (32, 64)
    config.model.midas.depth, config.model.midas.hooks = 2, (0, 1, 1, 1)
    config.train.update(num_steps=3, log_every=1, eval_every=3, progress_bar=False)
    config.train.num_summary_images = 0  # test_summary_images.py renders them
    config.checkpoint.async_save = False
    first = next(ip.create_train_iterator(bv2_builder, config.data))
    assert "wave" in first and first["image"].dtype == np.uint8
    val = ip.make_eval_dataset(bv2_builder, config.data, "val")
    out = train_and_evaluate(
        config,
        str(tmp_path),
        AVSNetTask(config),
        lambda: ip.create_train_iterator(bv2_builder, config.data),
        lambda: ({k: v for k, v in b.items() if k not in ("sample_id", "depth_full")} for b in val),
    )
    assert out["stopped"] == "done" and out["step"] == 3
    losses = [r["loss"] for r in out["train"]]
    assert np.all(np.isfinite(losses)) and len(set(losses)) == 3
    assert np.isfinite(out["eval"][-1]["abs_rel"])
