"""Benchmark harness of the model zoo (speed and peak memory; more measurements plug in here)."""

from .speed import (
    SpeedResult,
    format_speed_table,
    measure_model_vs_backbone,
    measure_speed,
    measure_speed_in_subprocess,
)

__all__ = [
    "SpeedResult",
    "format_speed_table",
    "measure_model_vs_backbone",
    "measure_speed",
    "measure_speed_in_subprocess",
]
