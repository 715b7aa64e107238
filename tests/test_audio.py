"""Tests of the BatVision echo STFT against librosa and of the bilinear resize."""

import batvision_fixture as fx
import librosa
import numpy as np
import soundfile as sf

from avs_jax.data import audio

SAMPLE = fx.REAL_BV2_WAV


def _librosa_mag(x):
    return np.abs(
        librosa.stft(
            x,
            n_fft=512,
            hop_length=16,
            win_length=64,
            window="hann",
            center=True,
            pad_mode="reflect",
        )
    )


def test_stft_matches_librosa_random():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3197))
    ours = audio.stft_magnitude(x)
    for c in range(2):
        ref = _librosa_mag(x[c])
        assert ours[..., c].shape == ref.shape
        np.testing.assert_allclose(ours[..., c], ref, rtol=1e-5, atol=1e-5 * ref.max())


def test_stft_matches_librosa_real_bv2_echo_cut():
    data, sr = sf.read(SAMPLE, dtype="int32")
    assert sr == 44100
    wav = data.T.astype(np.float64) / 2**31
    ours = audio.batvision_echo_stft(wav, max_depth=30.0)
    assert audio.echo_cut_length(30.0) == 7782
    assert ours.shape == (257, 1 + 7782 // 16, 2)
    for c in range(2):
        ref = _librosa_mag(wav[c, :7782])
        np.testing.assert_allclose(ours[..., c], ref, rtol=1e-5, atol=1e-5 * ref.max())


def test_hann_is_periodic():
    w = audio.hann_window(64)
    np.testing.assert_allclose(w, np.hanning(65)[:64], atol=1e-12)


def test_resize_bilinear_linear_ramp_and_constant():
    # A linear ramp stays linear under bilinear (half-pixel) resampling away from the borders.
    x = np.tile(np.arange(8, dtype=np.float32)[None, :, None], (4, 1, 2))
    y = audio.resize_bilinear(x, (4, 16))
    expected = np.clip((np.arange(16) + 0.5) * 0.5 - 0.5, 0, 7)
    np.testing.assert_allclose(y[0, :, 0], expected, atol=1e-6)
    c = audio.resize_bilinear(np.full((5, 7, 2), 3.0, np.float32), (11, 3))
    np.testing.assert_allclose(c, 3.0, atol=1e-6)


def test_echo_features_identity_size():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 800))
    spec = audio.batvision_echo_stft(x, None)
    np.testing.assert_allclose(audio.echo_features(x, spec.shape[:2], None), spec, rtol=1e-6)


def test_short_recording_is_zero_padded_to_the_cut():
    """A 3200-sample BV1 echo with BV2's 30 m settings: the same columns mean the same times."""
    from avs_jax.data import audio

    rng = np.random.default_rng(5)
    short = rng.normal(size=(2, 3200)).astype(np.float32)
    padded = np.concatenate([short, np.zeros((2, 7782 - 3200), np.float32)], axis=1)
    a = audio.batvision_echo_stft(short, 30.0)
    b = audio.stft_magnitude(padded)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert a.shape[1] == 1 + 7782 // 16
