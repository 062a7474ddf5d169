"""The analysis half of a small neural audio codec: a strided-convolution encoder and residual vector
quantisation (SoundStream / EnCodec-style), for codec copy synthesis.

Why: codec language-model TTS (CosyVoice, Fish-Speech, FireRedTTS, ...) generates discrete tokens
that a neural decoder turns into a waveform, and detectors trained without such audio miss it
(CodecFake, Wu et al., Interspeech 2024, trained on codec re-syntheses of bona fide speech for that
reason). Nothing can be downloaded here, so rawguard trains its own codec on the train bona fide
clips: this encoder and quantiser in front of the vocoder's generator (``VocoderConfig.analysis =
"codec"``, :mod:`rawguard.copysynth.neural`), trained end to end with the same spectral loss plus
the quantiser's. Copies are then encode -> quantise -> decode.

Encoder, for a waveform ``[B, T]`` (``T`` padded to a multiple of the hop, 256):

=====================================================  ==========================
conv k7, 1 -> 16                                         ``[B, 16, T]``
per stride r in (4, 8, 8): residual unit, conv k2r / r   ``[B, C * 2, T / r]``
ELU, conv k3 -> latent                                   ``[B, latent, T / 256]``
=====================================================  ==========================

At 16 kHz that is 62.5 latent frames a second; four codebooks of 256 entries make 2 kbit/s.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

COMMITMENT = 0.25
"""Weight of the encoder's commitment term (VQ-VAE's beta)."""
DEAD_CODE_USAGE = 0.02
"""A code whose running usage falls below this share of a uniform codebook's is restarted."""


class ResidualUnit(nn.Module):
    """``x + conv1x1(ELU(conv k7 dilated(ELU(x))))``, ``[B, C, N]`` -> ``[B, C, N]``."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.dilated = nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation)
        self.pointwise = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pointwise(F.elu(self.dilated(F.elu(x))))


class ResidualVQ(nn.Module):
    """Residual vector quantisation of ``[B, D, F]`` latents by ``codebooks`` codebooks of ``size`` entries.

    Each codebook quantises what the previous ones left. Codebooks are initialised from the first
    training batch's residuals, and a code that goes unused is restarted at a random residual (both
    standard remedies for codebook collapse) before its codebook is used in a step, so no tensor the
    step's backward needs is changed in place. The output passes gradients straight through to the
    encoder.
    """

    def __init__(self, dim: int, codebooks: int, size: int) -> None:
        super().__init__()
        self.books = nn.ParameterList(nn.Parameter(torch.zeros(size, dim)) for _ in range(codebooks))
        self.register_buffer("usage", torch.full((codebooks, size), 1.0 / size))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z`` ``[B, D, F]`` -> quantised ``[B, D, F]``, the codebook + commitment loss (scalar),
        codes ``[B, codebooks, F]``."""
        batch, dim, frames = z.shape
        flat = z.transpose(1, 2).reshape(-1, dim)  # [N, D]
        residual, total = flat, torch.zeros_like(flat)
        loss, codes = flat.new_zeros(()), []
        for q, book in enumerate(self.books):  # book [K, D]
            if self.training:
                self._refresh(q, residual.detach())
            index = _nearest(residual.detach(), book.detach())  # [N]
            chosen = book[index]  # [N, D]
            loss = loss + F.mse_loss(chosen, residual.detach()) + COMMITMENT * F.mse_loss(residual, chosen.detach())
            if self.training:
                counts = torch.bincount(index, minlength=book.shape[0]).float() / len(index)
                self.usage[q].mul_(0.99).add_(0.01 * counts)
            total = total + chosen
            residual = residual - chosen.detach()
            codes.append(index.view(batch, frames))
        self.initialised.fill_(True)
        quantised = flat + (total - flat).detach()  # straight-through: the decoder's gradient reaches z
        return quantised.view(batch, frames, dim).transpose(1, 2), loss, torch.stack(codes, 1)

    @torch.no_grad()
    def _refresh(self, q: int, residual: torch.Tensor) -> None:
        """Codebook ``q`` from random ``residual`` rows ``[N, D]`` on the first batch; its dead codes later."""
        book = self.books[q]
        size = book.shape[0]
        stale = (torch.arange(size, device=book.device) if not bool(self.initialised)
                 else torch.nonzero(self.usage[q] < DEAD_CODE_USAGE / size).flatten())
        if len(stale):
            book[stale] = residual[torch.randint(len(residual), (len(stale),), device=residual.device)]
            self.usage[q, stale] = 1.0 / size


def _nearest(rows: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    """Index ``[N]`` of the entry of ``book`` ``[K, D]`` nearest to each of ``rows`` ``[N, D]``."""
    distances = rows.pow(2).sum(1, keepdim=True) - 2 * rows @ book.T + book.pow(2).sum(1)  # [N, K]
    return distances.argmin(1)


class CodecEncoder(nn.Module):
    """Waveform ``[B, T]`` -> quantised latent ``[B, latent, ceil(T / hop)]``, VQ loss, codes."""

    def __init__(self, strides: tuple[int, ...], latent: int, codebooks: int, codebook_size: int) -> None:
        super().__init__()
        self.hop = math.prod(strides)
        channels = 16
        layers: list[nn.Module] = [nn.Conv1d(1, channels, 7, padding=3)]
        for stride in strides:
            layers += [ResidualUnit(channels, 1), ResidualUnit(channels, 3), nn.ELU(),
                       nn.Conv1d(channels, 2 * channels, 2 * stride, stride=stride, padding=stride // 2)]
            channels *= 2
        layers += [nn.ELU(), nn.Conv1d(channels, latent, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.quantiser = ResidualVQ(latent, codebooks, codebook_size)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pad = -wave.shape[-1] % self.hop
        latent = self.net(F.pad(wave, (0, pad))[:, None])  # [B, latent, (T + pad) / hop]
        return self.quantiser(latent)
