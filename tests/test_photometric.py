"""Photometric losses against numpy computed directly, and their invariants."""

import jax
import jax.numpy as jnp
import numpy as np

from avs_jax.losses import photometric as P


def _numpy_ssim_loss(x, y):
    """Direct per-pixel SSIM loss (reflection pad 1, 3×3 window means) of `[H, W]` images."""
    xp, yp = np.pad(x, 1, mode="reflect"), np.pad(y, 1, mode="reflect")
    out = np.zeros_like(x, dtype=np.float64)
    c1, c2 = 0.01**2, 0.03**2
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            a = xp[i : i + 3, j : j + 3].astype(np.float64)
            b = yp[i : i + 3, j : j + 3].astype(np.float64)
            mx, my = a.mean(), b.mean()
            vx, vy = (a * a).mean() - mx**2, (b * b).mean() - my**2
            cxy = (a * b).mean() - mx * my
            s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            out[i, j] = np.clip((1 - s) / 2, 0, 1)
    return out


def test_ssim_matches_direct_numpy():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(1, 5, 7, 2)).astype(np.float32)
    y = np.clip(x + rng.normal(scale=0.2, size=x.shape), 0, 1).astype(np.float32)
    got = np.asarray(P.ssim_loss(jnp.asarray(x), jnp.asarray(y)))
    for c in range(2):
        np.testing.assert_allclose(
            got[0, ..., c], _numpy_ssim_loss(x[0, ..., c], y[0, ..., c]), atol=1e-5
        )
    # The reprojection error mixes it with L1 by 0.85 / 0.15 over channel means.
    rep = np.asarray(P.reprojection_loss(jnp.asarray(x), jnp.asarray(y), 0.85))[0]
    ref = 0.85 * got[0].mean(-1) + 0.15 * np.abs(x - y)[0].mean(-1)
    np.testing.assert_allclose(rep, ref, atol=1e-6)


def test_identical_frames_give_zero_reprojection_loss():
    x = jax.random.uniform(jax.random.key(0), (2, 6, 8, 3))
    np.testing.assert_allclose(np.asarray(P.reprojection_loss(x, x, 0.85)), 0.0, atol=1e-6)


def test_automasking_masks_pixel_where_identity_is_lower():
    # Two sources, one image of 1×3 pixels.
    reprojection = jnp.array([[[[0.5, 0.2, 0.9]]], [[[0.4, 0.3, 0.8]]]])  # [2, 1, 1, 3]
    identity = jnp.array([[[[0.1, 0.6, 0.85]]], [[[0.7, 0.6, 0.2]]]])
    loss, mask = P.min_reprojection(reprojection, identity)
    # Pixel 0: identity 0.1 wins (static) → masked; pixel 1: warped 0.2 wins; pixel 2: identity 0.2.
    np.testing.assert_array_equal(np.asarray(mask)[0, 0], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(float(loss), (0.1 + 0.2 + 0.2) / 3, rtol=1e-6)
    loss, mask = P.min_reprojection(reprojection, None)
    np.testing.assert_allclose(float(loss), (0.4 + 0.2 + 0.8) / 3, rtol=1e-6)


def test_smoothness_is_invariant_to_disparity_scale_and_edge_aware():
    rng = np.random.default_rng(1)
    disp = jnp.asarray(rng.uniform(0.1, 1.0, size=(2, 6, 8, 1)), jnp.float32)
    image = jnp.asarray(rng.uniform(size=(2, 6, 8, 3)), jnp.float32)
    base = float(P.smoothness_loss(disp, image))
    assert base > 0.0
    np.testing.assert_allclose(float(P.smoothness_loss(3.7 * disp, image)), base, rtol=1e-5)
    # A step in disparity costs less where the image has an edge at the same place.
    step = jnp.concatenate([jnp.ones((1, 4, 4, 1)), 2 * jnp.ones((1, 4, 4, 1))], axis=2)
    flat = jnp.zeros((1, 4, 8, 3))
    edge = jnp.concatenate([jnp.zeros((1, 4, 4, 3)), jnp.ones((1, 4, 4, 3))], axis=2)
    assert float(P.smoothness_loss(step, edge)) < float(P.smoothness_loss(step, flat))
    # Hand value on the flat image: d* = d / 1.5, one jump of 1/1.5 in 4 of 4×7 x-differences.
    np.testing.assert_allclose(float(P.smoothness_loss(step, flat)), (1 / 1.5) * 4 / 28, rtol=1e-5)


def test_multiscale_total_is_mean_over_scales_with_weighted_smoothness():
    rng = np.random.default_rng(2)
    b, h, w = 1, 8, 8
    target = jnp.asarray(rng.uniform(size=(b, h, w, 3)), jnp.float32)
    sources = jnp.asarray(rng.uniform(size=(2, b, h, w, 3)), jnp.float32)
    warped = jnp.asarray(rng.uniform(size=(2, 2, b, h, w, 3)), jnp.float32)
    disps = [
        jnp.asarray(rng.uniform(size=(b, h // 2**s, w // 2**s, 1)), jnp.float32) for s in range(2)
    ]
    pyramid = [target, target[:, ::2, ::2]]
    total, metrics = P.multiscale_photometric_loss(
        warped,
        disps,
        sources,
        target,
        pyramid,
        None,
        ssim_weight=0.85,
        smoothness_weight=1e-3,
        automask=True,
        identity_noise=1e-5,
    )
    identity = P.reprojection_loss(sources, target, 0.85)
    expected = 0.0
    for s in range(2):
        photo, _ = P.min_reprojection(P.reprojection_loss(warped[s], target, 0.85), identity)
        expected += float(photo) + 1e-3 / 2**s * float(P.smoothness_loss(disps[s], pyramid[s]))
    np.testing.assert_allclose(float(total), expected / 2, rtol=1e-6)
    # The tie-break noise is 1e-5 in size: the loss barely moves.
    noisy, _ = P.multiscale_photometric_loss(
        warped,
        disps,
        sources,
        target,
        pyramid,
        jax.random.key(0),
        ssim_weight=0.85,
        smoothness_weight=1e-3,
        automask=True,
        identity_noise=1e-5,
    )
    np.testing.assert_allclose(float(noisy), float(total), atol=1e-4)
    assert 0.0 < float(metrics["automask_fraction"]) < 1.0
