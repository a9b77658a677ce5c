"""scripts/make_pure_detectron2_wheel.py: a binary detectron2 wheel repacked without `_C`."""

import base64
import hashlib
import os
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "make_pure_detectron2_wheel.py")


def _fabricated_binary_wheel(path):
    """The layout of sal-detectron2's cp310 wheel, with placeholder contents."""
    files = {
        "detectron2/__init__.py": "__version__ = '0.7.2'\n",
        "detectron2/_C.cpython-310-x86_64-linux-gnu.so": "\x7fELF not really",
        "detectron2/layers/__init__.py": "",
        "detectron2/model_zoo/configs/Base-RCNN-FPN.yaml": "MODEL: {}\n",
        "tools/__init__.py": "",
        "tools/train_net.py": "print('example')\n",
        "sal_detectron2-0.7.2.dist-info/METADATA": (
            "Metadata-Version: 2.1\nName: sal-detectron2\nVersion: 0.7.2\nRequires-Dist: numpy<2\n"
        ),
        "sal_detectron2-0.7.2.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nTag: cp310-cp310-linux_x86_64\n"
        ),
        "sal_detectron2-0.7.2.dist-info/top_level.txt": "detectron2\ntools\n",
        "sal_detectron2-0.7.2.dist-info/RECORD": "",
    }
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)


def test_repacked_wheel_is_pure_python_without_the_extension(tmp_path):
    source = tmp_path / "sal_detectron2-0.7.2-cp310-none-any.whl"
    _fabricated_binary_wheel(source)
    out = tmp_path / "out"
    printed = subprocess.run(
        [sys.executable, SCRIPT, str(source), str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    target = out / "detectron2-0.7.2-py3-none-any.whl"
    assert printed == str(target)

    with zipfile.ZipFile(target) as z:
        names = set(z.namelist())
        assert {
            "detectron2/__init__.py",
            "detectron2/layers/__init__.py",
            "detectron2/model_zoo/configs/Base-RCNN-FPN.yaml",
        } <= names
        assert not any("_C." in n or n.startswith("tools/") or "sal_detectron2" in n for n in names)
        metadata = z.read("detectron2-0.7.2.dist-info/METADATA").decode()
        assert "Name: detectron2\n" in metadata and "Version: 0.7.2\n" in metadata
        assert "numpy" not in metadata and "Requires-Dist: fvcore" in metadata
        wheel = z.read("detectron2-0.7.2.dist-info/WHEEL").decode()
        assert "Root-Is-Purelib: true" in wheel and "Tag: py3-none-any" in wheel
        # RECORD lists every other file with its sha256 and size, as installers check
        record = z.read("detectron2-0.7.2.dist-info/RECORD").decode().splitlines()
        listed = {}
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            listed[name] = (digest, size)
        assert set(listed) == names
        for name in names - {"detectron2-0.7.2.dist-info/RECORD"}:
            data = z.read(name)
            expected = hashlib.sha256(data).digest()
            digest = "sha256=" + base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
            assert listed[name] == (digest, str(len(data)))

    # the same source gives the same bytes
    again = tmp_path / "again"
    subprocess.run([sys.executable, SCRIPT, str(source), str(again)], check=True)
    assert (again / target.name).read_bytes() == target.read_bytes()
