"""Grad-CAM highlights the STFT time column that a model's output depends on."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from avs_jax.evaluation.gradcam import cam_from_activations, grad_cam

COLUMN = 5


class ColumnModel(nn.Module):
    """Features selective in time (a 1×3 conv over time, ReLU); depth reads one time column."""

    @nn.compact
    def __call__(self, stft, train=False):
        feats = nn.relu(nn.Conv(8, (1, 3), padding="SAME", name="features")(stft))
        self.sow("intermediates", "echo_features", feats)
        feats = self.perturb("echo_features", feats)
        # The output depends only on time column COLUMN of the features.
        return feats[:, :, COLUMN, :].sum(axis=(1, 2))


def test_gradcam_highlights_the_only_column_that_matters():
    model = ColumnModel()
    stft = jax.random.uniform(jax.random.key(0), (2, 16, 12, 2))
    variables = model.init(jax.random.key(1), stft)
    cam = np.asarray(
        grad_cam(model.apply, variables, "echo_features", lambda y: y, stft, method="hirescam")
    )
    # Exactly the column lights up: every other column has zero gradient.
    assert cam[:, :, COLUMN].max() == 1.0 and (cam[:, :, COLUMN] > 0).mean() > 0.5
    np.testing.assert_array_equal(np.delete(cam, COLUMN, axis=2), 0.0)
    # Resized to the STFT size it still peaks in that column.
    big = np.asarray(
        grad_cam(
            model.apply,
            variables,
            "echo_features",
            lambda y: y,
            stft,
            method="hirescam",
            out_size=(16, 24),
        )
    )
    assert np.argmax(big.sum(axis=(0, 1))) in (2 * COLUMN, 2 * COLUMN + 1)


def test_gradcam_with_time_selective_channels_peaks_at_the_column():
    # Two channels: channel 0 is active only in column COLUMN, channel 1 everywhere else. The
    # output reads channel 0, so alpha_1 = 0 and the map is channel 0: the column.
    acts = np.zeros((1, 4, 10, 2), np.float32)
    acts[:, :, COLUMN, 0] = 1.0
    acts[:, :, :, 1] = 1.0
    acts[:, :, COLUMN, 1] = 0.0
    grads = np.zeros_like(acts)
    grads[..., 0] = 1.0  # d y / d A_0 = 1 everywhere (y = sum of channel 0)
    cam = np.asarray(cam_from_activations(jnp.asarray(acts), jnp.asarray(grads)))
    assert np.argmax(cam.sum(axis=1)[0]) == COLUMN
    np.testing.assert_allclose(cam[0, :, COLUMN], 1.0)
    np.testing.assert_allclose(np.delete(cam[0], COLUMN, axis=1), 0.0)
