"""Driver used by the engine tests: tools/train_net.py with the test-only MinimalVISModel registered.

Run as a script (also under `--num-gpus 2`, where detectron2's `launch` spawns workers that re-import
this file, so the model is registered in every process).
"""
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # test helper only, not shipped code
import minimal_model  # noqa: E402,F401  (registers MinimalVISModel)

_TRAIN_NET = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "train_net.py")
_spec = importlib.util.spec_from_file_location("vis_zoo_train_net", _TRAIN_NET)
train_net = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_net)


def main(args):
    return train_net.main(args)


if __name__ == "__main__":
    from vis_zoo.engine.launch import launch

    args = train_net.build_argument_parser().parse_args()
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
