"""Tests of projects/vita: the VITA model and its converter."""
