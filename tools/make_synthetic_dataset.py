#!/usr/bin/env python
"""Write the VIS Zoo synthetic dataset explicitly (the registered datasets generate it lazily).

    python tools/make_synthetic_dataset.py --out /data/synthetic                 # every split
    python tools/make_synthetic_dataset.py --out /tmp/s --split train --num-videos 200 --seed 7

Each split goes to OUT/<split>/ (annotations.json + JPEGImages/); a video split is a YouTube-VIS
JSON, img_train a COCO JSON. The registered `synthetic_*` datasets read ROOT/v1/<split> with ROOT =
cfg.DATASETS.SYNTHETIC_ROOT; to pre-build them, run with the default sizes and --out ROOT/v1.
"""

import argparse
import os
import sys
import time

from vis_zoo.data.datasets.synthetic import (
    SYNTHETIC_IMAGE_SPLITS,
    SYNTHETIC_SPLITS,
    generate_synthetic_images,
    generate_synthetic_vis,
)


def parse_args(argv=None):
    splits = sorted(SYNTHETIC_SPLITS) + sorted(SYNTHETIC_IMAGE_SPLITS)
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="output directory; each split goes to OUT/<split>")
    p.add_argument("--split", default="all", choices=splits + ["all"])
    p.add_argument("--seed", type=int, default=None, help="default: the registered split's seed")
    p.add_argument(
        "--num-videos",
        type=int,
        default=None,
        help="videos (or images for img_train); default: the registered split's size",
    )
    p.add_argument("--min-length", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--mask-format", choices=["rle", "compressed_rle", "polygon"], default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing split directory")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    splits = (
        (sorted(SYNTHETIC_SPLITS) + sorted(SYNTHETIC_IMAGE_SPLITS))
        if args.split == "all"
        else [args.split]
    )
    for split in splits:
        out_dir = os.path.join(args.out, split)
        start = time.perf_counter()
        if split in SYNTHETIC_SPLITS:
            kwargs = dict(SYNTHETIC_SPLITS[split])
            for key, value in (
                ("seed", args.seed),
                ("num_videos", args.num_videos),
                ("min_length", args.min_length),
                ("max_length", args.max_length),
                ("mask_format", args.mask_format),
            ):
                if value is not None:
                    kwargs[key] = value
            path = generate_synthetic_vis(
                out_dir, height=args.height, width=args.width, overwrite=args.overwrite, **kwargs
            )
        else:
            kwargs = dict(SYNTHETIC_IMAGE_SPLITS[split])
            for key, value in (
                ("seed", args.seed),
                ("num_images", args.num_videos),
                ("mask_format", args.mask_format),
            ):
                if value is not None:
                    kwargs[key] = value
            path = generate_synthetic_images(
                out_dir, height=args.height, width=args.width, overwrite=args.overwrite, **kwargs
            )
        print(f"{split}: wrote {path} in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
