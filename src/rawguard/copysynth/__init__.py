"""Copy synthesis: rebuild bona fide recordings through a vocoder, to make training spoofs.

- :mod:`rawguard.copysynth.vocoders`: signal-processing methods (:func:`resynthesize`, :data:`METHODS`:
  ``griffin_lim``, ``lpc``, ``sinusoidal``, ``world``, ``world_vc``);
- :mod:`rawguard.copysynth.neural`: a small neural vocoder trained on your bona fide clips
  (:func:`train_vocoder`, :class:`NeuralVocoder`; the method ``neural``);
- :mod:`rawguard.copysynth.synth_spoof`: copies of a folder or of a protocol's bona fide entries,
  resumable (``rawguard synth-spoof``).

The numpy DSP the methods use is :mod:`rawguard.dsp`, shared with the demo corpus's voice model
(:mod:`rawguard.demo_corpus`).
"""

from rawguard.copysynth.vocoders import METHODS, SynthError, resynthesize

__all__ = ["METHODS", "SynthError", "resynthesize"]
