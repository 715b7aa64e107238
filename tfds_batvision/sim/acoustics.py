"""Binaural echoes for the simulator: the BatVision chirp through an image-source room response.

The rig's speaker sits at the camera centre and emits the BatVision chirp (docs/reference.md: a 20 Hz to
20 kHz sweep of about 3 ms); two microphones ``MIC_SPACING_M`` apart along the camera's x axis
(left ear at -x, right ear at +x) record it at 44.1 kHz through the room impulse response of
pyroomacoustics' image-source method (``ShoeBox`` with uniform wall absorption; the direct path is
included). The response is always metric: speed of sound ``SPEED_OF_SOUND`` = 343 m/s, whatever
scale the image was rendered at.

Acoustic approximation of the obstacles: the room planes reflect up to ``max_order`` through
pyroomacoustics' shoebox image sources; each box adds only its FIRST-ORDER specular reflections
(``box_reflections``: the source mirrored in every box face that faces both the source and the
ear, kept when the specular point lies on the face), with the same amplitude law as
pyroomacoustics (reflection coefficient ``sqrt(1 - absorption)`` over the path length) and the
same windowed-sinc fractional delay. Boxes do not occlude the room's reflections and take no part
in higher orders. The image-source order is small (``max_order``, default 3) to keep hundreds of
scenes fast; late reverberation is therefore truncated.

pyroomacoustics delays every image by a windowed-sinc fractional-delay filter centred
``(frac_delay_length - 1) / 2`` samples late; ``room_impulse_response`` removes that offset so
sample 0 of the response is the instant of emission.
"""

from __future__ import annotations

import numpy as np
import pyroomacoustics as pra
import scipy.signal

SAMPLE_RATE = 44100  # docs/reference.md: BatVision audio is 44.1 kHz.
SPEED_OF_SOUND = 343.0  # m/s, the metric scale every echo carries.
CHIRP_F0, CHIRP_F1 = 20.0, 20000.0  # docs/reference.md: 20 Hz to 20 kHz sweep.
CHIRP_SECONDS = 0.003  # docs/reference.md: about 3 ms.
MIC_SPACING_M = 0.2  # ear-to-ear distance of the rig.
# The ears are metric (MIC_SPACING_M) while a scene's wall margin shrinks with its global scale:
# in a scaled-down room an ear can poke through the wall (seen: 8 cm margin, seed 1), where the
# image-source method finds no path. Ears are kept this far inside the room.
EAR_WALL_CLEARANCE_M = 0.01
# The speaker sits at the camera centre, each ear MIC_SPACING_M / 2 away: the direct path reaches
# the ears this many samples after emission (0.1 m / 343 m/s * 44100 Hz = 12.9).
DIRECT_PATH_SAMPLES = round(0.5 * MIC_SPACING_M / SPEED_OF_SOUND * SAMPLE_RATE)
CHIRP_AMPLITUDE = 0.05  # the 0.1 m direct path (gain ~1/r = 10) then peaks near 0.5 full scale.


def chirp(fs: int = SAMPLE_RATE, seconds: float = CHIRP_SECONDS) -> np.ndarray:
    """The emitted signal [T]: a linear 20 Hz-20 kHz sweep with short raised-cosine fades."""
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    sig = scipy.signal.chirp(t, f0=CHIRP_F0, t1=seconds, f1=CHIRP_F1, method="linear")
    fade = max(1, n // 20)  # ~0.15 ms: avoids clicks at the ends that would smear the onset.
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    sig[:fade] *= ramp
    sig[-fade:] *= ramp[::-1]
    return CHIRP_AMPLITUDE * sig


def room_impulse_response(
    room_dims: np.ndarray,
    source: np.ndarray,
    mics: np.ndarray,
    *,
    absorption: float,
    max_order: int,
    fs: int = SAMPLE_RATE,
) -> np.ndarray:
    """Image-source room impulse responses [M, T] from ``source`` [3] to ``mics`` [M, 3].

    Sample 0 is the emission instant (the fractional-delay offset of pyroomacoustics removed).
    """
    room = pra.ShoeBox(
        np.asarray(room_dims, dtype=np.float64),
        fs=fs,
        max_order=max_order,
        materials=pra.Material(float(absorption)),
        air_absorption=False,
    )
    room.set_sound_speed(SPEED_OF_SOUND)
    room.add_source(np.asarray(source, dtype=np.float64))
    room.add_microphone_array(np.asarray(mics, dtype=np.float64).T)
    room.compute_rir()
    offset = (pra.constants.get("frac_delay_length") - 1) // 2
    rirs = [np.asarray(room.rir[m][0][offset:], dtype=np.float64) for m in range(len(mics))]
    length = max(len(r) for r in rirs)
    out = np.zeros((len(mics), length))
    for m, r in enumerate(rirs):
        out[m, : len(r)] = r
    return out


def _add_impulses(out: np.ndarray, delays: np.ndarray, amplitudes: np.ndarray) -> None:
    """Adds band-limited impulses at fractional sample ``delays`` [N] to ``out`` [T], in place.

    Hann-windowed sinc of ``frac_delay_length`` taps centred on the delay, as pyroomacoustics builds
    its responses (but without its constant offset).
    """
    n = pra.constants.get("frac_delay_length")
    half = (n - 1) // 2
    window = np.hanning(n)
    for delay, amp in zip(delays, amplitudes):
        i = int(np.floor(delay))
        taps = amp * window * np.sinc(np.arange(n) - half - (delay - i))
        lo, hi = i - half, i - half + n
        a, b = max(lo, 0), min(hi, len(out))
        if a < b:
            out[a:b] += taps[a - lo : b - lo]


def box_reflections(
    boxes,
    source: np.ndarray,
    mics: np.ndarray,
    *,
    absorption: float,
    length: int,
    fs: int = SAMPLE_RATE,
) -> np.ndarray:
    """First-order specular reflections [M, length] off the faces of axis-aligned ``boxes``.

    ``boxes`` have ``lo``/``hi`` corners [3] (``geometry.Box``); ``source`` [3], ``mics`` [M, 3].
    A face reflects towards a mic when both lie on its outer side and the segment from the mirrored
    source to the mic crosses the face's plane inside the face.
    """
    out = np.zeros((len(mics), length))
    gain = np.sqrt(1.0 - absorption)
    for m, mic in enumerate(mics):
        delays, amps = [], []
        for box in boxes:
            for k in range(3):
                for plane, sign in ((box.lo[k], -1.0), (box.hi[k], 1.0)):
                    if (source[k] - plane) * sign <= 0 or (mic[k] - plane) * sign <= 0:
                        continue
                    image = source.copy()
                    image[k] = 2 * plane - source[k]
                    s = (plane - image[k]) / (mic[k] - image[k])
                    hit = image + s * (mic - image)
                    others = [j for j in range(3) if j != k]
                    if np.all((hit[others] >= box.lo[others]) & (hit[others] <= box.hi[others])):
                        dist = float(np.linalg.norm(mic - image))
                        delays.append(dist / SPEED_OF_SOUND * fs)
                        amps.append(gain / dist)
        _add_impulses(out[m], np.asarray(delays), np.asarray(amps))
    return out


def ear_positions(pose: np.ndarray, spacing: float = MIC_SPACING_M) -> np.ndarray:
    """World positions [2, 3] of the [left, right] ears of a rig with camera-to-world ``pose``."""
    right = pose[:3, 0]
    centre = pose[:3, 3]
    return np.stack([centre - 0.5 * spacing * right, centre + 0.5 * spacing * right])


def record(
    rirs: np.ndarray, num_samples: int, chirp_start: int, noise_std: float, rng: np.random.Generator
) -> np.ndarray:
    """Ear signals [M, num_samples]: the chirp from ``chirp_start`` through ``rirs``, plus noise."""
    sig = chirp()
    out = np.zeros((rirs.shape[0], num_samples))
    for m in range(rirs.shape[0]):
        y = scipy.signal.fftconvolve(sig, rirs[m])[: num_samples - chirp_start]
        out[m, chirp_start : chirp_start + len(y)] = y
    out += noise_std * rng.standard_normal(out.shape)
    return out


def binaural_echo(
    room_dims: np.ndarray,
    pose: np.ndarray,
    *,
    num_samples: int,
    chirp_start: int,
    absorption: float,
    max_order: int,
    noise_std: float,
    rng: np.random.Generator,
    boxes=(),
) -> np.ndarray:
    """The [left, right] recording [2, num_samples] of the rig at ``pose`` in a shoebox room.

    ``boxes`` (``geometry.Box``) add their first-order reflections (module docstring).
    """
    ears = np.clip(
        ear_positions(pose),
        EAR_WALL_CLEARANCE_M,
        np.asarray(room_dims, dtype=np.float64) - EAR_WALL_CLEARANCE_M,
    )
    rirs = room_impulse_response(
        room_dims, pose[:3, 3], ears, absorption=absorption, max_order=max_order
    )
    if boxes and max_order >= 1:
        rirs = rirs + box_reflections(
            boxes, pose[:3, 3], ears, absorption=absorption, length=rirs.shape[1]
        )
    return record(rirs, num_samples, chirp_start, noise_std, rng)


def single_reflector_echo(
    distance: float,
    *,
    num_samples: int,
    chirp_start: int,
    noise_std: float = 0.0,
    rng: np.random.Generator | None = None,
    absorption: float = 0.1,
    far: float = 200.0,
) -> np.ndarray:
    """Echo [2, num_samples] of one wall ``distance`` metres in front of the rig (tests, checks).

    Built as a huge room whose other planes are ``far`` metres away, with max_order 1, so within the
    recording only the direct path and the one wall reflection arrive.
    """
    dims = np.array([distance + far, 2 * far, 2 * far])
    # The rig faces the x = 0 wall (heading pi) from x = distance.
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = [0, 1, 0], [0, 0, -1], [-1, 0, 0]
    pose[:3, 3] = [distance, far, far]
    rng = rng if rng is not None else np.random.default_rng(0)
    rirs = room_impulse_response(
        dims, pose[:3, 3], ear_positions(pose), absorption=absorption, max_order=1
    )
    return record(rirs, num_samples, chirp_start, noise_std, rng)
