from . import datasets  # noqa: F401  (registers the built-in datasets)
from .augmentation import apply_clip_augmentations, build_clip_augmentation  # noqa: F401
from .build import build_vis_test_loader, build_vis_train_loader  # noqa: F401
from .dataset_mapper import CocoClipDatasetMapper, YTVISDatasetMapper  # noqa: F401
