"""The command-line form every tool shares: how a config is chosen, changed and pointed at data.

    --config-file FILE                 the config (with its _BASE_ chain)
    --train-data JSON FRAMES           a YouTube-VIS-format training set (repeatable)
    --test-data JSON FRAMES            a YouTube-VIS-format test set (repeatable)
    KEY VALUE ...                      trailing config overrides (detectron2's form)
    --opts KEY VALUE ...               the same overrides behind a flag (older form, still accepted)

`--train-data` / `--test-data` register the JSON under a name made from its folder and file name
(`data/my/train.json` -> `my_train`, see `vis_zoo.data.datasets.from_config`) and set
DATASETS.TRAIN / DATASETS.TEST to the datasets given; they become ordinary `KEY VALUE` overrides
of DATASETS.YTVIS_FORMAT, DATASETS.TRAIN and DATASETS.TEST, so a tool that hands its overrides to
a subprocess hands the data on too.
"""

import argparse
from contextlib import contextmanager
from typing import List, Optional, Sequence

from detectron2.config import CfgNode

__all__ = [
    "add_config_arguments",
    "check_override_pairs",
    "config_errors_as_exit",
    "config_overrides",
]


def add_config_arguments(
    parser: argparse.ArgumentParser, *, config_file: bool = True, trailing_overrides: bool = True
) -> argparse.ArgumentParser:
    """Add the shared arguments to a tool's parser.

    `config_file=False` when the parser already has --config-file (detectron2's default parser);
    `trailing_overrides=False` when it already has the positional `opts`."""
    if config_file:
        parser.add_argument(
            "--config-file", required=True, metavar="FILE", help="path to the config file"
        )
    parser.add_argument(
        "--train-data",
        nargs=2,
        action="append",
        default=[],
        metavar=("JSON", "FRAMES"),
        help="a YouTube-VIS-format training set: its JSON and its frame folder; sets "
        "DATASETS.TRAIN (repeatable)",
    )
    parser.add_argument(
        "--test-data",
        nargs=2,
        action="append",
        default=[],
        metavar=("JSON", "FRAMES"),
        help="a YouTube-VIS-format test set: its JSON and its frame folder; sets "
        "DATASETS.TEST (repeatable)",
    )
    parser.add_argument(
        "--opts",
        dest="flag_opts",
        nargs=argparse.REMAINDER,
        default=[],
        metavar="KEY VALUE",
        help="config overrides (the same as trailing KEY VALUE pairs)",
    )
    if trailing_overrides:
        parser.add_argument(
            "opts",
            nargs=argparse.REMAINDER,
            default=[],
            metavar="KEY VALUE",
            help="config overrides, e.g. MODEL.DEVICE cpu SOLVER.MAX_ITER 100",
        )
    return parser


def check_override_pairs(opts: Sequence[str]) -> None:
    """Overrides come in KEY VALUE pairs; an option after them was swallowed as one."""
    options = [item for item in opts if str(item).startswith("--")]
    if options:
        raise SystemExit(
            f"error: {options[0]} comes after the KEY VALUE overrides, where it would be read "
            "as a config key; put every --option before the overrides"
        )
    if len(opts) % 2:
        raise SystemExit(
            f"error: config overrides must be KEY VALUE pairs; got {len(opts)} items: "
            f"{' '.join(map(str, opts))}"
        )


def _current_ytvis_format(config_file: str, opts: Sequence[str]) -> list:
    """DATASETS.YTVIS_FORMAT as the file (with its _BASE_ chain) and `opts` set it."""
    entries = []
    if config_file:
        loaded = CfgNode.load_yaml_with_base(config_file, allow_unsafe=True)
        entries = list((loaded.get("DATASETS") or {}).get("YTVIS_FORMAT") or [])
    for key, value in zip(opts[0::2], opts[1::2]):
        if key == "DATASETS.YTVIS_FORMAT":
            holder = CfgNode({"V": ()})
            holder.merge_from_list(["V", value])
            entries = list(holder.V)
    return [tuple(entry) for entry in entries]


def config_overrides(args: argparse.Namespace, config_file: Optional[str] = None) -> List[str]:
    """All `KEY VALUE` overrides of a tool's arguments: trailing pairs, `--opts` pairs, then what
    --train-data / --test-data stand for."""
    from vis_zoo.data.datasets.from_config import data_flag_entries

    opts = [
        str(o)
        for o in list(getattr(args, "opts", None) or [])
        + list(getattr(args, "flag_opts", None) or [])
    ]
    check_override_pairs(opts)
    train_data = getattr(args, "train_data", None) or []
    test_data = getattr(args, "test_data", None) or []
    if not (train_data or test_data):
        return opts
    entries, train_names, test_names = data_flag_entries(train_data, test_data)
    config_file = args.config_file if config_file is None else config_file
    known = _current_ytvis_format(config_file, opts)
    names = {entry[0] for entry in entries}
    merged = [entry for entry in known if entry[0] not in names] + entries
    opts += ["DATASETS.YTVIS_FORMAT", repr(tuple(merged))]
    if train_names:
        opts += ["DATASETS.TRAIN", repr(tuple(train_names))]
    if test_names:
        opts += ["DATASETS.TEST", repr(tuple(test_names))]
    return opts


@contextmanager
def config_errors_as_exit():
    """A config that cannot work (a wrong key, a missing file, a class count that disagrees with the
    data) ends the tool with its one-line message instead of a traceback."""
    try:
        yield
    except (ValueError, KeyError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise SystemExit(f"error: {message}") from None
