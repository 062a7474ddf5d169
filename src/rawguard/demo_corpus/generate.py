"""The built-in demo corpus: procedural bona fide speakers + vocoder copies, in ASVspoof 2019 layout.

Layout written under ``out_dir``::

    flac/<UTT>.flac                 16 kHz mono 16-bit FLAC
    protocols/train.txt dev.txt eval.txt   ``SPEAKER UTT - SYSTEM KEY`` (SYSTEM ``-`` for bona fide)
    systems.tsv                     system id -> resynthesis method, and which split it appears in
    meta.json                       every generation parameter (seed, counts, speakers)

Design, so that a detector can only win by hearing resynthesis artefacts:

- train, dev and eval use disjoint speakers; within a split, spoofs are copies of *held-out*
  utterances of the same speakers as that split's bona fide clips (never of a bona fide clip that
  is itself in the corpus, so content cannot be matched either);
- bona fide clips and copies go through the same finishing chain (:func:`finish_clip`): fades,
  random 50-300 ms padding, loudness normalisation of active speech to -26 dBFS with a random
  +/-4 dB gain, and a white or pink noise floor 45-60 dB below the speech, so level, silence and
  noise floor do not identify a class;
- the eval split adds one resynthesis method never seen in train/dev (the "unseen attack").
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from rawguard.conventions import SAMPLE_RATE
from rawguard.copysynth.vocoders import METHODS, resynthesize
from rawguard.demo_corpus.voice import Speaker, random_speaker, synthesize_utterance
from rawguard.dsp import active_rms
from rawguard.parallel import one_thread_per_child
from rawguard.progress import progress_bar

SEEN_METHODS: tuple[str, ...] = ("griffin_lim", "lpc", "world")
UNSEEN_METHOD: str = "sinusoidal"


@dataclass(frozen=True)
class DemoCorpusSpec:
    """Sizes of the generated corpus (defaults: the full demo; :meth:`quick` for CI).

    Clip counts are per split and per class; spoofs are spread evenly over the split's methods.
    """

    train_speakers: int = 6
    dev_speakers: int = 3
    eval_speakers: int = 3
    train_per_class: int = 180
    dev_per_class: int = 45
    eval_per_class: int = 90  # bona fide; spoofs: 90 / (seen attacks) per attack, seen and unseen
    duration: tuple[float, float] = (1.0, 2.2)  # seconds of running speech before padding
    seen_methods: tuple[str, ...] = SEEN_METHODS
    unseen_method: str = UNSEEN_METHOD

    @classmethod
    def quick(cls) -> "DemoCorpusSpec":
        """A tiny corpus for CI end-to-end tests (a few seconds to generate)."""
        return cls(train_speakers=3, dev_speakers=2, eval_speakers=2, train_per_class=36,
                   dev_per_class=12, eval_per_class=16, duration=(1.2, 1.8))

    def systems(self) -> dict[str, str]:
        """System id (``A01``...) -> method; seen methods first, the unseen one last."""
        methods = list(self.seen_methods) + [self.unseen_method]
        return {f"A{i + 1:02d}": m for i, m in enumerate(methods)}


@dataclass(frozen=True)
class ClipJob:
    """Everything needed to render one clip deterministically in any worker process."""

    utt_id: str
    split: str
    speaker: Speaker
    system: str  # "-" for bona fide
    method: str | None
    seed: int
    duration: float
    path: str


def finish_clip(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The finishing chain shared by bona fide clips and their copies: [T] -> [T + padding] float32.

    10 ms fades, 50-300 ms silence at each end, active speech at -26 dBFS +/- 4 dB, then a white or
    pink noise floor 45-60 dB below the speech (so digital silence cannot identify a class).
    """
    x = np.asarray(speech, dtype=np.float64) - float(np.mean(speech))
    fade = SAMPLE_RATE // 100
    ramp = np.sin(0.5 * np.pi * np.arange(fade) / fade) ** 2
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    lead, trail = (rng.uniform(0.05, 0.3, 2) * SAMPLE_RATE).astype(int)
    x = np.concatenate([np.zeros(lead), x, np.zeros(trail)])
    level_db = -26.0 + rng.uniform(-4.0, 4.0)
    x *= 10 ** (level_db / 20) / max(active_rms(x, SAMPLE_RATE), 1e-9)
    noise = rng.standard_normal(len(x))
    if rng.random() < 0.5:  # pink: 1/f power via spectral shaping
        spec = np.fft.rfft(noise)
        spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1))
        noise = np.fft.irfft(spec, n=len(x))
    noise *= 10 ** ((level_db - rng.uniform(45, 60)) / 20) / (np.std(noise) + 1e-12)
    x += noise
    peak = float(np.max(np.abs(x)))
    if peak > 0.98:
        x *= 0.98 / peak
    return x.astype(np.float32)


def render_clip(job: ClipJob) -> ClipJob:
    """Synthesise (and for spoofs resynthesise), finish and write one clip as 16-bit FLAC."""
    rng = np.random.default_rng(job.seed)
    speech = synthesize_utterance(job.speaker, job.duration, rng)
    if job.method is not None:
        speech = resynthesize(speech, job.method, rng)
    clip = finish_clip(speech, rng)
    sf.write(job.path, clip, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    return job


def plan_jobs(out_dir: Path, spec: DemoCorpusSpec, seed: int) -> tuple[list[ClipJob], dict[str, list[Speaker]]]:
    """Decide every clip (speaker, system, seed, length) up front, so the corpus is the same for any worker count."""
    root = np.random.SeedSequence(seed)
    spk_rng, job_rng = (np.random.default_rng(s) for s in root.spawn(2))
    systems = spec.systems()
    seen = [sid for sid, m in systems.items() if m != spec.unseen_method]
    unseen = [sid for sid, m in systems.items() if m == spec.unseen_method]
    layout = {
        "train": (spec.train_speakers, spec.train_per_class, seen),
        "dev": (spec.dev_speakers, spec.dev_per_class, seen),
        "eval": (spec.eval_speakers, spec.eval_per_class, seen + unseen),
    }
    speakers: dict[str, list[Speaker]] = {}
    jobs: list[ClipJob] = []
    for split, (n_speakers, per_class, split_systems) in layout.items():
        speakers[split] = [random_speaker(f"DEMO_{split[0].upper()}{i + 1:02d}", spk_rng) for i in range(n_speakers)]
        # eval gets as many spoofs per unseen system as per seen system
        n_spoof = per_class if split != "eval" else per_class * len(split_systems) // len(seen)
        entries = [("-", None)] * per_class
        entries += [(split_systems[i % len(split_systems)], systems[split_systems[i % len(split_systems)]]) for i in range(n_spoof)]
        order = job_rng.permutation(len(entries))  # ids are shuffled: an id says nothing about class
        prefix = {"train": "T", "dev": "D", "eval": "E"}[split]
        for position, k in enumerate(order):
            system, method = entries[k]
            utt_id = f"DEMO_{prefix}_{position + 1:05d}"
            speaker = speakers[split][int(job_rng.integers(n_speakers))]
            jobs.append(ClipJob(
                utt_id=utt_id, split=split, speaker=speaker, system=system, method=method,
                seed=int(job_rng.integers(2**31)), duration=float(job_rng.uniform(*spec.duration)),
                path=str(out_dir / "flac" / f"{utt_id}.flac"),
            ))
    return jobs, speakers


def generate_demo_corpus(
    out_dir: str | os.PathLike,
    spec: DemoCorpusSpec | None = None,
    seed: int = 2026,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate the demo corpus (see the module docstring for the layout and design).

    Args:
        out_dir: destination folder (created; existing clips with the same ids are overwritten).
        spec: corpus sizes; default :class:`DemoCorpusSpec` (660 clips of 1.1-2.8 s).
        seed: master seed: the same seed gives bit-identical audio for any ``workers``.
        workers: processes rendering clips (default: CPU count, at most 4); 1 renders in-process.
        progress: show a tqdm bar (clips/s, ETA).

    Returns:
        ``{"train": path, "dev": path, "eval": path}`` of the protocol files, plus ``"flac"``: the audio folder.
    """
    spec = spec or DemoCorpusSpec()
    for method in (*spec.seen_methods, spec.unseen_method):
        if method not in METHODS:
            raise ValueError(f"DemoCorpusSpec: unknown resynthesis method {method!r} (choose from: {', '.join(METHODS)})")
    if spec.unseen_method in spec.seen_methods:
        raise ValueError(f"DemoCorpusSpec: unseen_method {spec.unseen_method!r} is also a seen method")
    out = Path(out_dir)
    (out / "flac").mkdir(parents=True, exist_ok=True)
    (out / "protocols").mkdir(parents=True, exist_ok=True)
    jobs, speakers = plan_jobs(out, spec, seed)
    workers = workers or min(4, os.cpu_count() or 1)
    bar = progress_bar(total=len(jobs), desc="demo corpus", unit="clip", disable=not progress)
    try:
        if workers <= 1:
            for job in jobs:
                render_clip(job)
                bar.update()
        else:
            # spawn, not fork: the caller (the demo) may already run torch threads
            spawn = multiprocessing.get_context("spawn")
            with one_thread_per_child(), ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
                for _ in pool.map(render_clip, jobs, chunksize=8):
                    bar.update()
    finally:
        bar.close()

    paths: dict[str, Path] = {"flac": out / "flac"}
    for split in ("train", "dev", "eval"):
        lines = [f"{j.speaker.speaker_id} {j.utt_id} - {j.system} {'bonafide' if j.method is None else 'spoof'}"
                 for j in jobs if j.split == split]
        paths[split] = out / "protocols" / f"{split}.txt"
        paths[split].write_text("\n".join(lines) + "\n")
    systems = spec.systems()
    rows = ["system\tmethod\tsplits"] + [
        f"{sid}\t{m}\t{'eval' if m == spec.unseen_method else 'train,dev,eval'}" for sid, m in systems.items()
    ]
    (out / "systems.tsv").write_text("\n".join(rows) + "\n")
    meta = {
        "generator": "rawguard.demo_corpus.generate_demo_corpus",
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "spec": asdict(spec),
        "systems": systems,
        "unseen_systems": [sid for sid, m in systems.items() if m == spec.unseen_method],
        "counts": {s: sum(j.split == s for j in jobs) for s in ("train", "dev", "eval")},
        "speakers": {s: [sp.to_dict() for sp in v] for s, v in speakers.items()},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return paths
