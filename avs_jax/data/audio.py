"""BatVision echo features: the magnitude STFT of the binaural echo and its resize to the RGB size.

Follows the official BatVision preprocessing that AVS-Net says it uses (docs/reference.md, "Audio
preprocessing"; paper Sec. 3.1 "Audio embedding"): BV2 waveforms are cut to the two-way travel
time of sound to ``max_depth`` (``int(2 * max_depth / 340 * 44100)`` samples, 7782 for 30 m), BV1
waveforms are used whole; then an STFT with n_fft 512, window 64 (periodic Hann, zero-padded to
n_fft and centred in the frame as torch.stft and librosa do), hop 16, centred frames with reflect
padding, magnitude (power 1), no log and no normalisation. Channels stay [left, right], put last:
[F=257, T, 2]. The magnitude is then resized bilinearly to the RGB resolution before the audio
encoder. The input pipeline first moves each recording to the canonical chirp onset
(``tfds_batvision.onset``), so that the cut counts travel time from the same instant everywhere.

Pure numpy functions: they run inside grain workers, far from any accelerator. Stage-1
training computes the same features in the train step by default (`device_prep.py`).
"""

from __future__ import annotations

import functools

import numpy as np

# Official BatVision STFT settings (docs/reference.md, "Audio preprocessing").
N_FFT = 512
WIN_LENGTH = 64
HOP_LENGTH = 16
SAMPLE_RATE = 44100
# BatVision's crop uses 340 m/s (not 343): keep theirs so that 30 m -> 7782 samples as they cut.
SPEED_OF_SOUND_CROP = 340.0


def echo_cut_length(
    max_depth: float, sample_rate: int = SAMPLE_RATE, speed_of_sound: float = SPEED_OF_SOUND_CROP
) -> int:
    """Number of samples covering the round trip to ``max_depth`` (BV2 crop; 30 m -> 7782)."""
    return int(2 * max_depth / speed_of_sound * sample_rate)


@functools.lru_cache(maxsize=16)
def hann_window(win_length: int) -> np.ndarray:
    """Periodic Hann window [win_length] (torch.hann_window default, scipy/librosa 'hann')."""
    n = np.arange(win_length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)


def stft_magnitude(
    waveform: np.ndarray,
    n_fft: int = N_FFT,
    win_length: int = WIN_LENGTH,
    hop_length: int = HOP_LENGTH,
) -> np.ndarray:
    """Magnitude STFT of a multi-channel waveform, channels last.

    Args:
      waveform: [C, T] float waveform (BatVision: C = 2, [left, right]).
    Returns:
      float32 [n_fft // 2 + 1, 1 + T // hop_length, C] magnitudes, identical to
      ``abs(librosa.stft(x, n_fft, hop_length, win_length, window="hann", center=True,
      pad_mode="reflect"))`` per channel.

    The window (length ``win_length``) sits zero-padded in the middle of each ``n_fft`` frame.
    Only its ``win_length`` non-zero samples contribute, and moving them to the start of the frame
    only multiplies each bin by a unit-modulus phase factor, so the magnitude is computed from the
    ``win_length`` windowed samples zero-padded to ``n_fft``: 8x less work than full frames.
    """
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"stft_magnitude expects [C, T], got shape {x.shape}")
    pad = n_fft // 2
    xp = np.pad(x, ((0, 0), (pad, pad)), mode="reflect")
    n_frames = 1 + x.shape[1] // hop_length
    offset = (n_fft - win_length) // 2  # where the window starts inside a frame
    starts = offset + hop_length * np.arange(n_frames)
    idx = starts[:, None] + np.arange(win_length)[None, :]  # [T', win]
    segs = xp[:, idx] * hann_window(win_length)  # [C, T', win]
    spec = np.abs(np.fft.rfft(segs, n=n_fft, axis=-1))  # [C, T', F]
    return np.ascontiguousarray(spec.transpose(2, 1, 0)).astype(np.float32)


def batvision_echo_stft(
    audio: np.ndarray,
    max_depth: float | None,
    n_fft: int = N_FFT,
    win_length: int = WIN_LENGTH,
    hop_length: int = HOP_LENGTH,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """BatVision echo spectrogram [257, T', 2] of a [2, T] waveform.

    ``max_depth`` set (BV2): the waveform is first cut to ``echo_cut_length(max_depth)`` samples;
    ``None`` (BV1): no cut (docs/reference.md). A recording shorter than the cut (a BV1 recording
    evaluated with BV2's settings, as the paper does for its zero-shot BV1 test, Sec. 4.1) is
    zero-padded to it, so that an STFT column means the same travel time as in training.
    """
    if max_depth is not None:
        audio = cut_or_pad(audio, echo_cut_length(max_depth, sample_rate))
    return stft_magnitude(audio, n_fft, win_length, hop_length)


def cut_or_pad(audio: np.ndarray, n: int) -> np.ndarray:
    """[C, T] -> [C, n]: the first ``n`` samples, zero-padded at the end when T < n."""
    audio = audio[:, :n]
    return np.pad(audio, ((0, 0), (0, n - audio.shape[1]))) if audio.shape[1] < n else audio


def device_wave_length(stft: dict, max_depth: float) -> int:
    """Samples of the waveforms that the host hands to the train step (config.data.device_prep).

    ``stft``: config.data.stft. With ``cut_to_max_depth``, the cut to the round trip to
    ``stft["max_depth"] or max_depth`` (BV2: 7782); else ``stft["num_samples"]``, the room
    given to recordings used whole (BV1's own setting), each zero-padded to it and sent with its
    own length (docs/reference.md, "Audio preprocessing").
    """
    if stft["cut_to_max_depth"]:
        return echo_cut_length(stft.get("max_depth") or max_depth, stft["sample_rate"])
    return int(stft["num_samples"])


@functools.lru_cache(maxsize=64)
def _bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D linear interpolation taps (i0, i1, w1) for n_in -> n_out, half-pixel centres."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of [H, W, C] (or [H, W]) to ``size`` = (H', W'), half-pixel centres.

    Same sampling as ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
    without antialiasing. Separable, two taps per axis (gathers, no dense matrices).
    """
    x = np.asarray(x, np.float32)
    r0, r1, wr = _bilinear_taps(x.shape[0], size[0])
    c0, c1, wc = _bilinear_taps(x.shape[1], size[1])
    extra = (1,) * (x.ndim - 2)
    wr = wr.reshape((-1, 1) + extra)
    rows = x[r0] * (1 - wr) + x[r1] * wr  # [H', W, ...]
    wc = wc.reshape((1, -1) + extra)
    return rows[:, c0] * (1 - wc) + rows[:, c1] * wc


def echo_features(
    audio: np.ndarray,
    size: tuple[int, int],
    max_depth: float | None,
    n_fft: int = N_FFT,
    win_length: int = WIN_LENGTH,
    hop_length: int = HOP_LENGTH,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """AVS-Net echo input [H, W, 2]: BatVision STFT magnitude resized to the RGB size ``size``."""
    spec = batvision_echo_stft(audio, max_depth, n_fft, win_length, hop_length, sample_rate)
    return resize_bilinear(spec, size)
