"""YouTube-VIS-format datasets named in the config: `DATASETS.YTVIS_FORMAT`.

Every tool registers them when it builds its config (`vis_zoo.engine.setup.build_config`), so a
dataset of your own is a JSON file and a frame folder named in the config or on the command line,
with no Python to write::

    DATASETS:
      YTVIS_FORMAT: [[my_train, data/my/train.json, data/my/JPEGImages],
                     [my_val, data/my/valid.json, data/my/JPEGImages]]
      TRAIN: ("my_train",)
      TEST: ("my_val",)

An entry is `[name, json_file, image_root]`, optionally with a fourth item, the evaluator type
("ytvis", the default, or "ovis"). Relative paths are relative to the working directory; they are
made absolute in the config, so the `config.yaml` a training run writes works from anywhere.

Unlike `register_ytvis_instances`, which reads nothing, the JSON's `categories` are read here: the
class names and the class count are then known before training starts (the trainer checks the
model's class count against them, the demo labels with them).
"""

import os
import re
from typing import Any, Dict, List, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from .ytvis import category_metadata, read_json_object, register_ytvis_instances

__all__ = ["dataset_name_from_json", "read_json_categories", "register_config_datasets"]

EVALUATOR_TYPES = ("ytvis", "ovis")


def dataset_name_from_json(json_file: str) -> str:
    """A dataset name for a JSON given on the command line: its folder and file name without the
    extension, e.g. `data/my_videos/train.json` -> `my_videos_train`."""
    path = os.path.abspath(os.fspath(json_file))
    stem = os.path.splitext(os.path.basename(path))[0]
    folder = os.path.basename(os.path.dirname(path))
    name = f"{folder}_{stem}" if folder else stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def read_json_categories(json_file: str, *, where: str) -> Dict[str, Any]:
    """`thing_classes` and `thing_dataset_id_to_contiguous_id` from a YouTube-VIS JSON's categories.

    Raises FileNotFoundError / ValueError naming `where` (the config key) and the file."""
    try:
        data = read_json_object(json_file)
    except (FileNotFoundError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from e
    categories = data.get("categories")
    if not isinstance(categories, list) or not categories:
        raise ValueError(
            f"{where}: {json_file} has no 'categories' list; a YouTube-VIS JSON "
            'lists its classes as [{"id": 1, "name": "person"}, ...]'
        )
    try:
        return category_metadata(categories)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: {json_file} has bad 'categories' ({e})") from e


def _parse_entry(entry: Any, index: int) -> Tuple[str, str, str, str]:
    where = f"DATASETS.YTVIS_FORMAT[{index}]"
    if (
        not isinstance(entry, (list, tuple))
        or len(entry) not in (3, 4)
        or not all(isinstance(item, str) and item for item in entry)
    ):
        raise ValueError(
            f"{where} must be [name, json_file, image_root] or [name, json_file, "
            f"image_root, evaluator_type] (non-empty strings), got {entry!r}"
        )
    name, json_file, image_root = entry[:3]
    evaluator_type = entry[3] if len(entry) == 4 else "ytvis"
    if evaluator_type not in EVALUATOR_TYPES:
        raise ValueError(
            f"{where} ({name}): evaluator type must be one of {EVALUATOR_TYPES}, "
            f"got {evaluator_type!r}"
        )
    return name, os.path.abspath(json_file), os.path.abspath(image_root), evaluator_type


def register_config_datasets(cfg) -> List[str]:
    """Register every entry of `cfg.DATASETS.YTVIS_FORMAT` (a mutable config) and rewrite its paths
    as absolute ones. Returns the names.

    A name that is already registered with the same files is left as it is (tools and the
    initialisation stage build configs more than once per process); with other files, or a
    built-in name, it is an error.
    """
    entries = [_parse_entry(entry, i) for i, entry in enumerate(cfg.DATASETS.YTVIS_FORMAT)]
    names = [e[0] for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"DATASETS.YTVIS_FORMAT names {duplicates} more than once")
    for index, (name, json_file, image_root, evaluator_type) in enumerate(entries):
        where = f"DATASETS.YTVIS_FORMAT[{index}] ({name})"
        if name in DatasetCatalog.list():
            meta = MetadataCatalog.get(name)
            same = (meta.get("json_file", None), meta.get("image_root", None)) == (
                json_file,
                image_root,
            )
            if same:
                continue
            raise ValueError(
                f"{where}: the name {name!r} is already registered for "
                f"{meta.get('json_file', 'another dataset')}; choose another name"
            )
        if not os.path.isdir(image_root):
            raise FileNotFoundError(f"{where}: frame folder {image_root} does not exist")
        meta = read_json_categories(json_file, where=where)
        meta["evaluator_type"] = evaluator_type
        register_ytvis_instances(name, meta, json_file, image_root)
    cfg.DATASETS.YTVIS_FORMAT = tuple((n, j, r, e) for n, j, r, e in entries)
    return names


def data_flag_entries(train_data: Sequence[Sequence[str]], test_data: Sequence[Sequence[str]]):
    """`--train-data JSON FRAMES` / `--test-data JSON FRAMES` pairs -> (YTVIS_FORMAT entries, train
    names, test names); a JSON given for both gets one entry."""
    entries: Dict[str, Tuple[str, str, str]] = {}
    roles: Dict[str, List[str]] = {"train": [], "test": []}
    for role, pairs in (("train", train_data or ()), ("test", test_data or ())):
        for json_file, image_root in pairs:
            name = dataset_name_from_json(json_file)
            entry = (name, os.path.abspath(json_file), os.path.abspath(image_root))
            if entries.setdefault(name, entry) != entry:
                raise ValueError(
                    f"--{role}-data {json_file} {image_root}: the dataset name {name!r} "
                    f"(from the JSON's folder and name) is already used for "
                    f"{entries[name][1]} {entries[name][2]}; rename one of the files or "
                    "list them in DATASETS.YTVIS_FORMAT with names of your own"
                )
            roles[role].append(name)
    return list(entries.values()), roles["train"], roles["test"]
