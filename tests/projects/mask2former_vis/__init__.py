"""Tests of projects/mask2former_vis: the model, its converter and the official equivalence."""
