"""Tests of projects/minvis: the MinVIS model, tracking and converter."""
