import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import write_fake_mirror  # noqa: E402


@pytest.fixture(scope="session")
def fake_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small local mirror in the official layout (shared, read-only by convention)."""
    return write_fake_mirror(tmp_path_factory.mktemp("mirror"))
