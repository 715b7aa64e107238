"""Relative-stage inputs made in the train step (avs_jax/data/device_triples.py): Monodepth2's
jitter and flip against the host's MonodepthAugment for given draws, the draws' statistics, the
raw triples the host sends, and the relative task on raw batches (no-augment equality with the
host batch, determinism in the step's key, the compute-dtype cast)."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest

from avs_jax.config_files import load_config
from avs_jax.data import device_triples as dt
from avs_jax.data import transforms
from avs_jax.data.config import default_data_config
from avs_jax.data.device_prep import AUGMENT_STREAM
from avs_jax.train.relative_task import RelativeDepthTask
from avs_jax.train.state import init_compiler_options

AUG = default_data_config("bv1_triples").aug.to_dict()  # Monodepth2's values

# float32 against the host's float32 numpy: values in [0, 1], each op a few roundings (~6e-8
# each) and at most 4 ops, each amplifying an input error by at most its factor (<= 1.5 here),
# or a small constant for the hue shift (piecewise linear in RGB: its h6 = (g - b) / c is
# multiplied by c again before it reaches an output, so a near-grey pixel's tiny chroma divides
# nothing out). The rest differs only in summation order (a frame's mean grey) and in
# 2 + 6 * hue rounded once (host, float64 first) or twice (float32): ~1e-6 at worst; 2e-5 leaves
# a 20x margin over that (measured: 4.2e-7 on these frames, the near-grey rows no worse).
ATOL = 2e-5

# One compile for the tests that apply draws to [6, 3, 8, 16, 3] frames, as the step would.
_apply = jax.jit(dt.apply_monodepth)


# -- the jitter and flip against the host ----------------------------------------------------------


def _frames(b, h=8, w=16, seed=0):
    """Random triples [b, 3, h, w, 3] in [0, 1] with grey, near-grey, tied and saturated pixels."""
    rng = np.random.default_rng(seed)
    x = rng.random((b, 3, h, w, 3)).astype(np.float32)
    grey = rng.uniform(0.1, 0.9, (b, 3, w)).astype(np.float32)
    for row, delta in enumerate((0.0, 1e-7, 1e-6, 1e-4)):  # chroma ~delta: hue = 0 / 0-ish
        x[:, :, row] = (grey[..., None] + np.float32(delta) * np.array([1, 0, -1])).astype(
            np.float32
        )
    x[:, :, 4, :, 1] = x[:, :, 4, :, 0]  # r == g: the sectors' tie
    x[:, :, 5, ::2] = np.array([1.0, 0.0, 0.5], np.float32)  # saturated channels
    return x


def _fixed_draws():
    """Six samples: different op orders, jitter and flip on and off in every combination, hue
    shifts that wrap the sectors, factors that clip."""
    return {
        "jitter": np.array([1, 1, 1, 1, 0, 0], bool),
        "flip": np.array([0, 1, 0, 1, 1, 0], bool),
        "brightness": np.array([0.8, 1.2, 1.4, 0.9, 1.1, 1.0], np.float32),
        "contrast": np.array([1.2, 0.8, 0.6, 1.5, 1.0, 0.9], np.float32),
        "saturation": np.array([0.8, 1.2, 0.3, 1.5, 1.0, 1.1], np.float32),
        "hue": np.array([0.1, -0.1, 0.45, -0.37, 0.05, 0.0], np.float32),
        "order": np.array(
            [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1], [3, 1, 2, 0], [0, 2, 3, 1]],
            np.int32,
        ),
    }


class _Scripted:
    """A `np.random.Generator` stand-in that makes MonodepthAugment draw one sample's fixed draws:
    random() for the jitter then the flip test (p 0.5), uniform() for the four factors in turn,
    permutation() for the order."""

    def __init__(self, draws, b):
        self._random = iter([0.0 if draws["jitter"][b] else 1.0, 0.0 if draws["flip"][b] else 1.0])
        keys = ("brightness", "contrast", "saturation", "hue")
        self._uniform = iter([float(draws[k][b]) for k in keys])
        self._order = np.array(draws["order"][b])

    def random(self):
        return next(self._random)

    def uniform(self, low, high):
        del low, high
        return next(self._uniform)

    def permutation(self, n):
        assert n == 4
        return self._order.copy()


def _poses(b, seed=1):
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4, dtype=np.float32), (b, 3, 1, 1))
    poses[..., :3, :] = rng.standard_normal((b, 3, 3, 4)).astype(np.float32)
    return poses


def test_apply_monodepth_is_the_host_augment_per_sample():
    frames = _frames(6)
    b, w = frames.shape[0], frames.shape[3]
    k = np.tile(np.array([[12, 0, 7.25], [0, 11, 3.5], [0, 0, 1]], np.float32), (b, 1, 1))
    k[:, 0, 2] += np.arange(b, dtype=np.float32)  # a principal point of each sample's own
    poses = _poses(b)
    draws = _fixed_draws()
    got = _apply(frames, k, poses, draws)
    got_f, got_a, got_k, got_p = (np.asarray(a) for a in got)
    aug = transforms.MonodepthAugment(dict(AUG, jitter_p=0.5, flip_p=0.5))
    for i in range(b):
        ex = {"frames": frames[i], "frames_aug": frames[i], "intrinsics": k[i], "poses": poses[i]}
        want = aug.random_map(ex, _Scripted(draws, i))
        np.testing.assert_array_equal(got_f[i], want["frames"])  # un-jittered: only flipped
        np.testing.assert_allclose(got_a[i], want["frames_aug"], rtol=0, atol=ATOL)
        np.testing.assert_array_equal(got_k[i], want["intrinsics"])  # exact: W - 1 - cx
        np.testing.assert_array_equal(got_p[i], want["poses"])  # exact: sign changes
        if draws["flip"][i]:
            assert got_k[i, 0, 2] == np.float32(w - 1) - k[i, 0, 2]
            assert not np.array_equal(got_p[i], poses[i])
        jittered = not np.array_equal(got_a[i], got_f[i])
        assert jittered == bool(draws["jitter"][i])
    # No poses: they pass through.
    _, _, _, none = dt.apply_monodepth(frames, k, None, jax.tree.map(jnp.asarray, draws))
    assert none is None


def test_color_jitter_identity_keeps_frames_and_grey_stays_grey():
    frames = _frames(6, seed=3)
    ident = dict(
        _fixed_draws(),
        jitter=np.ones(6, bool),
        flip=np.zeros(6, bool),
        brightness=np.ones(6, np.float32),
        contrast=np.ones(6, np.float32),
        saturation=np.ones(6, np.float32),
        hue=np.zeros(6, np.float32),
    )
    k = np.tile(np.eye(3, dtype=np.float32), (6, 1, 1))
    _, frames_aug, _, _ = _apply(frames, k, _poses(6), ident)
    np.testing.assert_allclose(np.asarray(frames_aug), frames, rtol=0, atol=1e-6)
    grey = np.broadcast_to(frames[:2, ..., :1], frames[:2].shape)  # r = g = b: no hue to shift
    shifted = np.asarray(dt.shift_hue(jnp.asarray(grey), jnp.float32(0.3)))
    np.testing.assert_array_equal(shifted, grey)


# -- the draws -------------------------------------------------------------------------------------


def test_draw_monodepth_statistics():
    n = 4096
    d = jax.tree.map(np.asarray, dt.draw_monodepth(jax.random.key(0), n, AUG))
    assert d["order"].dtype == np.int32 and d["order"].shape == (n, 4)
    assert d["jitter"].dtype == bool and d["flip"].dtype == bool

    def binomial_ok(hits, p):  # within 4 standard deviations of n * p
        return abs(np.sum(hits) - n * p) <= 4 * np.sqrt(n * p * (1 - p))

    assert binomial_ok(d["jitter"], AUG["jitter_p"]) and binomial_ok(d["flip"], AUG["flip_p"])
    assert binomial_ok(d["jitter"] & d["flip"], AUG["jitter_p"] * AUG["flip_p"])  # independent
    for key in ("brightness", "contrast", "saturation", "hue"):
        lo, hi = (-AUG["jitter_hue"], AUG["jitter_hue"]) if key == "hue" else AUG[f"jitter_{key}"]
        assert d[key].dtype == np.float32 and d[key].min() >= lo and d[key].max() <= hi
        assert abs(d[key].mean() - (lo + hi) / 2) <= 4 * (hi - lo) / np.sqrt(12 * n)
    # Every row a permutation of the 4 ops, each op equally likely at each position.
    np.testing.assert_array_equal(np.sort(d["order"], axis=1), np.tile(np.arange(4), (n, 1)))
    for position in range(4):
        counts = np.bincount(d["order"][:, position], minlength=4)
        assert np.all(np.abs(counts - n / 4) <= 4 * np.sqrt(n * 0.25 * 0.75)), (position, counts)
    assert len({tuple(r) for r in d["order"]}) == 24  # all orders occur
    assert abs(np.corrcoef(d["brightness"], d["contrast"])[0, 1]) < 0.1  # separate draws


# -- raw triples from the host ---------------------------------------------------------------------


def _png(pixels):
    buf = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _example(rng, stored=False):
    """A bv1_triples record: three 12x20 frames (PNG bytes, or pixels at 8x16 as a dataset stored
    at the training size holds them), K at the native size, poses."""
    hw = (8, 16) if stored else (12, 20)
    pixels = [rng.integers(0, 256, hw + (3,), np.uint8) for _ in range(3)]
    return {
        "images": np.stack(pixels) if stored else [_png(p) for p in pixels],
        "intrinsics": np.array([[10, 0, 9.5], [0, 11, 5.5], [0, 0, 1]], np.float32),
        "poses": _poses(1)[0],
        "has_pose": np.bool_(True),
        "sample_id": b"s/3",
    }


@pytest.mark.parametrize("stored", [False, True])
def test_decode_triple_for_the_device_sends_the_host_pixels_as_uint8(stored):
    ex = _example(np.random.default_rng(5), stored)
    host = transforms.DecodeTriple((8, 16)).map(ex)
    raw = transforms.DecodeTriple((8, 16), device_prep=True).map(ex)
    assert set(raw) == {"frames", "intrinsics", "poses", "has_pose"}
    assert raw["frames"].dtype == np.uint8 and raw["frames"].shape == (3, 8, 16, 3)
    # The host's float frames are the uint8 pixels / 255 (as x * float32(1 / 255), which is not
    # always x / 255's last bit): sending uint8 loses nothing.
    np.testing.assert_array_equal(host["frames"], raw["frames"] * np.float32(1 / 255))
    np.testing.assert_array_equal(np.round(host["frames"] * 255).astype(np.uint8), raw["frames"])
    for key in ("intrinsics", "poses", "has_pose"):
        np.testing.assert_array_equal(raw[key], host[key])
    # ... and the step's conversion gives them back bit for bit.
    frames, frames_aug, _, _ = dt.triples_inputs(raw["frames"][None], raw["intrinsics"][None])
    np.testing.assert_array_equal(np.asarray(frames)[0], host["frames"])
    np.testing.assert_array_equal(np.asarray(frames_aug)[0], host["frames_aug"])
    # Evaluation stays on the host whatever device_prep says.
    ev = transforms.DecodeTriple((8, 16), eval_mode=True, device_prep=True).map(ex)
    assert ev["frames"].dtype == np.float32 and "frames_aug" in ev and ev["sample_id"] == "s/3"


# -- the relative task on raw batches --------------------------------------------------------------


def _config(augment=True, compute_dtype="float32"):
    config = load_config("monodepth2", "tiny")
    config.model.scales = (0,)  # one scale: the loss compiles in a third of the time
    config.loss.scales = (0,)
    config.data.image_size = (64, 64)
    config.data.augment = augment
    config.train.compute_dtype = compute_dtype
    return config


def _raw_batch(b, seed=0, h=64, w=64):
    rng = np.random.default_rng(seed)
    k = np.array([[30, 0, (w - 1) / 2 - 1], [0, 30, (h - 1) / 2], [0, 0, 1]], np.float32)
    return {
        "frames": rng.integers(0, 256, (b, 3, h, w, 3), np.uint8),
        "intrinsics": np.tile(k, (b, 1, 1)),
        "poses": _poses(b, seed),
        "has_pose": np.ones(b, bool),
    }


def _host_batch(raw):
    frames = raw["frames"].astype(np.float32) * np.float32(1 / 255)
    return {**raw, "frames": frames, "frames_aug": frames}


def test_raw_batch_without_augment_gives_the_host_batch_loss():
    """augment off: a training step's loss, metrics and BatchNorm statistics (tie-break noise
    from the same key) on the raw batch are the host batch's."""
    task = RelativeDepthTask(_config(augment=False))
    raw = _raw_batch(2)
    host = _host_batch(raw)

    def both(raw, host, key):  # one compile (XLA:CPU level 1, as init) for the init and 2 losses
        v = task.init_variables(jax.random.key(0), raw)
        state = {"batch_stats": v["batch_stats"]}
        a = task.loss_and_metrics(v["params"], state, raw, key, True)
        b = task.loss_and_metrics(v["params"], state, host, key, True)
        return a, b

    fn = jax.jit(both, compiler_options=init_compiler_options())
    (loss_r, (state_r, m_r)), (loss_h, (state_h, m_h)) = fn(raw, host, jax.random.key(1))
    # The inputs are bitwise equal (below), but XLA may fuse the uint8 conversion into the first
    # ops and round their last bit differently (measured: 1 ulp of the loss, 4e-7 at most on the
    # BatchNorm statistics; at 32x32 the last block's BatchNorm over 1x1 maps of 2 samples
    # amplified that to 9e-6).
    np.testing.assert_allclose(float(loss_r), float(loss_h), rtol=1e-6)
    for key in m_h:  # automasking compares two losses per pixel: a near-tie may flip a pixel
        atol = 4 / (2 * 64 * 64) if key == "automask_fraction" else 1e-7  # (measured: 1 pixel)
        np.testing.assert_allclose(float(m_r[key]), float(m_h[key]), rtol=1e-5, atol=atol)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state_r, state_h
    )
    frames, net, k, poses = task.model_inputs(raw, jax.random.key(1), train=True)
    np.testing.assert_array_equal(np.asarray(frames), host["frames"])
    np.testing.assert_array_equal(np.asarray(net), host["frames"])
    np.testing.assert_array_equal(np.asarray(k), raw["intrinsics"])
    np.testing.assert_array_equal(np.asarray(poses), raw["poses"])


def _train_inputs(task):
    return jax.jit(lambda batch, key: task.model_inputs(batch, key, train=True))


def test_raw_batch_augment_is_deterministic_in_the_step_key():
    task = RelativeDepthTask(_config())
    raw = _raw_batch(6, seed=2, h=8, w=16)
    fn = _train_inputs(task)
    a, again, other = ([np.asarray(x) for x in fn(raw, jax.random.key(s))] for s in (3, 3, 4))
    for x, y in zip(a, again):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], other[1])  # frames_aug
    # What the key draws: fold_in(key, AUGMENT_STREAM), applied to frames / 255.
    draws = dt.draw_monodepth(jax.random.fold_in(jax.random.key(3), AUGMENT_STREAM), 6, task.aug)
    assert 0 < np.sum(draws["flip"]) < 6 and 0 < np.sum(draws["jitter"]) < 6  # both cases
    want = _apply(_host_batch(raw)["frames"], raw["intrinsics"], raw["poses"], draws)
    np.testing.assert_array_equal(a[0], np.asarray(want[0]))  # un-jittered frames: exact
    np.testing.assert_allclose(a[1], np.asarray(want[1]), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(a[2], np.asarray(want[2]))
    np.testing.assert_array_equal(a[3], np.asarray(want[3]))
    # Evaluation (train False), no key: the raw batch as it is.
    frames, net, _, _ = task.model_inputs(raw, None, train=False)
    np.testing.assert_array_equal(np.asarray(net), np.asarray(frames))
    np.testing.assert_array_equal(np.asarray(frames), _host_batch(raw)["frames"])
    with pytest.raises(ValueError, match="needs the step's key"):
        task.model_inputs(raw, None, train=True)


def test_device_made_frames_aug_gets_the_compute_dtype_cast():
    """cast_batch_keys names frames_aug: the device-made frames_aug is rounded to bfloat16 as the
    step rounds a host batch's; the un-augmented frames (the loss's targets) stay float32."""
    task = RelativeDepthTask(_config(compute_dtype="bfloat16"))
    assert "frames_aug" in task.cast_keys
    raw = _raw_batch(6, seed=6, h=8, w=16)
    key = jax.random.key(7)
    frames, net, _, _ = _train_inputs(task)(raw, key)
    assert frames.dtype == jnp.float32 and net.dtype == jnp.float32  # as the host path gives
    draws = dt.draw_monodepth(jax.random.fold_in(key, AUGMENT_STREAM), 6, task.aug)
    want_frames, aug32, _, _ = _apply(_host_batch(raw)["frames"], raw["intrinsics"], None, draws)
    np.testing.assert_array_equal(np.asarray(frames), np.asarray(want_frames))
    net, aug32 = np.asarray(net), np.asarray(aug32)
    np.testing.assert_array_equal(net, np.asarray(jnp.asarray(net, jnp.bfloat16), np.float32))
    # The nearest bfloat16: within half its spacing, 2^-8 of the value at most.
    np.testing.assert_allclose(net, aug32, rtol=2**-8, atol=1e-6)
    assert not np.array_equal(net, aug32)
