"""The random focal length of stage 1 (avs_jax/data/zoom.py): a crop is a longer lens, by hand
and by the pinhole model, the same on the host and the device, and off by default."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avs_jax.data import device_prep as dp
from avs_jax.data.config import default_data_config
from avs_jax.data.transforms import ZoeDepthAugment
from avs_jax.data.zoom import draw_zoom, zoom_crop

AUG = default_data_config("bv2").aug.to_dict()


def _np(*xs):
    return [np.asarray(x, np.float32) for x in xs]


def test_zoom_two_by_hand():
    """4x4, zoom 2: the 2x2 window's pixels each repeated 2x2 (depth), and bilinear taps at the
    output centres' positions 0.25, 0.75, 1.25, 1.75 (+2 in the far corner's window) minus 0.5,
    clamped to the image."""
    ramp = np.tile(np.arange(4, dtype=np.float32), (4, 1))  # value = column
    image = np.stack([ramp, ramp.T, ramp], -1)[None]  # [1, 4, 4, 3]: columns, rows, columns
    depth = (10 * ramp.T + ramp + 1)[None]  # distinct values, row-major
    for top_left, first in ((0.0, 0), (1.0, 2)):
        got_i, got_d = zoom_crop(image, depth, *_np([2.0], [top_left], [top_left]), xp=np)
        i = first + np.array([0, 0, 1, 1])
        np.testing.assert_array_equal(got_d[0], depth[0][i[:, None], i[None, :]])
        want = {0: [0.0, 0.25, 0.75, 1.25], 2: [1.75, 2.25, 2.75, 3.0]}[first]
        np.testing.assert_allclose(got_i[0, 0, :, 0], want, atol=1e-6)  # along a row: columns
        np.testing.assert_allclose(got_i[0, :, 0, 1], want, atol=1e-6)  # down a column: rows


@pytest.mark.parametrize("xp", [np, jnp])
def test_zoom_one_is_the_identity(xp):
    rng = np.random.default_rng(0)
    image = rng.random((3, 16, 32, 3)).astype(np.float32)
    depth = rng.uniform(0, 10, (3, 16, 32)).astype(np.float32)
    args = _np([1, 1, 1], [0, 0.5, 0.99], [0.3, 1, 0])
    got_i, got_d = zoom_crop(*(xp.asarray(a) for a in (image, depth, *args)), xp=xp)
    np.testing.assert_array_equal(np.asarray(got_i), image)
    np.testing.assert_array_equal(np.asarray(got_d), depth)


@pytest.mark.parametrize("zoom", [1.17, 1.3, 1.6])
def test_a_centred_crop_is_a_longer_lens(zoom):
    """Pinhole: pixel (u, v) of a camera with focal length f (pixels) looks along
    ((u + 0.5 - W/2) / f, (v + 0.5 - H/2) / f, 1). An "image" holding those two tangents is
    linear in the pixel, so the bilinear centred crop gives the tangents of focal length zoom * f
    exactly (to float32 rounding); the depth of a plane z = 2 + x (metres) seen by the longer lens
    is matched to within the half source pixel that nearest sampling may move."""
    h, w, f = 24, 48, 30.0

    def render(focal):
        tx = (np.arange(w) + 0.5 - w / 2) / focal
        ty = (np.arange(h) + 0.5 - h / 2) / focal
        tx, ty = np.meshgrid(tx, ty)
        depth = 2.0 / (1.0 - tx)  # ray t * (tx, ty, 1) meets z = 2 + x at z = 2 / (1 - tx)
        image = np.stack([tx, ty, np.zeros_like(tx)], -1)
        return image.astype(np.float32), depth.astype(np.float32)

    image, depth = render(f)
    want_i, want_d = render(zoom * f)
    got_i, got_d = zoom_crop(image[None], depth[None], *_np([zoom], [0.5], [0.5]), xp=np)
    np.testing.assert_allclose(got_i[0], want_i, atol=2e-6)
    # |d depth / d u| = 2 / (f (1 - tx)^2) per source pixel; half of it bounds nearest's error.
    half_pixel = 0.5 * 2.0 / (f * (1.0 - np.abs(image[..., 0]).max()) ** 2)
    assert np.abs(got_d[0] - want_d).max() <= half_pixel
    assert np.isin(got_d, depth).all()  # every depth is one of the inputs


def test_host_and_device_make_the_same_crop():
    rng = np.random.default_rng(1)
    image = rng.random((4, 16, 32, 3)).astype(np.float32)
    depth = rng.uniform(0.5, 10, (4, 16, 32)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = 0  # invalid pixels stay invalid, never blended
    args = _np([1.0, 1.13, 1.3, 1.4], [0.0, 0.37, 0.5, 1.0], [1.0, 0.81, 0.5, 0.0])
    host = zoom_crop(image, depth, *args, xp=np)
    dev = jax.jit(zoom_crop)(*(jnp.asarray(a) for a in (image, depth, *args)))
    # Bilinear weights in float32: each output a convex mix of 4 inputs in [0, 1].
    np.testing.assert_allclose(np.asarray(dev[0]), host[0], atol=1e-5)
    # Nearest: a float32 position within rounding of a pixel edge may fall on either side of it.
    assert np.mean(np.asarray(dev[1]) != host[1]) <= 0.002
    assert np.isin(np.asarray(dev[1]), depth).all()


def test_draws_are_log_uniform_and_leave_the_other_draws_alone():
    n, zoom_range = 20000, (1.0, 1.4)
    d = jax.tree.map(np.asarray, draw_zoom(jax.random.key(0), n, zoom_range))
    assert d["zoom"].min() >= 1.0 and d["zoom"].max() <= 1.4
    logs = np.log(d["zoom"]) / np.log(1.4)  # uniform on [0, 1]: n/10 per tenth
    counts, _ = np.histogram(logs, bins=10, range=(0, 1))
    assert np.all(np.abs(counts - n / 10) <= 5 * np.sqrt(n * 0.1 * 0.9)), counts
    for k in ("top", "left"):
        assert 0 <= d[k].min() and d[k].max() < 1 and abs(d[k].mean() - 0.5) < 5 / np.sqrt(12 * n)
    on = dp.draw_zoedepth(jax.random.key(0), 64, dict(AUG, zoom=zoom_range))
    off = dp.draw_zoedepth(jax.random.key(0), 64, AUG)
    assert "zoom" not in off  # the default (1, 1): ZoeDepth's augmentation, nothing drawn
    for k, v in off.items():
        np.testing.assert_array_equal(np.asarray(on[k]), np.asarray(v))


def test_the_device_augmentation_zooms_first():
    """apply_zoedepth with zoom drawn = zoom_crop, then ZoeDepth's flip/rotation/colour."""
    rng = np.random.default_rng(2)
    image = rng.random((8, 16, 32, 3)).astype(np.float32)
    depth = rng.uniform(0.5, 10, (8, 16, 32)).astype(np.float32)
    aug = dict(AUG, zoom=(1.0, 1.4))
    draws = dp.draw_zoedepth(jax.random.key(3), 8, aug)
    got = dp.apply_zoedepth(image, depth, None, draws)
    zoomed = zoom_crop(image, depth, draws["zoom"], draws["top"], draws["left"])
    rest = {k: v for k, v in draws.items() if k not in ("zoom", "top", "left")}
    want = dp.apply_zoedepth(*zoomed, None, rest)
    for a, b in zip(got[:2], want[:2]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(zoomed[1]), depth)  # zoom 1 has probability 0


def test_host_augmentation_zooms_only_when_asked():
    rng = np.random.default_rng(4)
    ex = {
        "image": rng.random((16, 32, 3)).astype(np.float32),
        "depth": rng.uniform(0.5, 10, (16, 32)).astype(np.float32),
        "echo": rng.random((16, 32, 2)).astype(np.float32),
    }
    plain = dict(AUG, flip_p=0.0, color_p=0.0, rotation_deg=0.0)
    same = ZoeDepthAugment(plain).random_map(ex, np.random.default_rng(5))
    np.testing.assert_array_equal(same["depth"], ex["depth"])
    zoomed = ZoeDepthAugment(dict(plain, zoom=(1.2, 1.2))).random_map(ex, np.random.default_rng(5))
    # A 1.2x lens: 16 / 1.2 = 13.3 rows of the input fill the output, each at least once.
    rows_used = {tuple(r) for r in zoomed["depth"]}
    assert len(rows_used) <= 14 and np.isin(zoomed["depth"], ex["depth"]).all()
    np.testing.assert_array_equal(zoomed["echo"], ex["echo"])  # the sound does not zoom
