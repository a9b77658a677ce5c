"""VIS Zoo: transformer video instance segmentation methods as detectron2 meta-architectures.

Importing `vis_zoo` registers the built-in datasets (YouTube-VIS 2019/2021/2022, OVIS and the
synthetic dataset) in detectron2's DatasetCatalog.
"""

__version__ = "0.1.0"

from . import data  # noqa: F401  (registers datasets)
