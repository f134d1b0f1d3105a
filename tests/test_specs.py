"""``jaxpipe.data.specs``: what params may say about a download: every range check of
DownloadConfig and FileSpec names its key and its rule, and holds at its boundary."""

import pytest

from jaxpipe.core.config import parse
from jaxpipe.core.errors import ConfigError
from jaxpipe.data.specs import DownloadConfig, FileSpec

MD5 = "0123456789abcdef0123456789abcdef"
FILES = {"train": {"name": "train.csv", "md5": MD5}}


def cfg(**changes) -> DownloadConfig:
    data = {"mirror_folder": "m", "files": FILES, "urls": ["http://127.0.0.1/"], **changes}
    return parse(DownloadConfig, data, "download.d")


@pytest.mark.parametrize(("changes", "message"), [
    ({"files": {}}, "files: at least one file is required"),
    ({"urls": []}, "urls: give either urls (HTTP mirrors) or kaggle_dataset, not both or "
                   "neither"),
    ({"kaggle_dataset": "o/d"}, "urls: give either urls"),
    ({"timeout_s": 0.0}, "timeout_s: must be positive"),
    ({"timeout_s": -1.0}, "timeout_s: must be positive"),
    ({"timeout_s": 10.0, "deadline_s": 9.99}, "deadline_s: must be at least timeout_s"),
    ({"max_mb": 0.0}, "max_mb: must be in (0, 100000]"),
    ({"max_mb": 100_000.5}, "max_mb: must be in (0, 100000]"),
])
def test_each_download_check_names_its_key_and_rule(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        cfg(**changes)
    assert str(err.value).startswith(f"download.d.{message}")


def test_the_download_checks_hold_at_their_boundaries() -> None:
    edge = cfg(timeout_s=1e-9, deadline_s=1e-9, max_mb=100_000.0)
    assert (edge.timeout_s, edge.deadline_s, edge.max_mb) == (1e-9, 1e-9, 100_000.0)
    assert cfg(urls=[], kaggle_dataset="o/d").kaggle_dataset == "o/d"
    assert cfg(max_mb=1e-6).max_mb == 1e-6
    default = cfg()
    assert (default.timeout_s, default.deadline_s, default.max_mb) == (60.0, 900.0, 200.0)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/abs"])
def test_a_file_name_must_be_a_plain_name(name: str) -> None:
    with pytest.raises(ValueError, match="name: .* must be a plain file name"):
        FileSpec(name=name, md5=MD5)


@pytest.mark.parametrize("md5", [MD5.upper(), MD5[:-1], MD5 + "0", "g" * 32, "X" * 32])
def test_an_md5_must_be_32_lowercase_hex_digits(md5: str) -> None:
    with pytest.raises(ValueError, match="md5: .* is not a 32-digit lowercase hex MD5"):
        FileSpec(name="a", md5=md5)
    assert FileSpec(name="..a", md5=MD5).name == "..a"


def test_filespec_rejects_bad_md5() -> None:
    with pytest.raises(ValueError, match="md5"):
        FileSpec(name="x", md5="nothex")
