"""Built-in YouTube-VIS 2019/2021/2022 and OVIS datasets under $DETECTRON2_DATASETS (default
"datasets").

Expected layout (the one IFC, SeqFormer, VITA and Mask2Former use)::

    $DETECTRON2_DATASETS/
      ytvis_2019/{train,valid}/JPEGImages/   ytvis_2019/{train,valid}.json
      ytvis_2021/{train,valid}/JPEGImages/   ytvis_2021/{train,valid}.json
      ytvis_2022/valid/JPEGImages/           ytvis_2022/valid.json
      ovis/{train,valid,test}/               ovis/annotations_{train,valid,test}.json

The category lists are data (ids and names as in the official JSONs), so class counts and names are
known without the files; registration never touches the disk.
"""

import os
from typing import Dict, List, Sequence, Tuple

from .ytvis import category_metadata, register_ytvis_instances

__all__ = [
    "YTVIS_2019_CATEGORIES",
    "YTVIS_2021_CATEGORIES",
    "OVIS_CATEGORIES",
    "BUILTIN_SPLITS",
    "register_all_builtin",
]


def _categories(names: Sequence[str]) -> List[Dict]:
    """Category list with ids 1..K in the given order (all three datasets number them this way)."""
    return [{"id": i + 1, "name": n} for i, n in enumerate(names)]


# YouTube-VIS 2019: ids 1..40 in this order.
YTVIS_2019_CATEGORIES = _categories(
    [
        "person",
        "giant_panda",
        "lizard",
        "parrot",
        "skateboard",
        "sedan",
        "ape",
        "dog",
        "snake",
        "monkey",
        "hand",
        "rabbit",
        "duck",
        "cat",
        "cow",
        "fish",
        "train",
        "horse",
        "turtle",
        "bear",
        "motorbike",
        "giraffe",
        "leopard",
        "fox",
        "deer",
        "owl",
        "surfboard",
        "airplane",
        "truck",
        "zebra",
        "tiger",
        "elephant",
        "snowboard",
        "boat",
        "shark",
        "mouse",
        "frog",
        "eagle",
        "earless_seal",
        "tennis_racket",
    ]
)

# YouTube-VIS 2021 (and 2022, which reuses the 2021 categories): ids 1..40, alphabetical.
YTVIS_2021_CATEGORIES = _categories(
    [
        "airplane",
        "bear",
        "bird",
        "boat",
        "car",
        "cat",
        "cow",
        "deer",
        "dog",
        "duck",
        "earless_seal",
        "elephant",
        "fish",
        "flying_disc",
        "fox",
        "frog",
        "giant_panda",
        "giraffe",
        "horse",
        "leopard",
        "lizard",
        "monkey",
        "motorbike",
        "mouse",
        "parrot",
        "person",
        "rabbit",
        "shark",
        "skateboard",
        "snake",
        "snowboard",
        "squirrel",
        "surfboard",
        "tennis_racket",
        "tiger",
        "train",
        "truck",
        "turtle",
        "whale",
        "zebra",
    ]
)

# OVIS: ids 1..25; "Vehical" is spelled as in the official annotation files.
OVIS_CATEGORIES = _categories(
    [
        "Person",
        "Bird",
        "Cat",
        "Dog",
        "Horse",
        "Sheep",
        "Cow",
        "Elephant",
        "Bear",
        "Zebra",
        "Giraffe",
        "Poultry",
        "Giant_panda",
        "Lizard",
        "Parrot",
        "Monkey",
        "Rabbit",
        "Tiger",
        "Fish",
        "Turtle",
        "Bicycle",
        "Motorcycle",
        "Airplane",
        "Boat",
        "Vehical",
    ]
)

# name -> (image_root, json_file) relative to the datasets root, categories, evaluator type
BUILTIN_SPLITS: Dict[str, Tuple[str, str, List[Dict], str]] = {
    "ytvis_2019_train": (
        "ytvis_2019/train/JPEGImages",
        "ytvis_2019/train.json",
        YTVIS_2019_CATEGORIES,
        "ytvis",
    ),
    "ytvis_2019_val": (
        "ytvis_2019/valid/JPEGImages",
        "ytvis_2019/valid.json",
        YTVIS_2019_CATEGORIES,
        "ytvis",
    ),
    "ytvis_2021_train": (
        "ytvis_2021/train/JPEGImages",
        "ytvis_2021/train.json",
        YTVIS_2021_CATEGORIES,
        "ytvis",
    ),
    "ytvis_2021_val": (
        "ytvis_2021/valid/JPEGImages",
        "ytvis_2021/valid.json",
        YTVIS_2021_CATEGORIES,
        "ytvis",
    ),
    "ytvis_2022_val": (
        "ytvis_2022/valid/JPEGImages",
        "ytvis_2022/valid.json",
        YTVIS_2021_CATEGORIES,
        "ytvis",
    ),
    "ovis_train": ("ovis/train", "ovis/annotations_train.json", OVIS_CATEGORIES, "ovis"),
    "ovis_val": ("ovis/valid", "ovis/annotations_valid.json", OVIS_CATEGORIES, "ovis"),
    "ovis_test": ("ovis/test", "ovis/annotations_test.json", OVIS_CATEGORIES, "ovis"),
}


def datasets_root() -> str:
    """$DETECTRON2_DATASETS, or "datasets" (relative to the working directory), as detectron2
    does."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def register_all_builtin(root: str = None) -> None:
    """Register every built-in split (idempotent: already registered names are skipped)."""
    from detectron2.data import DatasetCatalog

    root = datasets_root() if root is None else root
    for name, (image_root, json_file, categories, evaluator_type) in BUILTIN_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        meta = category_metadata(categories)
        meta["evaluator_type"] = evaluator_type
        register_ytvis_instances(
            name, meta, os.path.join(root, json_file), os.path.join(root, image_root)
        )
