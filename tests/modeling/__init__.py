"""Tests of vis_zoo/modeling: the shared layers, matchers, losses and the Mask2Former detector."""
