"""Numpy signal-processing building blocks shared by the voice model and the resynthesis methods.

Everything here is vectorised over frames (no per-sample Python loops) and needs only numpy, so the
demo corpus can be generated quickly on any laptop without scipy or external programs.

The central trick is :func:`block_filter`: a *time-varying* linear filter applied as a sequence of
short excitation blocks, each convolved (by FFT) with the filter that is current at that block and
overlap-added with its full tail. This is exactly how classic formant synthesisers update their
parameters every few milliseconds, and it lets an all-pole filter (formants, LPC) run without a
recursive per-sample loop.
"""

from __future__ import annotations

import numpy as np


def next_pow2(n: int) -> int:
    """Smallest power of two >= ``n``."""
    return 1 << max(0, int(np.ceil(np.log2(max(1, n)))))


def frame_signal(x: np.ndarray, frame: int, hop: int, center: bool = True) -> np.ndarray:
    """Cut ``x`` [T] into overlapping frames [F, frame] (zero padded; frame f is centred at f*hop if ``center``)."""
    if center:
        x = np.pad(x, (frame // 2, frame // 2))
    n_frames = 1 + max(0, (len(x) - frame + hop - 1) // hop)
    need = (n_frames - 1) * hop + frame
    if len(x) < need:
        x = np.pad(x, (0, need - len(x)))
    index = np.arange(frame)[None, :] + hop * np.arange(n_frames)[:, None]
    return x[index]


def stft(x: np.ndarray, n_fft: int, hop: int, window: np.ndarray | None = None) -> np.ndarray:
    """Centred STFT of ``x`` [T] -> complex [F, n_fft // 2 + 1] (Hann window by default)."""
    if window is None:
        window = np.hanning(n_fft + 1)[:-1]
    return np.fft.rfft(frame_signal(x, n_fft, hop) * window, axis=-1)


def istft(spec: np.ndarray, hop: int, length: int, window: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`stft` by weighted overlap-add: complex [F, n_fft // 2 + 1] -> [length]."""
    n_fft = 2 * (spec.shape[-1] - 1)
    if window is None:
        window = np.hanning(n_fft + 1)[:-1]
    frames = np.fft.irfft(spec, n=n_fft, axis=-1) * window
    total = (len(spec) - 1) * hop + n_fft
    out = overlap_add(frames, hop, total)
    norm = overlap_add(np.broadcast_to(window**2, frames.shape), hop, total)
    out = out / np.maximum(norm, 1e-8)
    return out[n_fft // 2 : n_fft // 2 + length]


def overlap_add(frames: np.ndarray, hop: int, length: int) -> np.ndarray:
    """Sum frames [F, N] placed at offsets f*hop into a signal of ``length`` samples (extra is cut)."""
    n_frames, size = frames.shape
    total = max(length, (n_frames - 1) * hop + size)
    out = np.zeros(total, dtype=np.float64)
    # Adding frame by frame in groups that do not overlap keeps this vectorised: within one group
    # the frames touch disjoint samples, so a single reshaped add places all of them.
    stride = -(-size // hop)  # frames whose offsets differ by stride*hop >= size never overlap
    for phase in range(stride):
        group = frames[phase::stride]
        if len(group) == 0:
            continue
        start = phase * hop
        span = stride * hop
        padded = np.zeros((len(group), span))
        padded[:, :size] = group
        flat = padded.reshape(-1)
        end = min(total, start + len(flat))
        out[start:end] += flat[: end - start]
    return out[:length]


def block_filter(excitation: np.ndarray, responses: np.ndarray, hop: int) -> np.ndarray:
    """Time-varying filtering: block ``k`` of ``excitation`` goes through the filter ``responses[k]``.

    Args:
        excitation: [T] source signal.
        responses: complex [K, n_fft // 2 + 1] frequency responses sampled on an ``n_fft``-point
            grid, one per block of ``hop`` samples (block k covers samples [k*hop, (k+1)*hop)).
            Their impulse responses must decay within ``n_fft - hop`` samples (true for the damped
            resonators used here), otherwise the circular convolution wraps around.
        hop: block length in samples.

    Returns:
        [T] filtered signal; each block's full convolution tail is kept (no discontinuities).
    """
    n_fft = 2 * (responses.shape[-1] - 1)
    n_blocks = len(responses)
    padded = np.zeros(n_blocks * hop)
    padded[: min(len(excitation), len(padded))] = excitation[: len(padded)]
    blocks = np.zeros((n_blocks, n_fft))
    blocks[:, :hop] = padded.reshape(n_blocks, hop)
    out = np.fft.irfft(np.fft.rfft(blocks, axis=-1) * responses, n=n_fft, axis=-1)
    return overlap_add(out, hop, len(excitation))


def allpole_response(a: np.ndarray, n_fft: int) -> np.ndarray:
    """Frequency response 1 / A(e^jw) of all-pole filters ``a`` [..., order + 1] (a[..., 0] = 1)."""
    return 1.0 / np.fft.rfft(a, n=n_fft, axis=-1)


def resonator_response(freq: np.ndarray, bw: np.ndarray, n_fft: int, sample_rate: int) -> np.ndarray:
    """Cascade of 2-pole resonators (Klatt style, unity gain at DC) on an ``n_fft`` grid.

    Args:
        freq, bw: [K, R] resonance centre frequencies and bandwidths in Hz, K frames, R resonators.

    Returns:
        complex [K, n_fft // 2 + 1].
    """
    r = np.exp(-np.pi * bw / sample_rate)
    c = -2 * r * np.cos(2 * np.pi * freq / sample_rate)
    # Multiply the R denominators 1 + c z^-1 + r^2 z^-2 into one all-pole polynomial [K, 2R + 1]:
    # one short FFT per frame is far cheaper than evaluating R complex factors on the whole grid.
    a = np.zeros((freq.shape[0], 2 * freq.shape[1] + 1))
    a[:, 0] = 1.0
    for j in range(freq.shape[1]):
        nxt = a.copy()
        nxt[:, 1:] += c[:, j : j + 1] * a[:, :-1]
        nxt[:, 2:] += (r[:, j : j + 1] ** 2) * a[:, :-2]
        a = nxt
    gain = a.sum(axis=1, keepdims=True)  # A(1): makes the cascade unity at DC
    return allpole_response(a, n_fft) * gain


def dc_block_response(n_fft: int, sample_rate: int, cutoff: float = 40.0) -> np.ndarray:
    """Second-order DC blocker ((1 - z^-1) / (1 - p z^-1))^2 on an ``n_fft`` grid: complex [n_fft // 2 + 1].

    Pulse-train excitations carry DC that an all-pole or envelope filter would pass (and a
    de-emphasis would boost ~30 dB); real recordings have no such infrasonic energy, so without this
    a detector could spot a copy from its sub-60 Hz energy alone.
    """
    pole = np.exp(-2 * np.pi * cutoff / sample_rate)
    z1 = np.exp(-1j * 2 * np.pi * np.arange(n_fft // 2 + 1) / n_fft)
    return ((1 - z1) / (1 - pole * z1)) ** 2


def dispersion_response(n_fft: int, spread: float = 32.0) -> np.ndarray:
    """All-pass with a group delay rising linearly from 0 to ``spread`` samples at Nyquist: complex [n_fft // 2 + 1].

    Turns a single-sample excitation pulse into a short chirp with the same magnitude spectrum
    (the role of LPC-10's stored 40-sample excitation pulse), so a pulse-excited vocoder does not
    reveal itself by an unnaturally high crest factor.
    """
    omega = np.pi * np.arange(n_fft // 2 + 1) / (n_fft // 2)
    return np.exp(-1j * spread / (2 * np.pi) * omega**2)


def levinson(autocorr: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Levinson-Durbin over frames: autocorrelation [F, >= order + 1] -> (a [F, order + 1], error [F])."""
    n_frames = autocorr.shape[0]
    a = np.zeros((n_frames, order + 1))
    a[:, 0] = 1.0
    err = autocorr[:, 0].astype(np.float64).copy()
    for i in range(1, order + 1):
        acc = autocorr[:, i] + np.sum(a[:, 1:i] * autocorr[:, i - 1 : 0 : -1], axis=1)
        k = -acc / np.maximum(err, 1e-12)
        a_prev = a.copy()
        a[:, i] = k
        a[:, 1:i] = a_prev[:, 1:i] + k[:, None] * a_prev[:, i - 1 : 0 : -1]
        err = err * (1 - k**2)
    return a, np.maximum(err, 1e-12)


def lpc_analysis(frames: np.ndarray, order: int, expand: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation-method LPC of windowed frames [F, N] -> (a [F, order + 1], residual gain [F]).

    A tiny white-noise floor and a Gaussian lag window keep the normal equations well conditioned;
    ``expand`` (bandwidth expansion a_i *= expand**i) keeps every pole safely inside the unit circle
    so :func:`block_filter` impulse responses decay quickly.
    """
    n = frames.shape[1]
    spec = np.fft.rfft(frames, n=next_pow2(2 * n), axis=-1)
    autocorr = np.fft.irfft(np.abs(spec) ** 2, axis=-1)[:, : order + 1]
    autocorr[:, 0] = autocorr[:, 0] * (1 + 1e-4) + 1e-10
    lag = np.exp(-0.5 * (2 * np.pi * 60.0 * np.arange(order + 1) / 16000.0) ** 2)
    a, err = levinson(autocorr * lag, order)
    a = a * expand ** np.arange(order + 1)
    return a, np.sqrt(err / n)


def estimate_f0(
    x: np.ndarray,
    sample_rate: int,
    hop: int,
    fmin: float = 60.0,
    fmax: float = 450.0,
    threshold: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """YIN-style F0 tracker, vectorised over frames.

    Args:
        x: [T] waveform.
        hop: frame hop in samples (frame f is centred at sample f*hop).

    Returns:
        (f0 [F] in Hz with 0 for unvoiced frames, aperiodicity [F] in [0, 1]: the minimum of the
        cumulative-mean-normalised difference, low for clean periodic frames).
    """
    tau_max = int(sample_rate / fmin)
    tau_min = max(2, int(sample_rate / fmax))
    width = tau_max  # integration window: one longest period
    frames = frame_signal(x, width + tau_max, hop)
    n_fft = next_pow2(2 * (width + tau_max))
    spec = np.fft.rfft(frames, n=n_fft, axis=-1)
    head = np.fft.rfft(frames[:, :width], n=n_fft, axis=-1)
    cross = np.fft.irfft(np.conj(head) * spec, n=n_fft, axis=-1)[:, : tau_max + 1]
    power = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    taus = np.arange(tau_max + 1)
    energy_tau = power[:, taus + width] - power[:, taus]
    diff = np.maximum(energy_tau[:, :1] + energy_tau - 2 * cross, 0.0)
    diff[:, 0] = 0.0
    cumulative = np.cumsum(diff[:, 1:], axis=1) / np.arange(1, tau_max + 1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] / np.maximum(cumulative, 1e-12)
    search = cmnd[:, tau_min : tau_max + 1]
    below = search < threshold
    has = below.any(axis=1)
    first = np.where(has, below.argmax(axis=1), search.argmin(axis=1))
    # walk down to the local minimum that follows the first dip under the threshold (YIN step 4)
    rows = np.arange(len(search))
    for _ in range(tau_max):
        nxt = np.minimum(first + 1, search.shape[1] - 1)
        better = search[rows, nxt] < search[rows, first]
        if not better.any():
            break
        first = np.where(better, nxt, first)
    best = search[rows, first]
    # parabolic interpolation around the minimum for sub-sample period resolution
    left = search[rows, np.maximum(first - 1, 0)]
    right = search[rows, np.minimum(first + 1, search.shape[1] - 1)]
    curvature = left + right - 2 * best
    shift = np.where(curvature > 1e-12, 0.5 * (left - right) / np.maximum(curvature, 1e-12), 0.0)
    period = first + tau_min + np.clip(shift, -1, 1)
    frame_energy = power[:, width] / width
    loud = frame_energy > 10 ** (-50 / 10) * max(float(np.max(frame_energy)), 1e-12)
    voiced = (best < 0.35) & loud
    f0 = np.where(voiced, sample_rate / period, 0.0)
    return f0, np.clip(best, 0.0, 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-style triangular mel filterbank [n_mels, n_fft // 2 + 1] (HTK mel scale, area-normalised)."""
    fmax = fmax or sample_rate / 2
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731 - tiny local conversions
    hz = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lower = (bins[None, :] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - bins[None, :]) / (edges[2:, None] - edges[1:-1, None])
    fb = np.maximum(0.0, np.minimum(lower, upper))
    return fb * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def minimum_phase(log_magnitude: np.ndarray) -> np.ndarray:
    """Minimum-phase spectra from natural-log magnitudes [..., n_fft // 2 + 1] (real-cepstrum folding)."""
    n_fft = 2 * (log_magnitude.shape[-1] - 1)
    cep = np.fft.irfft(log_magnitude, n=n_fft, axis=-1)
    fold = np.zeros_like(cep)
    fold[..., 0] = cep[..., 0]
    fold[..., 1 : n_fft // 2] = 2 * cep[..., 1 : n_fft // 2]
    fold[..., n_fft // 2] = cep[..., n_fft // 2]
    return np.exp(np.fft.rfft(fold, axis=-1))


def active_rms(x: np.ndarray, sample_rate: int, floor_db: float = 35.0) -> float:
    """RMS over the active 20 ms frames (energy within ``floor_db`` of the loudest frame)."""
    size = max(1, sample_rate // 50)
    n = len(x) // size
    if n == 0:
        return float(np.sqrt(np.mean(x**2) + 1e-20))
    energy = np.mean(x[: n * size].reshape(n, size) ** 2, axis=1)
    active = energy >= energy.max() * 10 ** (-floor_db / 10)
    return float(np.sqrt(np.mean(energy[active]) + 1e-20))


def interp_track(track: np.ndarray, hop: int, length: int) -> np.ndarray:
    """Linearly interpolate a frame-rate track [F] (frame f at sample f*hop) to sample rate [length]."""
    return np.interp(np.arange(length), np.arange(len(track)) * hop, track)


def smooth(track: np.ndarray, width: int) -> np.ndarray:
    """Moving Hann-window average along axis 0 (edge-padded), ``width`` in frames."""
    if width <= 1:
        return track
    kernel = np.hanning(width + 2)[1:-1]
    kernel /= kernel.sum()
    pad = width // 2
    padded = np.pad(track, [(pad, width - 1 - pad)] + [(0, 0)] * (track.ndim - 1), mode="edge")
    if track.ndim == 1:
        return np.convolve(padded, kernel, mode="valid")
    return np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(track.shape[1])], axis=1)
