"""An upgrade is never silent: dvc.yaml's first stage (``always_changed``, so every ``dvc repro``
runs it) refuses in one line while an installed version differs from environment.yaml
(jaxpipe.core.environment.check_all, stages/check_environment.py). The per-stage guard and
``jaxpipe env`` are tested in test_env.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import committed, fake_release

from jaxpipe.core import environment
from jaxpipe.core.environment import CHECK_STAGE, check_all, recorded_entries
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.tools.workspace import changed, dvc, git, make_workspace, ran_stages

ROOT = Path(__file__).parents[1]
SCRIPT = "stages/check_environment.py"
CHECKS = "checks/dvc.yaml"  # its own dvc.yaml, so the lock DVC rewrites on each run is small


def committed_record() -> dict:
    return yaml.safe_load(committed(environment.FILE))


def recording(dist: str) -> list[str]:
    """The stages whose committed entry records ``dist``, in the file's order."""
    return [stage for stage, entry in recorded_entries(committed_record()).items()
            if dist in (entry.get("packages") or {})]


def write(path: Path, tree: dict) -> Path:
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def test_every_entry_is_found_by_its_stage_name() -> None:
    found = recorded_entries(committed_record())
    assert {"plots_page", CHECK_STAGE, "train@cnn_mnist", "download@mnist"} <= set(found)
    assert all("python" in entry for entry in found.values())


def test_the_committed_record_is_this_installation(tmp_path: Path) -> None:
    assert check_all(write(tmp_path / "e.yaml", committed_record())) is None


def test_one_patch_release_apart_names_the_package_and_the_stages_that_record_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = committed_record()
    numpy = recorded_entries(record)["train@cnn_mnist"]["packages"]["numpy"]
    major, minor, patch = numpy.split(".")
    bumped = f"{major}.{minor}.{int(patch) + 1}"
    monkeypatch.syspath_prepend(str(fake_release(tmp_path / "alt", "numpy", bumped)))
    stages = recording("numpy")
    assert len(stages) > 3
    assert check_all(write(tmp_path / "e.yaml", record)) == (
        f"numpy {bumped} is installed, the record says {numpy} (environment.yaml: "
        f"{', '.join(stages[:3])} and {len(stages) - 3} more): run `jaxpipe env --record` to "
        "record the installed environment, then `dvc repro` re-runs the stages it changes")


def test_another_python_and_a_missing_package_each_count(tmp_path: Path) -> None:
    record = {"a": {"python": "3.1", "packages": {"no-such-dist": "1.0"}},
              "b": {"c": {"python": environment.python_version(), "machine": "aarch64"}}}
    line = check_all(write(tmp_path / "e.yaml", record))
    assert line is not None and line.startswith(
        f"python is {environment.python_version()} here, the record says 3.1 "
        "(environment.yaml: a) and 2 more: run `jaxpipe env --record`")


@pytest.mark.parametrize("text", ["", "[a, b]\n", "a: [\n"])
def test_a_record_that_names_no_stage_is_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(text)
    with pytest.raises(JaxpipeError, match=r"^.*e\.yaml: (no stage recorded|not valid YAML)"):
        check_all(path)


def test_the_check_loads_neither_jax_nor_numpy_nor_pyarrow(tmp_path: Path) -> None:
    """Every `dvc repro` pays for it (a no-op repro must stay fast: issue 32)."""
    out = tmp_path / "environment.ok"
    proc = subprocess.run([sys.executable, "-X", "importtime", SCRIPT, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    committed = subprocess.run(["git", "show", "HEAD:checks/environment.ok"], cwd=ROOT,
                               check=True, capture_output=True, text=True).stdout
    assert out.read_text() == committed == "installed as environment.yaml records\n"
    loaded = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "ruamel.yaml" in loaded and not loaded & {"jax", "numpy", "pyarrow", "pandas"}


def test_the_check_is_upstream_of_every_stage_and_the_only_one_always_changed(
        tmp_path: Path) -> None:
    """As DVC itself reads the committed project: every stage of every dvc.yaml runs after
    the check, so any `dvc repro` (plain or of a target) runs it first."""
    from dvc.repo import Repo
    from networkx import descendants  # DVC's edges point from a stage to what it needs

    ws = make_workspace(ROOT, tmp_path / "ws", rev="HEAD")
    with Repo(str(ws)) as repo:
        stages, graph = list(repo.index.stages), repo.index.graph
        always = [s for s in stages if s.always_changed]
        assert [s.name for s in always] == [CHECK_STAGE]
        assert always[0].cmd.startswith(f"python {SCRIPT} ")
        assert len(stages) > 20 and [s.name for s in stages if s not in always
                                     and always[0] not in descendants(graph, s)] == []


def test_plain_dvc_repro_after_an_upgrade_refuses_in_one_line_before_any_stage(
        tmp_path: Path) -> None:
    """The real dvc in a copy of the committed project. As installed, the check passes and
    writes nothing, and dvc status names it "always changed"; then, another pandera ahead on
    the path of the stages' Python, plain `dvc repro` runs it again (a check that passed is
    not skipped) and stops there, naming the command that records the upgrade."""
    ws = make_workspace(ROOT, tmp_path / "ws", rev="HEAD")
    check = f"{CHECKS}:{CHECK_STAGE}"
    ok = dvc(ws, "repro", "--single-item", check)
    assert f"Running stage '{check}'" in ok.stdout and ran_stages(ok.stdout) == []
    status = dvc(ws, "status", "--json").stdout
    assert yaml.safe_load(status)[check] == ["always changed"]
    assert check not in changed(status) and "train@cnn_mnist" in changed(status)
    seen = git(ws, "status", "--porcelain", "checks")  # checks/dvc.lock, unless committed
    assert "environment.ok" not in seen

    pandera = recorded_entries(committed_record())["prepare@xor"]["packages"]["pandera"]
    alt = fake_release(tmp_path / "alt", "pandera", "99.0")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(alt), str(ws / "src")])}
    proc = subprocess.run(["dvc", "repro"], cwd=ws, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    started = [line for line in proc.stdout.splitlines() if line.startswith("Running stage")]
    assert started == [f"Running stage '{check}':"]  # first, and nothing after it
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    stages = recording("pandera")
    assert errors == [f"error: {CHECK_STAGE}: pandera 99.0 is installed, the record says "
                      f"{pandera} (environment.yaml: {', '.join(stages[:3])} and "
                      f"{len(stages) - 3} more): run `jaxpipe env --record` to record the "
                      "installed environment, then `dvc repro` re-runs the stages it changes"]
    assert not (ws / "data").exists()
    # its output stays as committed (persist), so git sees nothing of a refusal
    assert git(ws, "status", "--porcelain", "checks") == seen


def test_ci_reports_the_stages_an_upgrade_would_rerun(tmp_path: Path) -> None:
    """.ci/steps.sh report opens with `jaxpipe env`: each stage that records the upgraded
    package is named (the rest of the report needs a pipeline's outputs: not here)."""
    ws = make_workspace(ROOT, tmp_path / "ws", rev="HEAD")
    alt = fake_release(tmp_path / "alt", "pandera", "99.0")
    summary = tmp_path / "summary.md"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(alt), str(ws / "src")]),
           "JAXPIPE_WORKSPACE": str(ws), "GITHUB_STEP_SUMMARY": str(summary),
           "REPORT_DIR": str(tmp_path / "report")}
    subprocess.run(["bash", str(ws / ".ci" / "steps.sh"), "report", "HEAD"], env=env,
                   capture_output=True, check=False)
    software = summary.read_text().split("## Metrics")[0]
    stages = recording("pandera")
    assert software.startswith("## Software against `environment.yaml`")
    assert f"{len(stages)} differ: {', '.join(stages[:5])}" in software
    assert [line.split(":")[0] for line in software.splitlines() if "DIFFERS" in line] == stages
