"""Tests of vis_zoo/data: datasets, the video mapper, clip augmentations and loaders."""
