"""Vocoder-like copy-synthesis ("resynthesis") methods: analyse a waveform, rebuild it from the analysis.

Each method leaves traces typical of a family of real spoofing systems:

- ``griffin_lim``: 80-band log-mel magnitude -> pseudo-inverse -> Griffin-Lim phase reconstruction
  (as in mel-spectrogram TTS front ends without a neural vocoder; smeared harmonics, phasiness);
- ``lpc``: 18th-order LPC envelope + pulse-train / white-noise excitation switched by a voicing
  decision (LPC-10 style "buzzy" vocoder);
- ``sinusoidal``: STFT peak picking + overlap-add of the picked sinusoids (McAulay-Quatieri style;
  noise components are lost, weak partials vanish);
- ``world``: WORLD-like F0 + cepstrally smoothed spectral envelope + aperiodicity, rebuilt with
  minimum-phase pulses and shaped noise;
- ``world_vc``: the same vocoder with F0 and formants moved to another voice (vocoder-based voice
  conversion).

All functions take and return float [T] at :data:`~rawguard.conventions.SAMPLE_RATE`; use
:func:`resynthesize`, which also restores the input's length and active-speech loudness so that a
detector cannot tell the copies apart by level.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np

from rawguard.conventions import SAMPLE_RATE
from rawguard.dsp import (
    active_rms,
    allpole_response,
    block_filter,
    dc_block_response,
    dispersion_response,
    estimate_f0,
    frame_signal,
    interp_track,
    istft,
    lpc_analysis,
    mel_filterbank,
    minimum_phase,
    stft,
)

ANALYSIS_HOP = 80  # 5 ms frames for F0 / envelope analysis
SYNTH_FFT = 1024


class SynthError(ValueError):
    """Bad input to a resynthesis method (unknown method, too short, not mono, not finite)."""


def pulse_positions(f0: np.ndarray, hop: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """F0 track [F] (0 = unvoiced, frame f at sample f*hop) -> (F0 per sample [length], pulse sample indices [P]).

    One pulse each time the running phase (integral of F0 over voiced samples) crosses an integer.
    """
    f0_s = interp_track(f0, hop, length)
    f0_s = np.where(interp_track((f0 > 0).astype(float), hop, length) > 0.5, f0_s, 0.0)
    phase = np.cumsum(f0_s / SAMPLE_RATE)
    return f0_s, np.flatnonzero(np.diff(np.floor(phase), prepend=0.0) > 0)


def griffin_lim(wave: np.ndarray, rng: np.random.Generator, n_mels: int = 80, n_iter: int = 20) -> np.ndarray:
    """Mel-spectrogram inversion: |STFT| -> 80 mel bands -> pseudo-inverse -> fast Griffin-Lim (momentum 0.99).

    20 iterations: with momentum, fast Griffin-Lim is as consistent after 20 as plain Griffin-Lim
    after ~60 (Perraudin et al. 2013), and the demo corpus has to be generated in seconds.
    """
    n_fft, hop = 1024, 256
    window = np.hanning(n_fft + 1)[:-1]
    fb, fb_inverse = _mel_pair(n_fft, n_mels)
    mel = np.abs(stft(wave, n_fft, hop, window)) @ fb.T  # [F, n_mels]
    mel = np.exp(np.round(np.log(mel + 1e-5) * 20) / 20)  # a 20-levels-per-neper log-mel, as stored by TTS models
    magnitude = np.maximum(mel @ fb_inverse.T, 0.0)  # [F, bins]
    angle = 2 * np.pi * rng.random(magnitude.shape)
    phase = np.cos(angle) + 1j * np.sin(angle)
    previous = np.zeros_like(phase)
    for _ in range(n_iter):
        estimate = stft(istft(magnitude * phase, hop, len(wave), window), n_fft, hop, window)
        accelerated = 1.99 * estimate - 0.99 * previous  # fast Griffin-Lim (Perraudin et al. 2013)
        previous = estimate
        phase = accelerated / np.maximum(np.abs(accelerated), 1e-12)
    return istft(magnitude * phase, hop, len(wave), window)


@lru_cache(maxsize=4)
def _mel_pair(n_fft: int, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """The mel filterbank ``[n_mels, bins]`` and its pseudo-inverse ``[bins, n_mels]``, computed once:
    the SVD behind the pseudo-inverse took a fifth of :func:`griffin_lim`'s time per clip."""
    fb = mel_filterbank(n_fft, n_mels, SAMPLE_RATE)
    fb.setflags(write=False)
    inverse = np.linalg.pinv(fb)
    inverse.setflags(write=False)
    return fb, inverse


def lpc_vocoder(wave: np.ndarray, rng: np.random.Generator, order: int = 18) -> np.ndarray:
    """LPC analysis (25 ms, 10 ms hop, pre-emphasis) + pulse/noise excitation through 1/A(z)."""
    hop, frame = 160, 400
    emphasised = np.append(wave[0], wave[1:] - 0.97 * wave[:-1])
    frames = frame_signal(emphasised, frame, hop) * np.hamming(frame)
    a, gain = lpc_analysis(frames, order)
    f0, _ = estimate_f0(wave, SAMPLE_RATE, hop)
    n_frames = min(len(a), len(f0))
    a, gain, f0 = a[:n_frames], gain[:n_frames], f0[:n_frames]
    length = len(wave)
    # Excitation with unit power: pulses of height sqrt(period) in voiced frames, noise otherwise.
    f0_s, pulse_at = pulse_positions(f0, hop, length)
    excitation = np.where(f0_s > 0, 0.0, rng.standard_normal(length))
    excitation[pulse_at] = np.sqrt(SAMPLE_RATE / np.maximum(f0_s[pulse_at], 1.0))
    deemphasis = 1.0 / (1 - 0.97 * np.exp(-1j * 2 * np.pi * np.arange(SYNTH_FFT // 2 + 1) / SYNTH_FFT))
    shaping = deemphasis * dc_block_response(SYNTH_FFT, SAMPLE_RATE, 70.0) * dispersion_response(SYNTH_FFT)
    responses = allpole_response(a, SYNTH_FFT) * gain[:, None] * shaping
    # frame k is centred on sample k*hop, so block k must cover [k*hop - hop/2, k*hop + hop/2):
    # delay the excitation by half a hop going in, and advance the output by as much coming out
    delayed = np.pad(excitation, (hop // 2, 0))[: n_frames * hop]
    out = block_filter(np.pad(delayed, (0, n_frames * hop - len(delayed))), responses, hop)
    return np.pad(out[hop // 2 :], (0, length))[:length]


def sinusoidal(wave: np.ndarray, rng: np.random.Generator, max_peaks: int = 60, floor_db: float = -70.0) -> np.ndarray:
    """Peak-picking sinusoidal model: per 32 ms frame keep <= 60 spectral peaks, resynthesise by overlap-add."""
    del rng  # deterministic method; the argument keeps one signature for every method
    n_fft, hop = 512, 128
    window = np.hanning(n_fft + 1)[:-1]
    spec = stft(wave, n_fft, hop, window)  # [F, bins]
    mag = np.abs(spec) + 1e-12
    log_mag = np.log(mag)
    is_peak = (mag[:, 1:-1] > mag[:, :-2]) & (mag[:, 1:-1] >= mag[:, 2:])
    is_peak &= 20 * np.log10(mag[:, 1:-1]) > 20 * np.log10(mag.max()) + floor_db
    score = np.where(is_peak, mag[:, 1:-1], 0.0)
    top = np.argsort(-score, axis=1)[:, :max_peaks]  # [F, P] bin index - 1
    keep = np.take_along_axis(score, top, axis=1) > 0
    k = top + 1
    # parabolic interpolation of the log magnitude gives frequency and amplitude of each peak
    left = np.take_along_axis(log_mag, k - 1, axis=1)
    centre = np.take_along_axis(log_mag, k, axis=1)
    right = np.take_along_axis(log_mag, k + 1, axis=1)
    curve = left - 2 * centre + right
    delta = np.clip(np.where(curve < 0, 0.5 * (left - right) / np.minimum(curve, -1e-12), 0.0), -0.5, 0.5)
    freq = (k + delta) * SAMPLE_RATE / n_fft
    amp = np.exp(centre - 0.25 * (left - right) * delta) * 2 / window.sum() * keep
    phase = np.angle(np.take_along_axis(spec, k, axis=1))
    # each frame's sinusoids are rendered around its centre, Hann-weighted and overlap-added
    n = np.arange(-hop * 2, hop * 2)
    synth_window = np.hanning(len(n) + 1)[:-1]
    out = np.zeros((len(spec) - 1) * hop + len(n))
    norm = np.zeros_like(out)
    chunk = 64  # frames per vectorised batch, bounds memory to chunk * peaks * 4 * hop values
    for start in range(0, len(spec), chunk):
        waves = _sum_of_sinusoids(amp[start : start + chunk], freq[start : start + chunk],
                                  phase[start : start + chunk], keep[start : start + chunk], n)
        for j, frame_wave in enumerate(waves):
            pos = (start + j) * hop
            out[pos : pos + len(n)] += frame_wave * synth_window
            norm[pos : pos + len(n)] += synth_window
    out = out / np.maximum(norm, 1e-3)
    return out[2 * hop : 2 * hop + len(wave)]


def _sum_of_sinusoids(amp: np.ndarray, freq: np.ndarray, phase: np.ndarray, keep: np.ndarray,
                      n: np.ndarray) -> np.ndarray:
    """Each frame's kept sinusoids summed over the sample offsets ``n`` [N]: ``[F, P]`` amplitudes,
    frequencies (Hz), phases and keep mask -> ``[F, N]``.

    Only the kept peaks are rendered (about 60 % of the ``F x P`` slots in speech; a frame's kept
    peaks come first in its row, the rest have zero amplitude), summed per frame in the order of
    their row, which is the order in which summing the full rows adds them.
    """
    rows, cols = np.nonzero(keep)  # row-major: grouped by frame, in peak order
    waves = np.zeros((len(amp), len(n)))
    if len(rows) == 0:
        return waves
    rendered = amp[rows, cols, None] * np.cos(2 * np.pi * freq[rows, cols, None] * n / SAMPLE_RATE
                                              + phase[rows, cols, None])  # [kept, N]
    frames, first = np.unique(rows, return_index=True)
    waves[frames] = np.add.reduceat(rendered, first, axis=0)
    return waves


def world_like(wave: np.ndarray, rng: np.random.Generator, lifter_periods: float = 0.9,
               f0_scale: float = 1.0, warp: float = 1.0) -> np.ndarray:
    """WORLD-like vocoder: F0 + cepstrally smoothed envelope + aperiodicity, minimum-phase pulse synthesis.

    ``f0_scale`` multiplies the F0 track and ``warp`` stretches the spectral envelope along frequency
    (formants move up for ``warp > 1``) between analysis and synthesis: with both at 1 the copy keeps
    the voice, otherwise it is a simple voice conversion (:func:`world_vc`).
    """
    hop = ANALYSIS_HOP
    n_fft = SYNTH_FFT
    f0, aperiodicity = estimate_f0(wave, SAMPLE_RATE, hop)
    window = np.hanning(n_fft + 1)[:-1]
    frames = frame_signal(wave, n_fft, hop)[: len(f0)] * window
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2 + 1e-12
    # CheapTrick-like envelope: average the power over one harmonic spacing (so harmonics and the
    # valleys between them count by their mean power, not their log), then cepstral liftering
    # below one pitch period removes what is left of the harmonic fine structure.
    half = np.where(f0 > 0, 0.5 * f0 * n_fft / SAMPLE_RATE, 1.5).astype(int)[:, None]  # [F, 1] bins
    bins = np.arange(power.shape[1])[None, :]
    csum = np.concatenate([np.zeros((len(power), 1)), np.cumsum(power, axis=1)], axis=1)
    lo = np.clip(bins - half, 0, power.shape[1] - 1)
    hi = np.clip(bins + half + 1, 1, power.shape[1])
    averaged = (np.take_along_axis(csum, hi, 1) - np.take_along_axis(csum, lo, 1)) / (hi - lo)
    cep = np.fft.irfft(np.log(averaged), axis=-1)
    cutoff = np.where(f0 > 0, lifter_periods * SAMPLE_RATE / np.maximum(f0, 1.0), 40.0).astype(int)
    q = np.arange(n_fft)
    quef = np.minimum(q, n_fft - q)[None, :]
    cep = cep * (quef < cutoff[:, None])
    log_env = 0.5 * np.fft.rfft(cep, axis=-1).real  # natural-log amplitude envelope [F, bins]
    if warp != 1.0:
        log_env = _warp_frequency(log_env, warp)
    f0 = f0 * f0_scale  # the analysis above used the original pitch (harmonic spacing, lifter)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / SAMPLE_RATE)[None, :]
    # band aperiodicity: the YIN periodicity measure, growing towards high frequencies as in speech
    ap = np.clip(aperiodicity[:, None] + (freqs / 8000.0) ** 2 * 0.5, 0.02, 1.0)
    ap = np.where(f0[:, None] > 0, ap, 1.0)
    length = len(wave)
    # Power density per sample is envelope^2 / sum(w^2) for noise and for a pulse train alike.
    # Noise part: unit-power white noise through a minimum-phase filter of envelope * sqrt(ap).
    density = log_env - 0.5 * np.log(np.sum(window**2))
    dc_block = dc_block_response(n_fft, SAMPLE_RATE)
    noise_filter = minimum_phase(density + 0.5 * np.log(ap)) * dc_block
    noise = block_filter(np.pad(rng.standard_normal(length), (hop // 2, 0))[: len(f0) * hop], noise_filter, hop)
    # periodic part: one minimum-phase pulse per period, |H|^2 = period * density^2 * (1 - ap)
    f0_s, pulse_at = pulse_positions(f0, hop, length)
    out = np.zeros(length + n_fft)
    noise = noise[hop // 2 : hop // 2 + length]
    out[: len(noise)] += noise
    if len(pulse_at):
        idx = np.minimum(np.round(pulse_at / hop).astype(int), len(f0) - 1)
        period = SAMPLE_RATE / f0_s[pulse_at]
        pulse_log = density[idx] + 0.5 * np.log1p(-np.minimum(ap[idx], 0.99)) + 0.5 * np.log(period)[:, None]
        shaped = minimum_phase(pulse_log) * dc_block * dispersion_response(n_fft)
        pulses = np.fft.irfft(shaped, n=n_fft, axis=-1)[:, : n_fft // 2]
        np.add.at(out, pulse_at[:, None] + np.arange(n_fft // 2)[None, :], pulses)
    return out[:length]


def _warp_frequency(log_env: np.ndarray, warp: float) -> np.ndarray:
    """``[F, bins]`` envelope -> the envelope with bin ``k`` taking the value at ``k / warp`` (linear
    interpolation; above the top bin the last value is held)."""
    bins = log_env.shape[1]
    source = np.minimum(np.arange(bins) / warp, bins - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, bins - 1)
    frac = source - low
    return log_env[:, low] * (1.0 - frac) + log_env[:, high] * frac


def world_vc(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """WORLD-like resynthesis in another voice: F0 moved 3-7 semitones up or down, formants with it.

    A classic vocoder-based voice conversion (as in the Voice Conversion Challenge baselines): the
    copy keeps the words and timing but no longer the speaker, so a detector trained on such copies
    sees vocoder traces on voices that have no bona fide clips, as a real VC system produces them.
    The envelope is warped by ``f0_scale ** U(0.2, 0.5)`` (a 5-semitone rise moves the formants up
    6-16 %, roughly the difference between adult voices).
    """
    semitones = rng.uniform(3.0, 7.0) * rng.choice([-1.0, 1.0])
    f0_scale = 2.0 ** (semitones / 12.0)
    return world_like(wave, rng, f0_scale=f0_scale, warp=f0_scale ** rng.uniform(0.2, 0.5))


Resynthesis = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""``f(wave [T] float64, rng) -> copy [T']``: what :func:`resynthesize` wraps."""

METHODS: dict[str, Resynthesis] = {
    "griffin_lim": griffin_lim,
    "lpc": lpc_vocoder,
    "sinusoidal": sinusoidal,
    "world": world_like,
    "world_vc": world_vc,
}
"""Resynthesis methods by name (``rawguard synth-spoof --method NAME``)."""

MIN_SAMPLES = 2048  # shortest input every method can analyse (one 1024-sample frame + margins)


def resynthesize(wave: np.ndarray, method: str | Resynthesis, rng: np.random.Generator) -> np.ndarray:
    """Copy-synthesise ``wave`` with ``method``; same length and active-speech loudness as the input.

    Args:
        wave: float [T] mono waveform at :data:`~rawguard.conventions.SAMPLE_RATE`, T >= 2048.
        method: a key of :data:`METHODS`, or any ``f(wave [T], rng) -> [T']`` (e.g. a trained
            :class:`rawguard.copysynth.neural.NeuralVocoder`).
        rng: random generator (random phases / noise excitation).

    Returns:
        float32 [T]; peaks are scaled down below 0.99 only if the copy would clip.

    Raises:
        SynthError: unknown method, input not 1-D, too short, or not finite.
    """
    if isinstance(method, str) and method not in METHODS:
        raise SynthError(f"unknown resynthesis method {method!r} (choose from: {', '.join(METHODS)})")
    function = METHODS[method] if isinstance(method, str) else method
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise SynthError(f"expected a mono waveform [T], got shape {wave.shape}")
    if len(wave) < MIN_SAMPLES:
        raise SynthError(f"waveform too short for resynthesis: {len(wave)} samples (need >= {MIN_SAMPLES})")
    if not np.all(np.isfinite(wave)):
        raise SynthError("waveform contains NaN or infinite samples")
    x = wave.astype(np.float64)
    level = active_rms(x, SAMPLE_RATE)
    if level < 1e-6:  # digital silence: nothing to resynthesise
        return np.zeros(len(x), dtype=np.float32)
    y = np.asarray(function(x / level * 0.1, rng))[: len(x)]
    if not np.all(np.isfinite(y)):  # a method bug, never the user's input (checked above)
        raise SynthError(f"resynthesis method {getattr(method, '__name__', method)!r} produced non-finite samples")
    y = np.pad(y, (0, len(x) - len(y)))
    y = y / max(active_rms(y, SAMPLE_RATE), 1e-9) * level
    peak = float(np.max(np.abs(y)))
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32)
