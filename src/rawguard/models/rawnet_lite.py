"""``rawnet-lite``: the seed network (Conv1d -> BN -> 2 residual blocks -> BiGRU -> FC), made fast.

The seed ran its GRU over every one of the 64,600 samples of a 4 s clip; here the front-end is
strided and every stage max-pools, so the GRU sees 112 steps and a clip costs ~54 MFLOP.

Data flow for a ``[B, T]`` waveform (default config; sizes for T = 64,600):

=========================================  ==================  ===========
stage                                      output              T = 64,600
=========================================  ==================  ===========
front-end conv 1 -> 32, k 64, stride 16    ``[B, 32, F]``      4,034
``|x|``, max-pool 4, log, BN, LeakyReLU    ``[B, 32, F/4]``    1,008
res block 32 -> 32, max-pool 3, FMS        ``[B, 32, F/12]``     336
res block 32 -> 64, max-pool 3, FMS        ``[B, 64, F/36]``     112
BN, LeakyReLU, BiGRU(64 -> 64 per dir.)    ``[B, N, 128]``       112
mean and max over time                     ``[B, 256]``
linear 256 -> 2                            ``[B, 2]`` logits
=========================================  ==================  ===========

The front-end is a plain learnable ``Conv1d`` (``frontend="conv"``), SincNet-style band-pass
filters with learnable edges (``frontend="sinc"``) or fixed band-pass filters (``"fixed_sinc"``),
mel- or linearly spaced (``frontend_scale``). Residual block: [BN -> LeakyReLU, skipped in
the first block because the front-end just applied them] -> conv k3 -> BN -> LeakyReLU -> conv k3,
plus identity or 1x1-conv skip, then max-pool and filter-wise feature-map scaling (FMS, as in
RawNet2). With ``encoder="2d"`` the blocks are 2-D over the ``[filters x frames]`` map instead
(kernels shared across frequency, as in AASIST's encoder), pooled in frequency too, and the GRU
reads channels x bands. With ``spectrum_fft`` a second path (:class:`LongTermSpectrum`) reads the
clip's long-term average spectrum and joins its 64 values to the GRU summary before the linear
layer. The GRU's final hidden states summarise the whole clip, so the output shape does not depend
on ``T``; any ``T >= min_samples`` (624 by default) works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from rawguard.conventions import SAMPLE_RATE
from rawguard.models import register_model
from rawguard.models.layers import FeatureMapScaling, check_waveform, gru_fp32, min_input_length, output_length
from rawguard.models.sinc import FixedSincConv, LearnableSincConv, odd_kernel_size


@dataclass
class RawNetLiteConfig:
    """Hyper-parameters of :class:`RawNetLite` (defaults: ~0.1 M parameters)."""

    # Values for fields that checkpoints written before the field existed do not store.
    LEGACY_DEFAULTS: ClassVar[dict[str, object]] = {"log_compression": False, "summary": "last"}
    # Fields removed since (value that meant "off"): older checkpoints that name them at it still load.
    REMOVED_FIELDS: ClassVar[dict[str, object]] = {
        "frontend_mean_norm": False, "head": "linear", "cosine_scale": 20.0, "mixstyle": 0.0, "mixstyle_alpha": 0.1,
        "frontend_analytic": False, "backend": "gru", "frontend_span_hz": (0.0, 0.0), "spectrum_detrend": 0,
        "freq_mask": 0.0, "spectrum_coherence": False, "modulation_bands": 0, "spectrum_correlation": False,
        "path_dropout": 0.0, "frames_crop": 0, "spectrum_frames": False, "spectrum_readout": "position",
    }

    # "conv": a free learnable Conv1d; "sinc": band-pass filters with learnable edges (SincNet);
    # "fixed_sinc": band-pass filters that are not trained (RawNet2's front-end).
    frontend: Literal["conv", "sinc", "fixed_sinc"] = "conv"
    frontend_scale: Literal["mel", "linear"] = "mel"  # band spacing of a sinc front-end
    frontend_channels: int = 32
    frontend_kernel: int = 64  # taps (4 ms at 16 kHz); a sinc front-end makes it odd
    frontend_stride: int = 16
    frontend_pool: int = 4  # with stride 16: one frame per 4 ms
    log_compression: bool = True  # log of the pooled filter-bank magnitudes (see BENCHMARKS.md, shared corpus)
    block_channels: tuple[int, ...] = (32, 64)  # output channels of the residual blocks (the seed has 2)
    block_pools: tuple[int, ...] = (3, 3)  # max-pool after each block (over time)
    # "1d": each front-end filter is a channel of 1-D convs over time (the seed). "2d": the
    # [filters x frames] map is an image for 2-D convs shared across frequency (AASIST's encoder,
    # LCNN): each block also max-pools frequency by `freq_pool`; the GRU reads channels x bands.
    encoder: Literal["1d", "2d"] = "1d"
    freq_pool: int = 2
    negative_slope: float = 0.3
    feature_scaling: bool = True  # RawNet2's filter-wise feature-map scaling after each block
    gru_hidden: int = 64  # per direction
    # How the BiGRU's outputs become one clip vector: "last" = the final forward + backward states
    # (the seed, RawNet2); "mean" / "meanmax" = the average (and maximum) of the outputs over all
    # time steps, so every frame gets a direct gradient instead of one through the whole
    # recurrence, and a local artefact anywhere in the clip reaches the classifier.
    summary: Literal["last", "mean", "meanmax"] = "meanmax"  # see BENCHMARKS.md, shared corpus
    dropout: float = 0.0  # before the classifier
    # FFT size of a second input path (0 = off): the clip's log long-term average power spectrum at
    # sample_rate / spectrum_fft resolution (31 Hz for 512), encoded by convs over frequency and joined
    # to the GRU summary. The front-end's bands are ~1 kHz wide; a vocoder's fixed-frequency traces
    # (upsampling tones, band-edge ripple) need a finer, time-averaged view.
    spectrum_fft: int = 0
    # With spectrum_fft: also each bin's spread over the frames (the std of its log power), a second input
    # channel. Long-term spectral statistics (mean and std, Muckenhirn et al., IEEE/ACM TASLP 2017):
    # a vocoder's noise floor or tone is steadier over time than a recording's.
    spectrum_std: bool = False
    # With spectrum_fft: how the frames are averaged. "power": the log of their mean power, where the
    # loudest frames dominate (a held vowel's harmonics stand out); "log": the mean of their log power
    # (a geometric mean), where every frame counts alike and the quiet frames' noise floor shows.
    spectrum_average: Literal["power", "log"] = "power"
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        positive = ("frontend_channels", "frontend_kernel", "frontend_stride", "frontend_pool", "gru_hidden", "freq_pool")
        for key in positive:
            if getattr(self, key) < 1:
                raise ValueError(f"rawnet-lite config: {key} must be >= 1, got {getattr(self, key)}")
        if len(self.block_channels) != len(self.block_pools):
            raise ValueError(
                f"rawnet-lite config: block_channels {self.block_channels} and block_pools {self.block_pools} "
                "must have the same length"
            )
        if not self.block_channels or min(self.block_channels) < 1 or min(self.block_pools) < 1:
            raise ValueError("rawnet-lite config: block_channels / block_pools must be non-empty and positive")
        if self.encoder not in ("1d", "2d"):
            raise ValueError(f"rawnet-lite config: encoder must be '1d' or '2d', got {self.encoder!r}")
        if self.encoder == "2d" and self.frontend_channels // self.freq_pool ** len(self.block_channels) < 1:
            raise ValueError(
                f"rawnet-lite config: {self.frontend_channels} front-end filters cannot be pooled by freq_pool="
                f"{self.freq_pool} in {len(self.block_channels)} blocks"
            )
        if self.summary not in ("last", "mean", "meanmax"):
            raise ValueError(f"rawnet-lite config: summary must be 'last', 'mean' or 'meanmax', got {self.summary!r}")
        if self.frontend == "conv" and self.frontend_scale != "mel":
            raise ValueError(
                f"rawnet-lite config: frontend_scale={self.frontend_scale!r} places sinc bands; the conv "
                "front-end learns its own (use frontend='sinc' or 'fixed_sinc')"
            )
        if self.spectrum_fft and (self.spectrum_fft < 64 or self.spectrum_fft & (self.spectrum_fft - 1)):
            raise ValueError(
                f"rawnet-lite config: spectrum_fft must be 0 or a power of two >= 64, got {self.spectrum_fft}"
            )
        if self.spectrum_std and not self.spectrum_fft:
            raise ValueError(
                "rawnet-lite config: spectrum_std needs the spectrum path (spectrum_fft > 0); to turn the path off, "
                "set spectrum_std=false as well"
            )
        if self.spectrum_average != "power" and not self.spectrum_fft:
            raise ValueError(
                "rawnet-lite config: spectrum_average needs the spectrum path (spectrum_fft > 0); to turn the path "
                "off, set spectrum_average=power as well"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"rawnet-lite config: dropout must be in [0, 1), got {self.dropout}")


class LiteBlock(nn.Module):
    """Residual block with max-pool, over time (1-D) or over filters x time (2-D).

    1-D: ``[B, C_in, N]`` -> ``[B, C_out, N // pool]``. 2-D (``freq_pool`` given): ``[B, C_in, Fq, N]``
    -> ``[B, C_out, Fq // freq_pool, N // pool]`` with 3x3 kernels shared across frequency.
    """

    def __init__(
        self, c_in: int, c_out: int, first: bool, negative_slope: float, pool: int, freq_pool: int | None = None
    ) -> None:
        super().__init__()
        two_d = freq_pool is not None
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if two_d else (nn.Conv1d, nn.BatchNorm1d)
        self.pre = None if first else nn.Sequential(norm(c_in), nn.LeakyReLU(negative_slope))
        # Convs feed a BN, so their bias would be cancelled: leave it out.
        self.conv1 = conv(c_in, c_out, kernel_size=3, padding=1, bias=False)
        self.bn = norm(c_out)
        self.act = nn.LeakyReLU(negative_slope)
        self.conv2 = conv(c_out, c_out, kernel_size=3, padding=1)
        self.skip = conv(c_in, c_out, kernel_size=1) if c_in != c_out else None
        self.pool = nn.MaxPool2d((freq_pool, pool)) if two_d else nn.MaxPool1d(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.pre is None else self.pre(x)
        out = self.conv2(self.act(self.bn(self.conv1(out))))
        identity = x if self.skip is None else self.skip(x)
        return self.pool(out + identity)


class LongTermSpectrum(nn.Module):
    """A clip's log long-term average power spectrum, encoded over frequency. ``[B, T]`` -> ``[B, out]``.

    Power spectra of Hann frames (``n_fft`` samples, hop ``n_fft / 2``) are averaged over the clip, so
    what stands out is what keeps its frequency through the clip (a vocoder's tones and ripples), while
    the speech's moving harmonics blur. The log spectrum loses its clip mean (loudness), then two conv
    blocks over frequency (kernel 9, max-pool 4) and a linear layer that keeps where a peak is. With
    ``with_std`` each bin's spread over the frames (std of its log power) is a second input channel.
    ``average="log"`` averages the frames' log power instead of their power, so loud frames do not
    dominate; its floor is relative to the clip's mean power, which keeps it blind to loudness.
    """

    def __init__(self, n_fft: int, negative_slope: float, channels: tuple[int, int] = (8, 16), out: int = 64,
                 with_std: bool = False, average: str = "power") -> None:
        super().__init__()
        if average not in ("power", "log"):
            raise ValueError(f"LongTermSpectrum: average must be 'power' or 'log', got {average!r}")
        self.n_fft = n_fft
        self.with_std = with_std
        self.average = average
        self.hop = n_fft // 2
        self.bins = n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        # For ONNX export, the windowed DFT as a strided conv (cosines, then sines): the exporter cannot
        # emit torch.stft's complex output; the conv gives the same numbers at ~7x torch.stft's time.
        # Not persistent: pure functions of n_fft, so checkpoints need not carry them.
        phase = 2 * torch.pi * torch.outer(torch.arange(self.bins), torch.arange(n_fft)) / n_fft  # [bins, n_fft]
        basis = torch.cat([torch.cos(phase), torch.sin(phase)]) * self.window  # [2 bins, n_fft]
        self.register_buffer("dft", basis.float().unsqueeze(1), persistent=False)  # [2 bins, 1, n_fft]
        layers: list[nn.Module] = []
        c_in = 2 if with_std else 1
        for c_out in channels:
            layers += [nn.Conv1d(c_in, c_out, 9, padding=4, bias=False), nn.BatchNorm1d(c_out),
                       nn.LeakyReLU(negative_slope), nn.MaxPool1d(4)]
            c_in = c_out
        self.encoder = nn.Sequential(*layers)
        bins = self.bins // 4 ** len(channels)
        self.fc = nn.Linear(c_in * bins, out)
        self.out_features = out

    def _power_frames(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> the power spectra of its Hann frames, ``[B, bins, N]``."""
        if torch.onnx.is_in_onnx_export():
            frames = nn.functional.conv1d(x.unsqueeze(1), self.dft, stride=self.hop)  # [B, 2 bins, N]
            return frames[:, : self.bins].pow(2) + frames[:, self.bins :].pow(2)
        frames = torch.stft(x, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)
        return frames.real.pow(2) + frames.imag.pow(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # a log of small powers wants fp32
            power = self._power_frames(x.float())  # [B, bins, N]
            if self.average == "log":
                # A floor 80 dB under the clip's mean power: silent frames cannot drag a bin to log(0).
                floor = 1e-8 * power.mean(dim=(1, 2), keepdim=True) + 1e-30  # [B, 1, 1]
                spectrum = torch.log(power + floor).mean(dim=-1)  # [B, bins]
            else:
                spectrum = torch.log(power.mean(dim=-1) + 1e-10)  # [B, bins]
            if self.with_std:
                log_power = torch.log(power + 1e-10)  # [B, bins, N]
                deviation = log_power - log_power.mean(dim=-1, keepdim=True)
                # + 1e-6: a finite gradient when a bin is constant (one frame, digital silence)
                spread = (deviation.pow(2).mean(dim=-1) + 1e-6).sqrt()  # [B, bins]
        spectrum = spectrum - spectrum.mean(dim=1, keepdim=True)  # [B, bins]
        features = torch.stack([spectrum, spread], dim=1) if self.with_std else spectrum.unsqueeze(1)  # [B, C, bins]
        return self.fc(self.encoder(features).flatten(1))  # [B, out]


@register_model("rawnet-lite", RawNetLiteConfig)
class RawNetLite(nn.Module):
    """The seed's network with a strided front-end and pooling. ``[B, T]`` -> ``[B, 2]`` logits."""

    def __init__(self, config: RawNetLiteConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or RawNetLiteConfig()
        c0 = config.frontend_channels
        if config.frontend == "sinc":
            self.frontend = LearnableSincConv(
                c0, config.frontend_kernel, config.sample_rate, config.frontend_stride, scale=config.frontend_scale
            )
            kernel = odd_kernel_size(config.frontend_kernel)
        elif config.frontend == "fixed_sinc":
            self.frontend = FixedSincConv(
                c0, config.frontend_kernel, config.sample_rate, config.frontend_stride, scale=config.frontend_scale
            )
            kernel = odd_kernel_size(config.frontend_kernel)
        else:
            self.frontend = nn.Conv1d(1, c0, config.frontend_kernel, stride=config.frontend_stride, bias=False)
            kernel = config.frontend_kernel
        self.frontend_pool = nn.MaxPool1d(config.frontend_pool)
        self.frontend_bn = nn.BatchNorm1d(c0)
        self.frontend_act = nn.LeakyReLU(config.negative_slope)
        blocks, scalings = [], []
        two_d = config.encoder == "2d"
        freq_pool = config.freq_pool if two_d else None
        c_in = 1 if two_d else c0
        for index, (c_out, pool) in enumerate(zip(config.block_channels, config.block_pools)):
            blocks.append(LiteBlock(c_in, c_out, index == 0, config.negative_slope, pool, freq_pool))
            # FMS gates 1-D filters; the 2-D encoder's channels are not filters.
            scalings.append(FeatureMapScaling(c_out) if config.feature_scaling and not two_d else nn.Identity())
            c_in = c_out
        if two_d:  # the GRU reads every channel of every pooled band
            c_in *= c0 // config.freq_pool ** len(config.block_channels)
        self.blocks = nn.ModuleList(blocks)
        self.fms = nn.ModuleList(scalings)
        self.gru_bn = nn.BatchNorm1d(c_in)
        self.gru_act = nn.LeakyReLU(config.negative_slope)
        self.gru = nn.GRU(c_in, config.gru_hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(config.dropout)
        summary_size = 2 * config.gru_hidden * (2 if config.summary == "meanmax" else 1)
        self.spectrum = (
            LongTermSpectrum(config.spectrum_fft, config.negative_slope, with_std=config.spectrum_std,
                             average=config.spectrum_average)
            if config.spectrum_fft else None
        )
        if self.spectrum is not None:
            summary_size += self.spectrum.out_features
        self.fc = nn.Linear(summary_size, 2)
        self._kernel = kernel
        self._pools = [config.frontend_pool, *config.block_pools]
        self.min_samples = max(min_input_length(kernel, config.frontend_stride, self._pools), config.spectrum_fft)

    def gru_steps(self, num_samples: int) -> int:
        """Number of GRU time steps for an input of ``num_samples`` (112 for 64,600 by default)."""
        return output_length(num_samples, self._kernel, self.config.frontend_stride, self._pools)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` float waveform in [-1, 1], ``T >= min_samples`` -> ``[B, 2]`` logits."""
        check_waveform(x, self.min_samples, "rawnet-lite")
        waveform = x
        x = self.frontend(x.unsqueeze(1)).abs()  # [B, C0, F]
        x = self.frontend_pool(x)  # [B, C0, F / pool]
        if self.config.log_compression:
            # Artefacts of resynthesis live in low-energy regions (between harmonics, unvoiced
            # frames, the noise floor); without compression the loud voiced frames dominate.
            x = torch.log(x + 1e-6)
        x = self.frontend_act(self.frontend_bn(x))  # [B, C0, F / pool]
        if self.config.encoder == "2d":
            x = x.unsqueeze(1)  # [B, 1, C0, N]: filters x frames as an image
        for block, fms in zip(self.blocks, self.fms):
            x = fms(block(x))  # [B, C, N / pool] (2d: [B, C, bands / freq_pool, N / pool])
        if self.config.encoder == "2d":
            x = x.flatten(1, 2)  # [B, C * bands, N]
        x = self.gru_act(self.gru_bn(x)).transpose(1, 2)  # [B, N, C]
        outputs, hidden = gru_fp32(self.gru, x)  # [B, N, 2H], [2, B, H]
        if self.config.summary == "last":
            summary = torch.cat([hidden[0], hidden[1]], dim=-1)  # [B, 2H]: final fwd + bwd states
        elif self.config.summary == "mean":
            summary = outputs.mean(dim=1)  # [B, 2H]
        else:
            summary = torch.cat([outputs.mean(dim=1), outputs.amax(dim=1)], dim=-1)  # [B, 4H]
        if self.spectrum is not None:
            summary = torch.cat([summary, self.spectrum(waveform)], dim=-1)  # [B, 4H + 64]
        return self.fc(self.dropout(summary))  # [B, 2]
