"""The mirror tool rewrites only the checksums that differ, keeping comments."""

from pathlib import Path

import yaml
from helpers import md5

from jaxpipe.tools.mirror import apply_mirror

ROOT = Path(__file__).parents[1]


def test_overrides_differing_checksums_only(fake_mirror: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    changes = apply_mirror(params, fake_mirror)
    data = yaml.safe_load(params.read_text())
    files = data["download"]["mnist"]["files"]
    assert files["test_labels"]["md5"] == md5(fake_mirror / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert ("mnist", "test_labels") in changes
    assert "size" not in data["download"]["mobile_price"]["files"]["train"]
    assert "# Every value the pipeline uses" in params.read_text()
    assert apply_mirror(params, fake_mirror) == {}  # idempotent
