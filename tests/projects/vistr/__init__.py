"""Tests of projects/vistr: the VisTR model, matcher, criterion and converter."""
