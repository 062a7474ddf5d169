"""A small neural vocoder (log-mel -> waveform) trained on your bona fide speech, for copy synthesis.

Why: detectors trained on signal-processing copies (:mod:`rawguard.copysynth.vocoders`) do not learn
what neural vocoders leave behind; on the shared corpus, neural systems held out of training stay
near chance (BENCHMARKS.md, leave-systems-out). Copy synthesis through *neural* vocoders is how the
field makes training spoofs that generalise (Wang & Yamagishi, ICASSP 2023, used pretrained
HiFi-GAN / WaveGlow / ... copies of the bona fide training data). Nothing can be downloaded here,
so rawguard trains its own small vocoder on the training split's bona fide clips, in minutes on a
CPU, and :func:`rawguard.copysynth.synth_spoof.synth_spoof` uses it as the method ``neural``.

Generator (HiFi-GAN-style, Kong et al. 2020), for a log-mel ``[B, n_mels, F]`` (hop 256):

=================================================  ======================
conv k7, n_mels -> C                               ``[B, C, F]``
3 x (LeakyReLU, upsample x r, MRF block)          ``[B, C / 8, F * 256]``
LeakyReLU, conv k7 -> 1, tanh                      ``[B, F * 256]``
=================================================  ======================

Upsampling is a ``ConvTranspose1d`` (default, as in HiFi-GAN) or sample repetition + conv
(``upsample="nearest"``). The MRF block averages residual stacks of dilated convolutions with
kernels 3 and 7. Training uses the multi-resolution STFT loss of Parallel WaveGAN (spectral
convergence + log-magnitude L1 at three resolutions) and no discriminator: the copies only have to
carry the traces neural vocoders share (learned upsampling by transposed convolutions, phase
predicted from magnitudes), not fool a listener. See docs/recipes.md for what the copies do to
unseen systems. An iSTFT last stage (iSTFTNet) and adversarial fine-tuning with a multi-period
discriminator were tried and removed: neither moved unseen systems (BENCHMARKS.md, what did not
help); checkpoints that use them are refused with an error naming the field. A BigVGAN-style
snake activation was tried and removed too: its copies did not help either, nor did a small neural
audio codec (a learned encoder with residual vector quantisation in front of this generator,
``--analysis codec``), whose copies as a seventh set left held-out LM-based TTS where the six sets
leave it.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rawguard.conventions import BONAFIDE, INT16_SCALE, SAMPLE_RATE
from rawguard.dsp import mel_filterbank
from rawguard.progress import progress_bar

CHECKPOINT_KIND = "rawguard-vocoder"
UPSAMPLERS = ("transposed", "nearest")
REMOVED_UPSAMPLERS = ("istft",)  # removed variants; their checkpoints are refused by name
REMOVED_CODEC_FIELDS = ("analysis", "latent", "codebooks", "codebook_size")
STFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))  # (n_fft, hop, window): Parallel WaveGAN's


class VocoderError(ValueError):
    """Unusable vocoder input: no bona fide clips, a bad checkpoint, a bad setting."""


@dataclass
class VocoderConfig:
    """Generator and mel-analysis settings (stored in the checkpoint)."""

    n_fft: int = 1024
    hop: int = 256  # = prod(upsample_rates)
    n_mels: int = 80
    channels: int = 128  # after the input conv; halved by each upsampling stage
    upsample_rates: tuple[int, ...] = (8, 8, 4)
    resblock_kernels: tuple[int, ...] = (3, 7)
    resblock_dilations: tuple[int, ...] = (1, 3)
    negative_slope: float = 0.1
    # "transposed": learned ConvTranspose1d upsampling (HiFi-GAN, MelGAN, Parallel WaveGAN's family);
    # "nearest": sample repetition + conv ("resize-convolution"), which leaves other traces
    # (no checkerboard pattern, images of the frame rate instead).
    upsample: str = "transposed"

    def __post_init__(self) -> None:
        self.upsample_rates = tuple(int(r) for r in self.upsample_rates)
        self.resblock_kernels = tuple(int(k) for k in self.resblock_kernels)
        self.resblock_dilations = tuple(int(d) for d in self.resblock_dilations)
        if math.prod(self.upsample_rates) != self.hop:
            raise VocoderError(f"vocoder config: upsample_rates {self.upsample_rates} must multiply to hop {self.hop}")
        if self.channels < 2 ** len(self.upsample_rates) or self.n_mels < 1 or self.n_fft < self.hop:
            raise VocoderError(f"vocoder config: invalid sizes {asdict(self)}")
        if self.upsample in REMOVED_UPSAMPLERS:
            raise VocoderError(f"vocoder config: upsample {self.upsample!r} (the iSTFTNet-style generator) was removed "
                               f"from rawguard; upsample is one of {', '.join(UPSAMPLERS)}")
        if self.upsample not in UPSAMPLERS:
            raise VocoderError(f"vocoder config: upsample must be one of {', '.join(UPSAMPLERS)}, got {self.upsample!r}")


class LogMel(nn.Module):
    """``[B, T]`` waveform -> ``[B, n_mels, T // hop + 1]`` natural-log mel magnitudes (floor 1e-5)."""

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        self.n_fft, self.hop = config.n_fft, config.hop
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        bank = mel_filterbank(config.n_fft, config.n_mels, SAMPLE_RATE)
        self.register_buffer("bank", torch.from_numpy(bank).float(), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, return_complex=True).abs()  # [B, bins, F]
        return torch.log(torch.clamp(self.bank @ spec, min=1e-5))


class MultiReceptiveField(nn.Module):
    """Sum over kernels of residual stacks of dilated convs. ``[B, C, N]`` -> ``[B, C, N]``."""

    def __init__(self, channels: int, kernels: tuple[int, ...], dilations: tuple[int, ...], slope: float) -> None:
        super().__init__()
        self.slope = slope
        self.stacks = nn.ModuleList(
            nn.ModuleList(nn.Conv1d(channels, channels, k, dilation=d, padding=d * (k - 1) // 2) for d in dilations)
            for k in kernels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = 0
        for stack in self.stacks:
            y = x
            for conv in stack:
                y = y + conv(F.leaky_relu(y, self.slope))
            total = total + y
        return total / len(self.stacks)


class Generator(nn.Module):
    """Log-mel ``[B, n_mels, F]`` -> waveform ``[B, F * hop]`` in (-1, 1)."""

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.pre = nn.Conv1d(config.n_mels, c, 7, padding=3)
        ups, mrfs = [], []
        for rate in config.upsample_rates:
            if config.upsample == "nearest":  # repeat each sample r times, then a conv spanning 2 input steps
                ups.append(nn.Sequential(nn.Upsample(scale_factor=rate, mode="nearest"),
                                         nn.Conv1d(c, c // 2, 2 * rate + 1, padding=rate)))
            else:  # kernel 2r, padding r/2: each output sample sees two input frames, output length = N * r
                ups.append(nn.ConvTranspose1d(c, c // 2, 2 * rate, stride=rate, padding=rate // 2 + rate % 2,
                                              output_padding=rate % 2))
            c //= 2
            mrfs.append(MultiReceptiveField(c, config.resblock_kernels, config.resblock_dilations,
                                            config.negative_slope))
        self.ups, self.mrfs = nn.ModuleList(ups), nn.ModuleList(mrfs)
        self.post = nn.Conv1d(c, 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.pre(mel)  # [B, C, F]
        for up, mrf in zip(self.ups, self.mrfs):
            x = mrf(up(F.leaky_relu(x, self.config.negative_slope)))  # [B, C / 2, N * r]
        return torch.tanh(self.post(F.leaky_relu(x, self.config.negative_slope))).squeeze(1)  # [B, F * hop]


def stft_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss: mean over :data:`STFT_RESOLUTIONS` of spectral convergence + log-magnitude L1.

    ``fake``, ``real``: ``[B, T]``. Returns a scalar.
    """
    total = fake.new_zeros(())
    for n_fft, hop, win in STFT_RESOLUTIONS:
        window = torch.hann_window(win, device=fake.device)
        mags = [torch.stft(x, n_fft, hop, win, window, return_complex=True).abs().clamp(min=1e-7) for x in (fake, real)]
        convergence = torch.linalg.norm(mags[1] - mags[0]) / torch.linalg.norm(mags[1])
        total = total + convergence + F.l1_loss(torch.log(mags[0]), torch.log(mags[1]))
    return total / len(STFT_RESOLUTIONS)


@dataclass
class VocoderTrainConfig:
    """How long and how :func:`train_vocoder` trains."""

    minutes: float = 10.0  # wall-clock budget (the run also stops at max_steps)
    max_steps: int = 100_000
    batch_size: int = 8
    segment: int = 8192  # samples per training segment (32 frames)
    lr: float = 1e-3
    min_lr: float = 1e-4  # cosine from lr to min_lr over the time budget (or max_steps, if reached first)
    seed: int = 0
    threads: int = 0  # 0: torch's default
    checkpoint_every: int = 500
    device: str = "cpu"  # "cuda": the same training, many times faster; vocoder.pt loads anywhere
    model: VocoderConfig = field(default_factory=VocoderConfig)


@dataclass
class VocoderSummary:
    """What :func:`train_vocoder` did: ``steps`` in all, ``new_steps`` of them in this call."""

    path: Path
    steps: int
    minutes: float
    loss: float
    clips: int
    new_steps: int = 0


def bonafide_waveforms(cache_dir: str | Path, min_samples: int) -> list[np.ndarray]:
    """The bona fide clips of a prepared cache (int16 views), longer than ``min_samples``."""
    from rawguard.data.cache import Cache

    cache = Cache.open(cache_dir)
    clips = [cache.waveform(i) for i in np.flatnonzero(cache.labels == BONAFIDE) if cache.lengths[i] >= min_samples]
    if not clips:
        raise VocoderError(f"{cache_dir}: no bona fide clip of at least {min_samples} samples to train a vocoder on")
    return clips


def _segments(clips: list[np.ndarray], batch: int, segment: int, rng: np.random.Generator) -> torch.Tensor:
    """``[batch, segment]`` float random crops, each scaled to a random level (the vocoder must not learn one)."""
    out = np.empty((batch, segment), dtype=np.float32)
    for row, index in enumerate(rng.integers(len(clips), size=batch)):
        clip = clips[index]
        start = rng.integers(len(clip) - segment + 1)
        x = clip[start:start + segment].astype(np.float32) / INT16_SCALE
        out[row] = x / max(float(np.abs(x).max()), 1e-4) * rng.uniform(0.3, 0.95)
    return torch.from_numpy(out)


def _state(generator: Generator, optimizer, step: int, elapsed: float, loss: float) -> dict:
    # Weights on the CPU: vocoder.pt loads on any machine (the optimizer state follows the
    # parameters' device when a run resumes).
    return {"kind": CHECKPOINT_KIND, "config": json.dumps(asdict(generator.config)),
            "model": {name: tensor.cpu() for name, tensor in generator.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "step": step, "elapsed_s": elapsed, "loss": loss}


def _held_config(state: dict, path: Path) -> VocoderConfig:
    """The generator config a loaded ``vocoder.pt`` holds (fields it predates take their defaults).

    Raises:
        VocoderError: not a vocoder checkpoint, a removed variant (naming its field), or a config
            that does not parse.
    """
    if state.get("kind") != CHECKPOINT_KIND:
        raise VocoderError(f"{path}: not a vocoder checkpoint (train one with `rawguard train-vocoder`)")
    if "discriminator" in state:
        raise VocoderError(f"{path}: field 'discriminator': this vocoder was fine-tuned adversarially (train-vocoder "
                           "--adversarial), a variant removed from rawguard; train a new one")
    try:
        held = json.loads(state["config"])
        if held.get("analysis", "mel") != "mel":
            raise VocoderError(f"field 'analysis': {held['analysis']!r} (a neural codec, train-vocoder --analysis "
                               "codec) was removed from rawguard; train a new vocoder")
        # written by the version that had codecs: its mel vocoders' extra fields are the codec's, unused
        fields = {key: value for key, value in held.items() if key not in REMOVED_CODEC_FIELDS}
        return VocoderConfig(**fields)
    except VocoderError as error:
        raise VocoderError(f"{path}: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise VocoderError(f"{path}: unreadable vocoder config ({error})") from None


def train_vocoder(cache_dir: str | Path, out_dir: str | Path, config: VocoderTrainConfig | None = None,
                  progress: bool = True) -> VocoderSummary:
    """Train a :class:`Generator` on the bona fide clips of a prepared cache; write ``out_dir/vocoder.pt``.

    Resumes from ``out_dir/vocoder.pt`` when it exists (the time budget counts the earlier run too);
    a re-run whose budget is already spent leaves the file untouched, so the copies made with it
    (which record its hash) stay valid.
    Writes ``out_dir/log.jsonl`` (step, loss, lr) and, at the end, ``out_dir/vocoder.png`` (log-mel
    spectrograms of a bona fide clip and its copy).

    Raises:
        VocoderError: no usable bona fide clip, or ``out_dir`` holds a vocoder with another architecture.
    """
    from rawguard.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    config = config or VocoderTrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VocoderError(f"device {config.device!r}: CUDA is not available")
    torch.manual_seed(config.seed)
    clips = bonafide_waveforms(cache_dir, config.segment)
    generator, mel = Generator(config.model).to(device), LogMel(config.model).to(device)
    optimizer = torch.optim.AdamW(generator.parameters(), lr=config.lr, betas=(0.8, 0.99), weight_decay=0.0)
    path = out_dir / "vocoder.pt"
    step, spent, loss_value = 0, 0.0, float("nan")
    if path.exists():
        try:
            state = load_checkpoint(path, map_location=device)
        except CheckpointError as error:
            raise VocoderError(f"{error}; delete it or use another folder") from None
        if _held_config(state, path) != config.model:
            raise VocoderError(f"{path}: holds a vocoder with another architecture; use another folder")
        try:
            generator.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            step, spent = int(state["step"]), float(state["elapsed_s"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise VocoderError(f"{path}: cannot resume from it ({error}); delete it or use another folder") from None
    rng = np.random.default_rng([config.seed, step])
    first_step = step
    budget = config.minutes * 60.0
    start = time.monotonic() - spent
    bar = progress_bar(total=config.max_steps, initial=step, desc="train-vocoder", unit="step", disable=not progress)
    with contextlib.ExitStack() as stack, open(out_dir / "log.jsonl", "a") as log:
        stack.callback(bar.close)
        while step < config.max_steps and time.monotonic() - start < budget:
            # cosine over whichever limit comes first: the time budget or max_steps
            progress_fraction = min(1.0, max((time.monotonic() - start) / budget, step / config.max_steps))
            lr = config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress_fraction))
            for group in optimizer.param_groups:
                group["lr"] = lr
            real = _segments(clips, config.batch_size, config.segment, rng).to(device)  # [B, S]
            fake = generator(mel(real))[:, : config.segment]  # [B, S]
            loss = stft_loss(fake, real)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(generator.parameters(), 10.0)
            optimizer.step()
            step += 1
            loss_value = loss.item()
            bar.update()
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.1e}", refresh=False)
            if step % 50 == 0:
                elapsed = time.monotonic() - start
                log.write(json.dumps({"step": step, "loss": loss_value, "lr": lr, "elapsed_s": round(elapsed, 1)}) + "\n")
                log.flush()
                # The budget is time, not steps: show the steps it will allow at the current rate.
                rate = (step - first_step) / max(elapsed - spent, 1e-9)
                bar.total = min(config.max_steps, step + int(rate * max(budget - elapsed, 0.0)))
            if step % config.checkpoint_every == 0:
                save_checkpoint(_state(generator, optimizer, step, time.monotonic() - start, loss_value), path)
    elapsed = time.monotonic() - start
    if step > first_step:  # a re-run with the budget spent leaves the file (and its hash) alone
        save_checkpoint(_state(generator, optimizer, step, elapsed, loss_value), path)
    elif path.exists():
        loss_value = float(load_checkpoint(path).get("loss", loss_value))
    _plot_copy(generator.cpu(), mel.cpu(), clips[0], out_dir / "vocoder.png")
    return VocoderSummary(path=path, steps=step, minutes=elapsed / 60, loss=loss_value, clips=len(clips),
                          new_steps=step - first_step)


class NeuralVocoder:
    """A trained :class:`Generator` for copy synthesis: float ``[T]`` -> float ``[T]``."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator.eval()
        self.mel = LogMel(generator.config)

    @classmethod
    def load(cls, path: str | Path) -> NeuralVocoder:
        """Load ``vocoder.pt`` safely (no pickle code execution).

        Raises:
            VocoderError: the file is not a rawguard vocoder checkpoint or does not fit its config.
        """
        from rawguard.checkpoint import CheckpointError, load_checkpoint

        try:
            state = load_checkpoint(path)
        except CheckpointError as error:
            raise VocoderError(str(error)) from None
        generator = Generator(_held_config(state, Path(path)))
        try:
            generator.load_state_dict(state["model"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise VocoderError(f"{path}: vocoder checkpoint does not match its config: {error}") from None
        return cls(generator)

    @torch.no_grad()
    def __call__(self, wave: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """``wave`` float [T] at 16 kHz -> its copy, float [T] (deterministic; ``rng`` unused)."""
        x = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None]  # [1, T]
        scale = float(x.abs().max().clamp(min=1e-4))
        y = self.generator(self.mel(x / scale * 0.9))[0, : x.shape[1]] * (scale / 0.9)  # [T]
        return y.numpy().astype(np.float64)


def _plot_copy(generator: Generator, mel: LogMel, clip: np.ndarray, path: Path) -> None:
    """Log-mel spectrograms of a bona fide clip and of its copy, one above the other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vocoder = NeuralVocoder(generator)
    real = clip.astype(np.float32) / INT16_SCALE
    fake = vocoder(real).astype(np.float32)
    figure, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for axis, wave, title in zip(axes, (real, fake), ("bona fide", "neural copy")):
        image = mel(torch.from_numpy(wave)[None])[0].numpy()
        axis.imshow(image, origin="lower", aspect="auto", cmap="magma")
        axis.set_title(title)
        axis.set_ylabel("mel band")
    axes[-1].set_xlabel(f"frame ({generator.config.hop} samples)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    generator.train()
