"""Pieces of the training loop (:mod:`rawguard.train`) that are worth testing on their own:
learning-rate schedule, RNG state capture, precision selection, distributed setup, metrics log."""
