import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).parent))

from helpers import write_fake_mirror  # noqa: E402

from jaxpipe.tools.workspace import dvc, make_workspace  # noqa: E402

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
SMALL = ROOT / "profiles" / "small.yaml"


@pytest.fixture(scope="session")
def fake_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small local mirror in the official layout (shared, read-only by convention)."""
    return write_fake_mirror(tmp_path_factory.mktemp("mirror"))


@pytest.fixture(scope="session")
def mirror(fake_mirror: Path) -> Path:
    """The real data in ../shared/datasets when present, else the small fake mirror."""
    return SHARED if SHARED.is_dir() else fake_mirror


@dataclass
class Pipeline:
    """A temporary copy of the repo as committed, after one full `dvc repro` on the small
    profile."""

    root: Path
    mirror: Path
    first_output: str


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory, mirror: Path,
             worker_id: str) -> Pipeline:
    """Built once per test run: the first pytest-xdist worker to get here runs `dvc repro`
    in a shared folder while the others wait, then each worker takes its own copy (tests
    change their worker's copy: experiments, remotes, edited modules)."""
    def build(ws: Path) -> str:
        make_workspace(ROOT, ws, mirror=mirror, profile=SMALL, rev="HEAD")
        return dvc(ws, "repro", mirror=mirror).stdout

    if worker_id == "master":  # no xdist (-n 0)
        ws = tmp_path_factory.mktemp("pipeline") / "ws"
        return Pipeline(ws, mirror, build(ws))
    shared = tmp_path_factory.getbasetemp().parent / "pipeline"
    with FileLock(f"{shared}.lock"):
        if not (shared / "repro.out").is_file():
            shutil.rmtree(shared, ignore_errors=True)  # a worker that died midway
            (shared / "repro.out").write_text(build(shared / "ws"))
    ws = tmp_path_factory.mktemp("pipeline") / "ws"
    shutil.copytree(shared / "ws", ws, symlinks=True)
    return Pipeline(ws, mirror, (shared / "repro.out").read_text())
