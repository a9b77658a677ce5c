"""tools/benchmark_trim.py: both modes timed, the real trimming restored afterwards."""

import vis_zoo.utils.allocator as allocator
from tests.tools.tool_loading import load_tool


def test_trim_benchmark_times_both_modes_and_restores_the_trimmer(capsys):
    real = allocator.release_freed_memory
    tool = load_tool("benchmark_trim.py")
    code = tool.main(
        ["--config-file", "configs/ifc/synthetic_R18.yaml", "--frames", "3", "--size", "48", "64"]
        + ["--rounds", "2"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "trim: median" in out and "no trim: median" in out
    assert out.count("[") == 2 and allocator.release_freed_memory is real
