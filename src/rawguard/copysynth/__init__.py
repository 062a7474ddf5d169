"""Procedural voices, vocoder-like resynthesis and the built-in demo corpus.

- :mod:`rawguard.synth.voice`: source-filter voice model (the demo's bona fide speakers);
- :mod:`rawguard.synth.vocoders`: copy-synthesis methods (:func:`resynthesize`, :data:`METHODS`);
- :mod:`rawguard.synth.corpus`: :func:`generate_demo_corpus` (ASVspoof 2019 layout);
- :mod:`rawguard.synth.dsp`: the numpy signal-processing pieces they share.
"""

from rawguard.synth.corpus import DemoCorpusSpec, finish_clip, generate_demo_corpus
from rawguard.synth.vocoders import METHODS, SynthError, resynthesize
from rawguard.synth.voice import Speaker, random_speaker, synthesize_utterance

__all__ = [
    "METHODS",
    "DemoCorpusSpec",
    "Speaker",
    "SynthError",
    "finish_clip",
    "generate_demo_corpus",
    "random_speaker",
    "resynthesize",
    "synthesize_utterance",
]
