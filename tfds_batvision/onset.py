"""Where the chirp arrives in a BatVision recording, and every recording moved to one onset.

A BatVision recording starts some time before the speaker emits its chirp: real BV2 files near
sample 287, real BV1 files near 970-980 (docs/reference.md, "Echo onset alignment"). The network
reads range from the STFT column at which an echo arrives, so two rigs with different lead-ins
give the same room different ranges: BV1 read with BV2's cut looks ~693 samples (2.7 m) deeper.
``detect_onset`` finds the direct path (the chirp's first arrival at the ears, always the loudest
event: the speaker sits between the microphones) and ``align_to_onset`` shifts the recording so
that it lands on ``CANONICAL_ONSET``, BV2's onset, before the cut.

Detection is an energy onset, not a matched filter: the emitted chirp is only known as "a 20 Hz to
20 kHz sweep of about 3 ms", and what reaches the microphones is shaped by the speaker. The
binaural envelope ``e[n] = sqrt(mean_ears (x[n] - median)**2)`` has one definition for a loud and
a quiet ear (a dead ear halves the energy, it does not move the onset); the onset is the first
sample where ``e`` reaches ``REL_THRESHOLD`` of its peak and stays there for most of the next
samples (so a lone click does not count). On the real BV2 sample this gives 287; on the
simulator's recordings it is within 3 samples of the true arrival (tests/test_onset.py).

Numpy only: used by the builder (which stores the onset of every recording) and by the input
pipeline, without importing TFDS.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# BV2's onset (the real sample in the team's test data measures 287; docs/reference.md), so that
# aligned BV2 recordings move by at most their jitter and the paper's BV2 cut keeps its meaning.
CANONICAL_ONSET = 287
# The onset is where the envelope first reaches 10% (-20 dB) of its peak: the direct path rises
# from the noise floor (~0.2% of the peak on real BV2) to its peak within ~15 samples.
REL_THRESHOLD = 0.1
# A crossing counts when at least RUN_MIN of the RUN_LENGTH samples from it reach the threshold.
RUN_LENGTH, RUN_MIN = 8, 4
# Noise floor: this percentile of the envelope. Real recordings are mostly lead-in and decaying
# echoes, so their quietest tenth is noise (a median would be the reverberant tail in a short
# BV1 recording of a live room).
FLOOR_PERCENTILE = 10
# The threshold never goes below this many noise floors: in a noisy recording the onset is then
# late by a sample or two rather than triggered by noise.
NOISE_FACTOR = 5.0
# A recording whose peak is less than this many noise floors holds no chirp to find.
MIN_PEAK_TO_FLOOR = 10.0
# The same test on the envelope's RMS over SMOOTH_SAMPLES: a sample-wise peak of white noise
# alone reaches ~10 noise floors in long recordings (3.2 sigma over 20000 samples against a 10th
# percentile of 0.3 sigma), a 32-sample RMS of it stays below 1.7 floors (600 draws), while a
# chirp (~130 samples) keeps its height: 134 on the real BV2 sample, 7 on simulated recordings
# with noise at 6% of the direct path's peak.
SMOOTH_SAMPLES = 32
MIN_SMOOTH_PEAK_TO_FLOOR = 4.0
# Onsets further than this from their split's median are reported: 64 samples = 25 cm of range.
OUTLIER_MIN_SAMPLES = 64
OUTLIER_MADS = 5.0


class NoOnsetError(ValueError):
    """A recording in which no chirp stands out of the noise (silent, or noise only)."""


def envelope(audio: np.ndarray) -> np.ndarray:
    """Binaural envelope [T] of a [C, T] recording: RMS over channels after removing each median."""
    x = np.asarray(audio, np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"expected a [channels, samples] recording, got shape {x.shape}")
    x = x - np.median(x, axis=1, keepdims=True)
    return np.sqrt(np.mean(x * x, axis=0))


def detect_onset(audio: np.ndarray) -> int:
    """Sample index of the chirp's first arrival in a [C, T] recording (see module docstring).

    Raises ``NoOnsetError`` when the recording's peak is within ``MIN_PEAK_TO_FLOOR`` of its
    noise floor, or its ``SMOOTH_SAMPLES`` RMS within ``MIN_SMOOTH_PEAK_TO_FLOOR`` of its own
    (noise alone passes the first test one time in three in a 20000-sample recording).
    """
    e = envelope(audio)
    peak = float(e.max())
    floor = float(np.percentile(e, FLOOR_PERCENTILE))
    if not np.isfinite(peak) or peak <= 0 or peak < MIN_PEAK_TO_FLOOR * floor:
        raise NoOnsetError(
            f"no chirp stands out of the noise: peak {peak:.3g}, noise floor {floor:.3g} "
            f"(need a peak at least {MIN_PEAK_TO_FLOOR:g}x the floor)"
        )
    # A recording shorter than 32 windows (only test-sized ones) is smoothed over fewer samples.
    width = max(1, min(SMOOTH_SAMPLES, e.size // 32))
    smooth = np.sqrt(np.convolve(e * e, np.full(width, 1.0 / width), mode="valid"))
    s_peak, s_floor = float(smooth.max()), float(np.percentile(smooth, FLOOR_PERCENTILE))
    if s_peak < MIN_SMOOTH_PEAK_TO_FLOOR * s_floor:
        raise NoOnsetError(
            f"no chirp stands out of the noise: its {width}-sample RMS peaks at {s_peak:.3g}, "
            f"{s_peak / s_floor:.2g}x its noise floor {s_floor:.3g} (need "
            f"{MIN_SMOOTH_PEAK_TO_FLOOR:g}x; white noise alone stays below 2x)"
        )
    above = e >= max(REL_THRESHOLD * peak, NOISE_FACTOR * floor)
    # counts[n] = how many of above[n : n + RUN_LENGTH] hold.
    counts = np.convolve(above.astype(np.int32), np.ones(RUN_LENGTH, np.int32))[RUN_LENGTH - 1 :]
    hits = np.flatnonzero(above & (counts >= RUN_MIN))
    # The peak sample itself always qualifies unless it is an isolated click at the very end.
    return int(hits[0]) if hits.size else int(np.argmax(e))


def align_to_onset(audio: np.ndarray, onset: int, target: int = CANONICAL_ONSET) -> np.ndarray:
    """[C, T] recording shifted so that sample ``onset`` lands on ``target``.

    A later onset drops ``onset - target`` leading samples (the recording gets shorter); an earlier
    one is preceded by ``target - onset`` zeros. The cut that follows (``audio.echo_features``)
    then counts travel time from the same instant for every recording.
    """
    shift = int(onset) - int(target)
    if shift >= 0:
        return audio[:, shift:]
    return np.pad(audio, ((0, 0), (-shift, 0)))


def onset_outliers(onsets: Mapping[str, int]) -> tuple[float, float, dict[str, int]]:
    """(median, allowed deviation, {id: onset} of the outliers) of a split's onsets.

    Allowed deviation: ``OUTLIER_MADS`` robust standard deviations (1.4826 MAD), at least
    ``OUTLIER_MIN_SAMPLES``.
    """
    values = np.asarray(list(onsets.values()), np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), {}
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med)))
    allowed = max(float(OUTLIER_MIN_SAMPLES), OUTLIER_MADS * 1.4826 * mad)
    return med, allowed, {k: v for k, v in onsets.items() if abs(v - med) > allowed}


def onset_summary(onsets: Mapping[str, int]) -> str:
    """One line: how many onsets, their min / 5% / median / 95% / max in samples."""
    v = np.asarray(list(onsets.values()), np.float64)
    if v.size == 0:
        return "no recordings"
    q = np.percentile(v, [0, 5, 50, 95, 100])
    return (
        f"{v.size} recordings, onset (samples) min {q[0]:.0f}, 5% {q[1]:.0f}, median {q[2]:.0f}, "
        f"95% {q[3]:.0f}, max {q[4]:.0f}"
    )
