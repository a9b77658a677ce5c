#!/usr/bin/env bash
# Build the wheels a Python 3.12 machine with a newer PyTorch needs to run vis_zoo and its tests,
# for a machine without a package index that already has torch, torchvision, numpy (2.x), OpenCV,
# scipy and matplotlib (with their own dependencies: Pillow, packaging, ...).
#
# Usage: scripts/build_gpu_wheels.sh [OUT_DIR]     (default: gpu_wheels/, ignored by git)
#   PYTHON=...      the interpreter whose pip downloads and builds (default: .venv/bin/python);
#                   this machine needs the package index, the target machine does not
#   PY_VERSION=...  the target Python (default: 3.12)
#
# OUT_DIR gets, for that Python on x86_64 Linux:
# - detectron2-0.7.2-py3-none-any.whl: sal-detectron2 0.7.2 repacked without its compiled
#   extension detectron2._C (scripts/make_pure_detectron2_wheel.py), which only imports with torch
#   2.3; every model of the zoo builds, trains and infers without it;
# - what detectron2, vis_zoo and the test suite import beyond the preinstalled packages: fvcore,
#   iopath, yacs, pycocotools, omegaconf (+ antlr4 runtime, PyYAML), termcolor, tabulate,
#   cloudpickle, tqdm, portalocker, tensorboard (+ protobuf, absl-py: detectron2's trainer writes
#   tensorboard events), pytest (+ pluggy, iniconfig, Pygments).
# The versions are those of requirements.txt where it pins them, else the ones tested on both
# stacks. Install them there without resolving dependencies (their optional ones, e.g.
# tensorboard's server, are left out on purpose), then the project:
#   python -m pip install --no-index --no-deps OUT_DIR/*.whl
#   python -m pip install --no-index --no-deps --no-build-isolation -e .
# The script ends by printing each wheel's size and the total, and fails above 48 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_wheels}
PY=${PYTHON:-.venv/bin/python}
PY_VERSION=${PY_VERSION:-3.12}
ABI=cp${PY_VERSION/./}
LIMIT_MIB=48

# Pure-Python packages; fvcore, iopath and antlr4-python3-runtime exist only as source
# distributions, which `pip wheel` builds into py3-none-any wheels.
PURE=(
  fvcore==0.1.5.post20221221
  iopath==0.1.10
  yacs==0.1.8
  omegaconf==2.3.1
  antlr4-python3-runtime==4.9.3
  termcolor==3.3.0
  tabulate==0.10.0
  cloudpickle==3.1.3
  tqdm==4.70.1
  portalocker==4.4.2
  tensorboard==2.21.0
  absl-py==2.5.1
  pytest==9.2.0
  pluggy==1.7.0
  iniconfig==2.3.1
  Pygments==2.21.0
)
# Compiled packages: downloaded as the target Python's manylinux wheels (abi3 where they have one).
BINARY=(
  pycocotools==2.0.11
  PyYAML==6.0.4
  protobuf==7.36.2
)

mkdir -p "$OUT"
if compgen -G "$OUT/*.whl" >/dev/null; then
  echo "ERROR: $OUT already holds wheels; give an empty or new folder." >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$PY" -m pip download -q --no-deps sal-detectron2==0.7.2 -d "$tmp"
"$PY" scripts/make_pure_detectron2_wheel.py "$tmp"/sal_detectron2-0.7.2-*.whl "$OUT" >/dev/null

"$PY" -m pip wheel -q --no-deps -w "$OUT" "${PURE[@]}"

"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$OUT" \
  --python-version "$PY_VERSION" --implementation cp --abi "$ABI" --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 "${BINARY[@]}"

# Every wheel must install on the target: pure Python, or built for its Python.
bad=0
for wheel in "$OUT"/*.whl; do
  case "$(basename "$wheel")" in
    *-py3-none-any.whl | *-py2.py3-none-any.whl | *-"$ABI"-*.whl | *-abi3-*.whl) ;;
    *) echo "ERROR: $wheel is not for Python $PY_VERSION" >&2; bad=1 ;;
  esac
done
[ "$bad" = 0 ] || exit 1

"$PY" - "$OUT" "$LIMIT_MIB" <<'EOF'
import os
import sys

folder, limit = sys.argv[1], float(sys.argv[2])
wheels = sorted(n for n in os.listdir(folder) if n.endswith(".whl"))
total = 0
for name in wheels:
    size = os.path.getsize(os.path.join(folder, name))
    total += size
    print(f"{size / 2**20:7.2f} MiB  {name}")
print(f"{total / 2**20:7.2f} MiB  total, {len(wheels)} wheels in {folder}")
if total > limit * 2**20:
    sys.exit(f"ERROR: more than {limit:g} MiB")
EOF
