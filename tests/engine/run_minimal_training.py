"""Driver used by the engine tests: tools/train_net.py with the test-only MinimalVISModel
registered.

Run as a script (also under `--num-gpus 2`, where detectron2's `launch` spawns workers that
re-import
this file, so the model is registered in every process).
"""

import importlib.util
import os
import sys

# Run as a script, the repository root is not on sys.path: add it so that the test helpers import
# by their package path (the same module names as under pytest, so the model registers once).
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
from tests.engine import minimal_model  # noqa: E402,F401  (registers MinimalVISModel)

_TRAIN_NET = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "train_net.py")
_spec = importlib.util.spec_from_file_location("vis_zoo_train_net", _TRAIN_NET)
train_net = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_net)


def _pause_while_writing(checkpoint_name: str) -> None:
    """Make the checkpoint `checkpoint_name` (e.g. "model_0000005") stop half-written and wait
    there.

    The fault-injection tests set $VIS_ZOO_TEST_PAUSE_WRITING and kill -9 the process once it prints
    "PAUSED WRITING <name>": a reliable way to kill it during a checkpoint write, which otherwise
    takes
    a millisecond for this small model.
    """
    import io
    import time

    import torch

    from vis_zoo.engine import AtomicDetectionCheckpointer

    real_save, original = torch.save, AtomicDetectionCheckpointer.save

    def write_half_and_wait(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        print(f"PAUSED WRITING {checkpoint_name}", flush=True)
        time.sleep(600)

    def save(self, name, **kwargs):
        if name != checkpoint_name or not self.save_to_disk:
            return original(self, name, **kwargs)
        torch.save = write_half_and_wait
        try:
            return original(self, name, **kwargs)
        finally:
            torch.save = real_save

    AtomicDetectionCheckpointer.save = save


def main(args):
    if os.environ.get("VIS_ZOO_TEST_PAUSE_WRITING"):
        _pause_while_writing(os.environ["VIS_ZOO_TEST_PAUSE_WRITING"])
    return train_net.main(args)


if __name__ == "__main__":
    train_net.cli(main_func=main)  # the tool's own command line, launch and Ctrl-C handling
