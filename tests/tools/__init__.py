"""Tests of the command-line tools in tools/ (demo, benchmark, converter, checks)."""
