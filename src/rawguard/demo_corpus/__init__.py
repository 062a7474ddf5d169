"""The built-in demo corpus (``rawguard demo``): procedural bona fide speakers and their copies.

- :mod:`rawguard.demo_corpus.voice`: a source-filter voice model (the demo's bona fide speakers);
- :mod:`rawguard.demo_corpus.generate`: :func:`generate_demo_corpus` (ASVspoof 2019 layout), whose
  spoofs are copies made with :mod:`rawguard.copysynth`'s signal-processing vocoders.
"""

from rawguard.demo_corpus.generate import DemoCorpusSpec, finish_clip, generate_demo_corpus
from rawguard.demo_corpus.voice import Speaker, random_speaker, synthesize_utterance

__all__ = ["DemoCorpusSpec", "Speaker", "finish_clip", "generate_demo_corpus", "random_speaker", "synthesize_utterance"]
