"""CPU threads: one by default on CPU, the environment can choose."""

import pytest
import torch

from vis_zoo.engine.threads import configure_cpu_threads, cpu_threads


def test_one_thread_unless_the_environment_says_otherwise(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("VIS_ZOO_CPU_THREADS", raising=False)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert cpu_threads() == 1
        torch.set_num_threads(2)
        assert configure_cpu_threads("cpu") == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert cpu_threads() == 2
        monkeypatch.setenv("VIS_ZOO_CPU_THREADS", "3")  # ours wins over OpenMP's variable
        assert configure_cpu_threads("cpu") == 3 and torch.get_num_threads() == 3
        monkeypatch.setenv("VIS_ZOO_CPU_THREADS", "many")
        with pytest.raises(ValueError, match="VIS_ZOO_CPU_THREADS='many'"):
            cpu_threads()
    finally:
        torch.set_num_threads(before)
