"""Repack a detectron2 wheel as a pure-Python wheel, without the compiled extension.

    python scripts/make_pure_detectron2_wheel.py SOURCE_WHEEL OUT_DIR

SOURCE_WHEEL is a binary detectron2 wheel, e.g. sal-detectron2 0.7.2 (cp310, with
`detectron2/_C.cpython-310-*.so`). The result, OUT_DIR/detectron2-<version>-py3-none-any.whl,
holds the `detectron2` package without `detectron2/_C*` (that extension only imports with the
torch it was built for) and without the wheel's top-level `tools` package (detectron2's example
scripts, which would otherwise be installed as a package named `tools`). It installs on any Python
3 and torch; the code paths that need `_C` (deformable convolution, detectron2's own fast COCO
evaluation, the environment report) catch its absence. The dependency list is the original one
without its `numpy<2` pin and without the packages only optional features use (tensorboard,
black), plus fvcore and iopath, which the original does not declare. Prints the wheel's path.
"""

import base64
import hashlib
import io
import os
import re
import sys
import zipfile

PACKAGE = "detectron2"
NAME = "detectron2"
REQUIRES = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "omegaconf>=2.1,<2.4",
    "hydra-core>=1.1",
    "packaging",
    "fvcore",
    "iopath",
]


def _keep(name: str) -> bool:
    if not name.startswith(PACKAGE + "/"):
        return False
    base = name[len(PACKAGE) + 1 :]
    return not (base.startswith("_C.") or base.startswith("_C/") or base == "_C")


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def repack(source: str, out_dir: str) -> str:
    with zipfile.ZipFile(source) as src:
        metadata_name = next(n for n in src.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = src.read(metadata_name).decode()
        match = re.search(r"^Version: (\S+)$", metadata, re.M)
        if match is None:
            raise SystemExit(f"{source}: no Version in {metadata_name}")
        version = match.group(1)
        files = [(n, src.read(n)) for n in src.namelist() if _keep(n) and not n.endswith("/")]
    if not any(n == f"{PACKAGE}/__init__.py" for n, _ in files):
        raise SystemExit(f"{source}: no {PACKAGE}/__init__.py; is it a detectron2 wheel?")

    dist_info = f"{NAME}-{version}.dist-info"
    new_metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            f"Name: {NAME}",
            f"Version: {version}",
            "Summary: detectron2's Python code without its compiled extension (detectron2._C)",
            "License: Apache-2.0",
            "Requires-Python: >=3.8",
            *[f"Requires-Dist: {r}" for r in REQUIRES],
            "",
        ]
    )
    wheel = "\n".join(
        [
            "Wheel-Version: 1.0",
            "Generator: make_pure_detectron2_wheel",
            "Root-Is-Purelib: true",
            "Tag: py3-none-any",
            "",
        ]
    )
    files += [
        (f"{dist_info}/METADATA", new_metadata.encode()),
        (f"{dist_info}/WHEEL", wheel.encode()),
        (f"{dist_info}/top_level.txt", f"{PACKAGE}\n".encode()),
    ]
    record = [_record_line(n, d) for n, d in files] + [f"{dist_info}/RECORD,,"]
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))

    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, f"{NAME}-{version}-py3-none-any.whl")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data in files:
            # a fixed date: the same source gives the same bytes
            info = zipfile.ZipInfo(name, date_time=(2024, 4, 17, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, data)
    with open(target, "wb") as f:
        f.write(buffer.getvalue())
    return target


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(repack(sys.argv[1], sys.argv[2]))


if __name__ == "__main__":
    main()
