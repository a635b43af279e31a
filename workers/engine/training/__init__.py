"""Training as data: a spec (spec.py) resolved through registries of small typed classes
(optimizers.py, losses.py, schedules.py, metrics.py), run by a Trainer with explicit state and
callbacks (trainer.py, callbacks.py), checkpointed atomically (checkpoints.py).

The web tier reads the spec and the registries (forms, API checks, the schedule curve), so those
modules import torch only inside the functions that build objects; trainer.py imports it at once.
"""
