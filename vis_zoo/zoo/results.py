"""The benchmark's results file and what each row records about the machine.

The file is JSON, ``{"version": 1, "rows": {"<method>/<config name>": row}}``; rows are merged on
every rerun (a partial rerun replaces only its rows) and the file is written atomically.
"""

import datetime
import json
import os
import platform
from typing import Dict

from .memory import total_ram_gb

__all__ = [
    "apply_accuracy_from",
    "load_results",
    "machine_info",
    "machine_string",
    "now",
    "save_results",
]


def machine_info(device: str, threads: int) -> Dict[str, object]:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": threads,
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    ram = total_ram_gb()
    if ram is not None:
        info["ram_gb"] = round(ram, 1)
    return info


def machine_string(info: Dict[str, object]) -> str:
    dev = info.get("gpu") or str(info.get("device", "?"))
    ram = f", {info['ram_gb']} GB RAM" if "ram_gb" in info else ""
    return (
        f"{info.get('cpu')} ({info.get('cores')} cores{ram}), torch {info.get('torch')} with "
        f"{info.get('torch_threads')} CPU threads, device {dev}"
    )


def load_results(path: str) -> Dict[str, object]:
    """The results file ({"version": 1, "rows": {key: row}}), or an empty one if missing."""
    if not os.path.exists(path):
        return {"version": 1, "rows": {}}
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"benchmark results file {path!r} is not valid JSON ({e}); move it away to start anew"
        )
    if not isinstance(data, dict) or not isinstance(data.get("rows"), dict):
        raise ValueError(f"benchmark results file {path!r} has no 'rows' mapping")
    return data


def save_results(path: str, data: Dict[str, object]) -> None:
    from vis_zoo.utils.io import atomic_write_json

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(path, data)


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def apply_accuracy_from(
    data: Dict[str, object], accuracy: Dict[str, Dict[str, object]]
) -> Dict[str, object]:
    """Put each `accuracy_from_runs` entry into its row of the results `data` (in place; returned).

    The row must exist (a ValueError names the key and lists the rows), and when both are known the
    run's MODEL.META_ARCHITECTURE must be the row's (a run of another method is a ValueError)."""
    rows = data["rows"]
    for key, acc in accuracy.items():
        row = rows.get(key)
        if row is None:
            raise ValueError(
                f"--accuracy-from {key}: no row {key!r} in the results (rows: {sorted(rows)}); "
                "benchmark the config first (e.g. --stages model) or fix the key"
            )
        facts = row.get("facts", {})
        arch, run_arch = facts.get("meta_architecture"), acc.get("meta_architecture")
        if arch and run_arch and arch != run_arch:
            raise ValueError(
                f"--accuracy-from {key}: the run {acc.get('source')} trained {run_arch}, "
                f"but row {key!r} is {arch}"
            )
        acc = dict(acc)
        if "max_iter" not in acc and "max_iter" in facts:
            acc["max_iter"] = facts[
                "max_iter"
            ]  # no config.yaml in the run: the row config's schedule
        if "dataset" not in acc and facts.get("test_datasets"):
            acc["dataset"] = facts["test_datasets"][0]
        row["accuracy"] = acc
        row.setdefault("errors", {}).pop("accuracy", None)
        row["updated"] = now()
    return data
