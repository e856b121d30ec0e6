"""Shared fixtures of the Python module's tests: where the reference data (../shared) and the CLI
are, the real models loaded once, and a private FACEMAG_HOME so that no test reads or writes the
user's. A test needing a file of ../shared that is absent is skipped, naming the file."""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

import facemag

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("FACEMAG_SHARED_DIR", REPO.parent / "shared"))
GOLDEN = SHARED / "golden"
CLI = pathlib.Path(os.environ.get("FACEMAG_CLI", REPO / "build" / "facemag"))
MTCNN = SHARED / "weights" / "mtcnn"
MOBILEFACENET = SHARED / "weights" / "mobilefacenet" / "068.ckpt"


def need(*paths):
    """Skips the calling test, naming the first of `paths` that does not exist."""
    for p in paths:
        if not pathlib.Path(p).exists():
            pytest.skip(f"reference data absent: {p}")


def golden_json(relative):
    need(GOLDEN / relative)
    return json.loads((GOLDEN / relative).read_text())


def golden_npy(relative):
    need(GOLDEN / relative)
    return np.load(GOLDEN / relative)


@pytest.fixture(autouse=True, scope="session")
def private_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("facemag_home")
    old = os.environ.get("FACEMAG_HOME")
    os.environ["FACEMAG_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("FACEMAG_HOME", None)
    else:
        os.environ["FACEMAG_HOME"] = old


@pytest.fixture(scope="session")
def detector():
    need(MTCNN / "onet.pt")
    return facemag.Detector(mtcnn_dir=MTCNN)


@pytest.fixture(scope="session")
def mobilefacenet():
    need(MOBILEFACENET)
    return facemag.Embedder(arch="mobilefacenet", weights=MOBILEFACENET)


@pytest.fixture(scope="session")
def cli():
    """Runs the `facemag` program built beside the module; returns (stdout, stderr)."""
    if not CLI.exists():
        pytest.skip(f"the CLI is not built: {CLI}")

    def run(*args, check=True):
        r = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"facemag {' '.join(map(str, args))}: exit {r.returncode}\n{r.stderr}")
        return r.stdout, r.stderr

    return run


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]
