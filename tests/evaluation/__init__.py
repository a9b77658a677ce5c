"""Tests of vis_zoo/evaluation and its tools: the YouTube-VIS / OVIS metric, the evaluator."""
