import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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
    """A temporary copy of the repo after one full `dvc repro` on the small profile."""

    root: Path
    mirror: Path
    first_output: str


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Pipeline:
    ws = make_workspace(ROOT, tmp_path_factory.mktemp("pipeline"), mirror=mirror, profile=SMALL)
    first = dvc(ws, "repro", mirror=mirror)
    return Pipeline(ws, mirror, first.stdout)
