"""Tests of projects/: one folder per method, plus checks that run every method."""
