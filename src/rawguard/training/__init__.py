"""Parts of the training loop (:mod:`rawguard.train`), one job each: ``build`` (what a run trains
with), ``state`` (run state and checkpoints), ``selection`` (dev evaluation and ``best.pt``),
``signals``, and the techniques (schedule, RNG capture, precision, distributed setup, losses, SAM,
EMA, compile, metrics log)."""
