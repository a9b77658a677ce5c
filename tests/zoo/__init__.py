"""Tests of the benchmark library vis_zoo/zoo/ (its command-line tool is tested in tests/tools/)."""
