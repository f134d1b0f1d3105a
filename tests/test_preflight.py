"""``jaxpipe.preflight`` (``jaxpipe check``): a bad params value, schema or mirror file is
found without running a stage; the mirror is checked with the local overrides."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from helpers import committed_tree, md5, write_fake_mirror
from test_hostile import set_param

from jaxpipe.core.config import read_yaml_file
from jaxpipe.preflight import check_mirror, check_params, preflight, stage_items, stage_names
from jaxpipe.tools.mirror import write_local
from jaxpipe.tools.workspace import committed_copy

ROOT = Path(__file__).parents[1]


def project(tmp_path: Path) -> Path:
    committed_copy(ROOT, tmp_path, "params.yaml", "dvc.yaml", "environment.yaml", "schemas")
    write_local(tmp_path / "params.local.yaml", {})  # as committed
    return tmp_path


def run_check(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "JAXPIPE_MIRROR"}
    return subprocess.run([sys.executable, "-m", "jaxpipe.cli", "check", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_the_project_as_committed_passes(tmp_path: Path) -> None:
    started = time.perf_counter()
    root = project(tmp_path)
    proc = run_check(root)
    assert proc.returncode == 0, proc.stderr
    entries = sum(len(v) for v in stage_items(root / "dvc.yaml").values())
    stages = len(stage_names(root / "dvc.yaml"))
    assert f"ok: {stages} stages of dvc.yaml: the params of the {entries} that take params" \
        in proc.stderr
    assert time.perf_counter() - started < 60  # generous on a loaded CI machine; ~3 s quiet


def test_every_bad_value_is_listed_in_one_run(tmp_path: Path) -> None:
    root = project(tmp_path)
    set_param(root / "params.yaml", "train.xor_mlp.hidden", 0)
    set_param(root / "params.yaml", "prepare.linear.test_size", 1.5)
    set_param(root / "params.yaml", "download.mnist.timeout_s", -1)
    (root / "schemas" / "xor.yaml").write_text("columns:\n  y: {type: integer}\n")
    problems, _ = preflight(root / "params.yaml", root / "params.local.yaml",
                            root / "dvc.yaml", None)
    joined = "\n".join(problems)
    assert "train.xor_mlp.hidden: 0 is outside [1, 4_096]" in joined
    assert "prepare.linear.test_size: must be in [0, 1)" in joined
    assert "download.mnist.timeout_s: must be positive" in joined
    assert "xor.yaml.columns.y.type: 'integer' is not one of ['int', 'float']" in joined
    proc = run_check(root)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: 4 problem(s) found; nothing was run"


def test_a_missing_entry_for_a_stage_is_named(tmp_path: Path) -> None:
    root = project(tmp_path)
    text = (root / "params.yaml").read_text().replace("  xor_mlp:", "  xor_mlq:", 1)
    (root / "params.yaml").write_text(text)
    problems, _ = preflight(root / "params.yaml", None, root / "dvc.yaml", None)
    assert any("train: missing key 'xor_mlp' (dvc.yaml has a stage for it)" in p
               for p in problems)


def test_the_mirror_is_verified_and_the_fix_named(tmp_path: Path, fake_mirror: Path) -> None:
    root = project(tmp_path)
    proc = run_check(root, "--mirror", str(fake_mirror))
    assert proc.returncode == 2
    assert "checksum mismatch" in proc.stderr and f"jaxpipe-mirror {fake_mirror}" in proc.stderr
    subprocess.run([sys.executable, "-m", "jaxpipe.tools.mirror", str(fake_mirror)], cwd=root,
                   check=True, capture_output=True)
    proc = run_check(root, "--mirror", str(fake_mirror))
    assert proc.returncode == 0, proc.stderr
    assert "5 mirror file(s) verified" in proc.stderr
    outside = tmp_path / "secret.gz"
    outside.write_bytes((fake_mirror / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert md5(outside)  # same bytes, so only confinement can refuse it
    evil = tmp_path / "evil"
    shutil.copytree(fake_mirror, evil)
    (evil / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    (evil / "mnist" / "t10k-labels-idx1-ubyte.gz").symlink_to(outside)
    proc = run_check(root, "--mirror", str(evil))
    assert proc.returncode == 2 and "is not a regular file inside the mirror" in proc.stderr


def test_preflight_names_a_params_file_it_cannot_read(tmp_path: Path) -> None:
    items = stage_items(committed_tree() / "dvc.yaml")
    assert check_params(tmp_path / "none.yaml", None, items) == [
        f"{tmp_path / 'none.yaml'}: params file not found"]


def test_preflight_names_the_file_and_key_of_a_bad_prepare_value(tmp_path: Path) -> None:
    root = project(tmp_path)  # params.yaml and dvc.yaml as committed, read together
    path = root / "params.yaml"
    path.write_text(path.read_text().replace("    test_size: 0.2\n    seed: 42\n",
                                             "    test_size: 3\n    seed: 42\n", 1))
    problems = check_params(path, None, stage_items(root / "dvc.yaml"))
    assert problems == [f"{path}:prepare.mobile_binary.test_size: must be in [0, 1)"]


def test_preflight_verifies_each_mirror_file_and_names_a_bad_one(tmp_path: Path) -> None:
    mirror = write_fake_mirror(tmp_path / "mirror")
    local = tmp_path / "local.yaml"
    from jaxpipe.tools.mirror import apply_mirror

    apply_mirror(committed_tree() / "params.yaml", mirror, local)
    problems, verified = check_mirror(committed_tree() / "params.yaml", local, mirror)
    assert problems == [] and verified == 5  # one CSV, four MNIST files
    (mirror / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the file")
    problems, verified = check_mirror(committed_tree() / "params.yaml", local, mirror)
    assert verified == 4 and len(problems) == 2
    assert problems[0].startswith("download.mnist.files.test_labels: ")
    assert "jaxpipe-mirror" in problems[1]


def test_preflight_checks_the_mirror_with_the_local_overrides(tmp_path: Path) -> None:
    from jaxpipe.preflight import preflight
    from jaxpipe.tools.mirror import apply_mirror

    mirror = write_fake_mirror(tmp_path / "mirror")
    params, spec = committed_tree() / "params.yaml", committed_tree() / "dvc.yaml"
    local = tmp_path / "local.yaml"
    apply_mirror(params, mirror, local)
    problems, summary = preflight(params, local, spec, mirror)
    assert problems == []
    entries = sum(len(v) for v in stage_items(spec).values())
    stages = len(stage_names(spec))
    without = sorted(set(read_yaml_file(spec)["stages"]) - set(stage_items(
        spec)))  # the stages that take no params (plots_page), named
    assert without and stages == entries + len(without)
    assert summary == (f"{stages} stages of dvc.yaml: the params of the {entries} that take "
                       f"params (not {', '.join(without)}), the software of all {stages} as "
                       f"recorded, 5 mirror file(s) verified in {mirror}")
    problems, _ = preflight(params, None, spec, mirror)
    assert problems and "jaxpipe-mirror" in problems[-1]  # official checksums: a mismatch
