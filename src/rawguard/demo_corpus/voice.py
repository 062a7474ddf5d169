"""Procedural source-filter voice model: the demo corpus's "bona fide" speakers.

An utterance is a random sequence of phrases, words and syllables built from vowel, approximant,
nasal, fricative and stop segments. Each segment sets targets for the formant frequencies, the
voicing / aspiration / frication amplitudes and the frication colour; the targets are smoothed
into continuous trajectories (coarticulation) at a 5 ms control rate.

Source: a train of Rosenberg glottal-flow-derivative pulses whose periods follow an F0 contour
(phrase declination, pitch accents on stressed syllables, final lowering, slow drift) with
cycle-to-cycle jitter and shimmer, plus aspiration noise gated by the glottal open phase
(breathiness). Filter: a cascade of resonators (F1-F4 moving, F5-F6 fixed, all scaled by the
speaker's vocal-tract length) applied with :func:`~rawguard.dsp.block_filter`; frication
noise goes through a parallel resonance. Speakers differ in F0 range, vocal-tract length,
breathiness, jitter/shimmer, glottal open quotient and speaking rate.

No part of this is a recording or a learned model, so the "bona fide" class is procedural; what
matters for the demo is that spoofs are made from these same voices by vocoder-like resynthesis,
so the only systematic difference between the classes is the resynthesis itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rawguard.conventions import SAMPLE_RATE
from rawguard.dsp import block_filter, interp_track, resonator_response, smooth

CONTROL_HOP = 80  # 5 ms at 16 kHz: parameter update rate, as in the Klatt synthesiser
FILTER_FFT = 1024  # block-filter grid; the narrowest resonance (50 Hz) decays well within it

# Formant targets F1-F4 (Hz) of an adult male reference vocal tract (Peterson & Barney averages,
# F4 filled in); scaled per speaker by the vocal-tract-length factor.
VOWELS: dict[str, tuple[float, float, float, float]] = {
    "i": (270, 2290, 3010, 3700),
    "I": (390, 1990, 2550, 3600),
    "E": (530, 1840, 2480, 3500),
    "ae": (660, 1720, 2410, 3500),
    "a": (730, 1090, 2440, 3400),
    "O": (570, 840, 2410, 3400),
    "U": (440, 1020, 2240, 3400),
    "u": (300, 870, 2240, 3400),
    "V": (640, 1190, 2390, 3500),
    "er": (490, 1350, 1690, 3300),
}
# Consonants: (kind, F1-F4 targets, frication centre Hz, frication bandwidth Hz, voiced)
CONSONANTS: dict[str, tuple[str, tuple[float, float, float, float], float, float, bool]] = {
    "m": ("nasal", (280, 1000, 2300, 3300), 0, 0, True),
    "n": ("nasal", (280, 1500, 2500, 3400), 0, 0, True),
    "l": ("approx", (360, 1300, 2700, 3600), 0, 0, True),
    "w": ("approx", (300, 650, 2200, 3300), 0, 0, True),
    "r": ("approx", (310, 1060, 1380, 3200), 0, 0, True),
    "j": ("approx", (260, 2070, 3020, 3700), 0, 0, True),
    "s": ("fric", (400, 1700, 2600, 3500), 5500, 2500, False),
    "z": ("fric", (300, 1700, 2600, 3500), 5200, 2500, True),
    "S": ("fric", (400, 1900, 2500, 3500), 3000, 1500, False),
    "f": ("fric", (400, 1200, 2400, 3400), 4500, 6000, False),
    "v": ("fric", (300, 1200, 2400, 3400), 4000, 6000, True),
    "h": ("aspir", (500, 1500, 2500, 3500), 0, 0, False),
    "p": ("stop", (400, 900, 2300, 3400), 1200, 2500, False),
    "t": ("stop", (400, 1700, 2600, 3500), 4200, 3000, False),
    "k": ("stop", (400, 1900, 2300, 3400), 2200, 1200, False),
    "b": ("stop", (300, 900, 2300, 3400), 1200, 2500, True),
    "d": ("stop", (300, 1700, 2600, 3500), 4000, 3000, True),
    "g": ("stop", (300, 1900, 2300, 3400), 2000, 1200, True),
}
ONSETS = list(CONSONANTS)
CODAS = ["m", "n", "l", "r", "s", "z", "t", "k", "d", "f", "S"]
FIXED_FORMANTS = (4500.0, 5500.0)  # F5, F6 (reference tract), widen the spectrum up to 8 kHz


@dataclass(frozen=True)
class Speaker:
    """Parameters of one synthetic speaker (all drawn by :func:`random_speaker`)."""

    speaker_id: str
    f0_mean: float  # Hz
    f0_range: float  # semitones of accent excursion
    tract_scale: float  # formant scaling (1 / relative vocal-tract length)
    breathiness: float  # aspiration-noise level relative to voicing
    jitter: float  # relative std of cycle-to-cycle period perturbation
    shimmer: float  # std of cycle-to-cycle log-amplitude perturbation
    open_quotient: float  # glottal open phase as a fraction of the period
    rate: float  # speaking-rate factor (segment durations are divided by it)
    tilt: float  # extra spectral tilt of the source: first-order low-pass pole (0 = none)

    def to_dict(self) -> dict:
        return asdict(self)


def random_speaker(speaker_id: str, rng: np.random.Generator) -> Speaker:
    """Draw a speaker: roughly half low-pitched / long tract, half high-pitched / short tract."""
    high = rng.random() < 0.5
    return Speaker(
        speaker_id=speaker_id,
        f0_mean=float(rng.uniform(170, 240) if high else rng.uniform(90, 140)),
        f0_range=float(rng.uniform(2.0, 6.0)),
        tract_scale=float(rng.uniform(1.08, 1.22) if high else rng.uniform(0.9, 1.03)),
        breathiness=float(rng.uniform(0.03, 0.25)),
        jitter=float(rng.uniform(0.004, 0.015)),
        shimmer=float(rng.uniform(0.02, 0.07)),
        open_quotient=float(rng.uniform(0.45, 0.7)),
        rate=float(rng.uniform(0.85, 1.2)),
        tilt=float(rng.uniform(0.0, 0.6)),
    )


@dataclass
class _Tracks:
    """Control-rate parameter tracks, one row per 5 ms frame."""

    formants: list  # [4] per frame
    bandwidths: list
    voicing: list  # amplitude of the glottal source
    aspiration: list  # aspiration noise through the vocal tract (h, stop release)
    frication: list  # noise through the frication resonance
    fric_freq: list
    fric_bw: list
    accent: list  # 1 on stressed vowels (F0 accent)
    phrase: list  # phrase index (-1 in pauses)


def _append(tracks: _Tracks, frames: int, formants, voicing, aspiration=0.0, frication=0.0,
            fric_freq=4000.0, fric_bw=3000.0, accent=0.0, phrase=0, bandwidths=None) -> None:
    bw = bandwidths if bandwidths is not None else (70.0, 100.0, 150.0, 220.0)
    for _ in range(max(1, frames)):
        tracks.formants.append(formants)
        tracks.bandwidths.append(bw)
        tracks.voicing.append(voicing)
        tracks.aspiration.append(aspiration)
        tracks.frication.append(frication)
        tracks.fric_freq.append(fric_freq)
        tracks.fric_bw.append(fric_bw)
        tracks.accent.append(accent)
        tracks.phrase.append(phrase)


def _segments(speaker: Speaker, duration: float, rng: np.random.Generator) -> _Tracks:
    """Random phrase / word / syllable structure -> step targets at the control rate."""
    tracks = _Tracks(*[[] for _ in range(9)])
    frames_per_s = SAMPLE_RATE / CONTROL_HOP
    ms = lambda lo, hi: int(rng.uniform(lo, hi) / 1000 * frames_per_s / speaker.rate)  # noqa: E731
    total = int(duration * frames_per_s)
    phrase = 0
    neutral = VOWELS["V"]
    while len(tracks.voicing) < total:
        if phrase > 0:  # pauses only between phrases: the utterance starts and ends with speech
            _append(tracks, ms(150, 400), neutral, 0.0, phrase=-1)
        n_words = int(rng.integers(2, 6))
        for _word in range(n_words):
            n_syll = int(rng.integers(1, 4))
            stressed = int(rng.integers(0, n_syll))
            for syll in range(n_syll):
                if len(tracks.voicing) >= total:  # stop at the requested duration
                    break
                if rng.random() < 0.75:
                    _consonant(tracks, rng.choice(ONSETS), ms, phrase, rng)
                vowel = VOWELS[rng.choice(list(VOWELS))]
                accent = 1.0 if (syll == stressed and rng.random() < 0.7) else 0.0
                length = ms(110, 200) if accent else ms(60, 140)
                _append(tracks, length, vowel, 1.0 if accent else 0.8, accent=accent, phrase=phrase,
                        aspiration=0.0)
                if rng.random() < 0.4:
                    _consonant(tracks, rng.choice(CODAS), ms, phrase, rng)
            if rng.random() < 0.15:  # short word-boundary gap
                _append(tracks, ms(20, 60), neutral, 0.0, phrase=phrase)
        phrase += 1
    return tracks


def _consonant(tracks: _Tracks, name: str, ms, phrase: int, rng: np.random.Generator) -> None:
    kind, formants, fc, fb, voiced = CONSONANTS[name]
    fc = fc * rng.uniform(0.9, 1.1)
    if kind == "nasal":
        _append(tracks, ms(50, 90), formants, 0.35, phrase=phrase, bandwidths=(100.0, 200.0, 300.0, 400.0))
    elif kind == "approx":
        _append(tracks, ms(40, 80), formants, 0.6, phrase=phrase)
    elif kind == "fric":
        _append(tracks, ms(70, 130), formants, 0.3 if voiced else 0.0, frication=0.5 if voiced else 0.8,
                fric_freq=fc, fric_bw=fb, phrase=phrase)
    elif kind == "aspir":
        _append(tracks, ms(50, 90), formants, 0.0, aspiration=0.5, phrase=phrase)
    else:  # stop: closure (voice bar if voiced), burst, aspiration if voiceless
        _append(tracks, ms(40, 80), formants, 0.12 if voiced else 0.0, phrase=phrase)
        _append(tracks, ms(8, 15), formants, 0.0, frication=1.0, fric_freq=fc, fric_bw=fb, phrase=phrase)
        if not voiced:
            _append(tracks, ms(25, 50), formants, 0.0, aspiration=0.4, phrase=phrase)


def _f0_contour(speaker: Speaker, tracks: _Tracks, rng: np.random.Generator) -> np.ndarray:
    """F0 [K] in Hz: declination per phrase, accents, final lowering and slow drift (semitones)."""
    n = len(tracks.voicing)
    phrase = np.asarray(tracks.phrase)
    semis = np.zeros(n)
    for p in np.unique(phrase[phrase >= 0]):
        idx = np.flatnonzero(phrase == p)
        pos = (idx - idx[0]) / max(1, idx[-1] - idx[0])
        start = rng.uniform(1.0, 3.0)
        semis[idx] += start - pos * rng.uniform(2.5, 5.0)  # declination
        semis[idx] -= np.clip(pos - 0.85, 0, None) / 0.15 * rng.uniform(0.5, 2.5)  # final lowering
    accent = smooth(np.asarray(tracks.accent, dtype=float), 24) * speaker.f0_range
    drift = smooth(rng.normal(0, 1.0, n), 60) * 6.0
    semis = smooth(semis, 10) + accent + drift
    return speaker.f0_mean * 2 ** (semis / 12)


def _glottal_source(speaker: Speaker, f0: np.ndarray, voicing: np.ndarray, length: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rosenberg flow-derivative pulse train [length] and open-phase gate [length] (for aspiration)."""
    f0_s = interp_track(f0, CONTROL_HOP, length)
    times = []
    t = float(rng.uniform(0, SAMPLE_RATE / f0_s[0]))
    while t < length - 1:
        times.append(t)
        t += SAMPLE_RATE / f0_s[int(t)] * (1.0 + speaker.jitter * rng.standard_normal())
    times = np.asarray(times)
    periods = np.diff(np.append(times, times[-1] + SAMPLE_RATE / f0_s[-1]))
    amps = interp_track(voicing, CONTROL_HOP, length)[times.astype(int)]
    amps = amps * np.exp(speaker.shimmer * rng.standard_normal(len(times)))
    keep = amps > 1e-3
    times, periods, amps = times[keep], periods[keep], amps[keep]
    source = np.zeros(length + 2048)
    gate = np.zeros(length + 2048)
    if len(times) == 0:
        return source[:length], gate[:length]
    width = int(np.ceil(periods.max())) + 2
    # Rosenberg flow: rise 0.5(1 - cos(pi t/Tp)) over Tp, fall cos(pi (t - Tp) / (2 Tn)) over Tn
    n = np.arange(width)[None, :] - (times - np.floor(times))[:, None]  # sub-sample pulse onsets
    tp = (speaker.open_quotient * 0.7 * periods)[:, None]
    tn = (speaker.open_quotient * 0.3 * periods)[:, None]
    rise = 0.5 * (1 - np.cos(np.pi * np.clip(n, 0, None) / tp))
    fall = np.cos(np.pi * np.clip(n - tp, 0, None) / (2 * tn))
    flow = np.where(n < 0, 0.0, np.where(n < tp, rise, np.where(n < tp + tn, fall, 0.0)))
    # scaling by the period keeps the excitation strength independent of F0 (the derivative of a
    # unit-height flow pulse shrinks as the pulse widens)
    derivative = np.diff(flow, axis=1, prepend=0.0) * (amps * periods / 100.0)[:, None]
    start = np.floor(times).astype(int)
    index = start[:, None] + np.arange(width)[None, :]
    np.add.at(source, index, derivative)
    np.add.at(gate, index, flow * amps[:, None])
    return source[:length], gate[:length]


def synthesize_utterance(speaker: Speaker, duration: float, rng: np.random.Generator) -> np.ndarray:
    """One utterance of about ``duration`` seconds of running speech (float64 [T], peak ~ 0.5).

    The result has no leading/trailing padding and no level normalisation: the corpus generator
    applies the same padding, noise floor and loudness normalisation to bona fide clips and to
    their resynthesised (spoofed) copies.
    """
    tracks = _segments(speaker, duration, rng)
    n_frames = len(tracks.voicing)
    length = n_frames * CONTROL_HOP
    formants = smooth(np.asarray(tracks.formants, dtype=float), 8) * speaker.tract_scale
    formants *= np.exp(smooth(rng.normal(0, 0.02, (n_frames, 4)), 20))  # natural target variation
    bandwidths = smooth(np.asarray(tracks.bandwidths, dtype=float), 6)
    fixed = np.broadcast_to(np.asarray(FIXED_FORMANTS) * speaker.tract_scale, (n_frames, 2))
    freq = np.concatenate([formants, fixed], axis=1)
    bw = np.concatenate([bandwidths, np.broadcast_to([300.0, 450.0], (n_frames, 2))], axis=1)
    voicing = smooth(np.asarray(tracks.voicing, dtype=float), 4)
    aspiration = smooth(np.asarray(tracks.aspiration, dtype=float), 4)
    frication = smooth(np.asarray(tracks.frication, dtype=float), 3)

    f0 = _f0_contour(speaker, tracks, rng)
    pulses, gate = _glottal_source(speaker, f0, voicing, length, rng)
    noise = rng.standard_normal(length)
    # breath noise follows the glottal open phase; plain aspiration (h, stop release) does not
    # Levels calibrated on an /a/ at 120 Hz: breathiness 0.03-0.25 gives a harmonics-to-noise
    # ratio of about 30-12 dB; /h/ sits ~12 dB and /s/ ~10 dB below a vowel (as in real speech).
    breath = noise * gate * speaker.breathiness * 0.07
    aspirate = noise * interp_track(aspiration, CONTROL_HOP, length) * 0.018
    source = pulses + breath + aspirate
    if speaker.tilt > 0:  # softer voices: extra first-order low-pass on the source
        source = _one_pole(source, speaker.tilt)
    vocal_tract = resonator_response(freq, bw, FILTER_FFT, SAMPLE_RATE)
    voiced = block_filter(source, vocal_tract, CONTROL_HOP)

    fric_noise = rng.standard_normal(length) * interp_track(frication, CONTROL_HOP, length) * 0.0105
    fric_freq = np.asarray(tracks.fric_freq, dtype=float)[:, None] * min(speaker.tract_scale, 1.1)
    fric_bw = np.asarray(tracks.fric_bw, dtype=float)[:, None]
    fric_filter = resonator_response(np.minimum(fric_freq, 7200), fric_bw, FILTER_FFT, SAMPLE_RATE)
    # the resonator is unity at DC; a first difference removes the low end frication lacks
    highpass = 1 - np.exp(-1j * 2 * np.pi * np.arange(FILTER_FFT // 2 + 1) / FILTER_FFT)
    fricated = block_filter(fric_noise, fric_filter * highpass, CONTROL_HOP)
    speech = voiced + fricated
    speech -= speech.mean()
    return speech / (np.max(np.abs(speech)) + 1e-9) * 0.5


def _one_pole(x: np.ndarray, pole: float) -> np.ndarray:
    """y[n] = (1 - pole) x[n] + pole y[n-1], via FFT convolution with the truncated impulse response."""
    taps = int(np.ceil(np.log(1e-6) / np.log(pole))) if pole > 0 else 1
    h = (1 - pole) * pole ** np.arange(max(taps, 1))
    size = 1 << int(np.ceil(np.log2(len(x) + len(h))))
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: len(x)]
