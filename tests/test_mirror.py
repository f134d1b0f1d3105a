"""The mirror tool writes a mirror's differing checksums to the local overrides file, which
the download stages merge over params.yaml; params.yaml stays as committed."""

from pathlib import Path

import pytest
import yaml
from helpers import md5

from jaxpipe.core.config import load_layered
from jaxpipe.core.errors import ConfigError
from jaxpipe.data.specs import DownloadConfig
from jaxpipe.tools.mirror import apply_mirror, main, write_local
from jaxpipe.tools.workspace import git

ROOT = Path(__file__).parents[1]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repo holding the project's params.yaml and its empty params.local.yaml."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    write_local(tmp_path / "params.local.yaml", {})  # as committed (this checkout's may not be)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "start")
    return tmp_path


def test_overrides_differing_checksums_only(fake_mirror: Path, repo: Path) -> None:
    before = (repo / "params.yaml").read_text()
    changes = apply_mirror(repo / "params.yaml", fake_mirror, repo / "params.local.yaml")
    assert (repo / "params.yaml").read_text() == before
    local = yaml.safe_load((repo / "params.local.yaml").read_text())
    files = local["download"]["mnist"]["files"]
    assert files["test_labels"]["md5"] == md5(fake_mirror / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert ("mnist", "test_labels") in changes
    cfg = load_layered(DownloadConfig, repo / "params.yaml", repo / "params.local.yaml",
                       "download", "mobile_price")
    assert cfg.files["train"].size is None  # the mirror's file differs: its size is unknown
    assert cfg.files["train"].md5 == md5(fake_mirror / "mobile-price" / "train.csv")
    assert cfg.kaggle_dataset  # everything else still comes from params.yaml
    assert "# Local overrides of params.yaml" in (repo / "params.local.yaml").read_text()
    assert git(repo, "status", "--porcelain").split() == ["M", "params.local.yaml"]
    assert apply_mirror(repo / "params.yaml", fake_mirror, repo / "params.local.yaml") == changes


def test_reset_restores_the_committed_file(fake_mirror: Path, repo: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    committed = (repo / "params.local.yaml").read_text()
    monkeypatch.chdir(repo)
    main([str(fake_mirror)])
    assert (repo / "params.local.yaml").read_text() != committed
    main(["--reset"])
    assert (repo / "params.local.yaml").read_text() == committed
    assert git(repo, "status", "--porcelain") == ""


def test_a_malformed_local_file_names_itself(repo: Path) -> None:
    (repo / "params.local.yaml").write_text("download:\n  mnist: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"params.local.yaml:download.mnist: expected a map"):
        load_layered(DownloadConfig, repo / "params.yaml", repo / "params.local.yaml",
                     "download", "mnist")
