"""The examples run and print what their docstrings say to expect."""
import re
import subprocess
import sys

import pytest

from conftest import MOBILEFACENET, MTCNN, REPO, SHARED, need

CASIA = SHARED / "data" / "faces-casia"


def run_example(name, *args):
    need(MOBILEFACENET, MTCNN / "onet.pt", CASIA / "pam" / "001.jpg")
    model = ["--arch", "mobilefacenet", "--weights", str(MOBILEFACENET), "--mtcnn", str(MTCNN)]
    r = subprocess.run([sys.executable, str(REPO / "examples" / name), *map(str, args), *model],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_compare_two_photos():
    out = run_example("compare_two_photos.py", CASIA / "bruce" / "001.jpg", CASIA / "bruce" / "002.jpg")
    assert out.count("quality (magnitude)") == 2
    assert re.search(r"similarity 0\.\d+ at threshold 0\.\d+: same", out), out


def test_group_by_person(tmp_path):
    heatmap = tmp_path / "heatmap.png"
    try:
        import matplotlib  # noqa: F401
        extra = ["--heatmap", heatmap]
    except ImportError:
        extra = []
    out = run_example("group_by_person.py", CASIA, *extra)
    assert "46 faces in 45 photos" in out and "13 group(s)" in out
    sizes = sorted((int(n) for n in re.findall(r"group \d+: (\d+) face", out)), reverse=True)
    assert sizes[:3] == [12, 11, 10], out
    if extra:
        assert heatmap.stat().st_size > 0


def test_gallery_search():
    out = run_example("gallery_search.py", CASIA, CASIA / "pam" / "001.jpg")
    assert "enrolled 45 face(s)" in out
    assert re.search(r"face 0 of .*pam/001\.jpg: match pam .*best face 1\.00", out), out
