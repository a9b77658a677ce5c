"""Tests of vis_zoo/engine and tools/train_net.py: setup, checks, trainer, checkpoints."""
