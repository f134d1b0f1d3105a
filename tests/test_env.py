"""The software each stage runs on is an input: environment.yaml records it per stage, dvc.lock
carries it, a stage refuses to run on other versions, and an upgrade re-runs exactly the
stages whose code imports the upgraded package (jaxpipe.core.environment, jaxpipe.analysis.env).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import committed_tree, edit_yaml, fake_release

from jaxpipe.analysis.deps import dvc_stages
from jaxpipe.analysis.env import declared_problems, project_envs, record, report
from jaxpipe.core import environment
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import atomic_path
from jaxpipe.tools.workspace import changed, committed_copy, dvc, git, ran_stages

ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def no_backend_left_pending() -> Iterator[None]:
    """A guarded stage's pending backend check must not outlive its test."""
    yield
    environment._pending_backend = None


def envs() -> dict:
    return {e.stage: e for e in project_envs(committed_tree())}


def test_each_stage_records_the_packages_its_code_imports() -> None:
    found = envs()
    head = committed_tree()
    stages = [stage for path in (head / "dvc.yaml", *head.glob("*/dvc.yaml"))  # checks/ too
              for stage in yaml.safe_load(path.read_text())["stages"].values()]
    assert len(found) == sum(len(s.get("foreach", [None])) for s in stages)
    for name, env in found.items():
        assert "python" in env.facts
        if name.startswith("download@"):
            assert "jax" not in env.packages and "numpy" not in env.packages
            assert env.facts == ("python",)
        if name.startswith("prepare@"):
            assert "pandera" in env.packages
        if "jax" in env.packages:
            assert {"jaxlib", "ml-dtypes"} <= set(env.packages)  # where JAX computes
            assert env.facts == ("python", "machine", "jax_backend")
    assert {"jax", "jaxlib", "flax", "optax", "numpy"} <= set(found["train@cnn_mnist"].packages)
    assert "flax" not in found["train@logreg_mobile"].packages  # its family only


def test_the_committed_record_matches_the_code_and_this_installation() -> None:
    head = committed_tree()
    assert declared_problems(head) == []
    lines, differ = report(head)
    assert differ == 0, "\n".join(lines)
    stages = len(dvc_stages(head))
    assert lines == [f"{stages} stages: all as recorded in environment.yaml (-v: each stage's "
                     "software)"]


def test_each_stage_declares_its_own_entry_so_the_lock_carries_it() -> None:
    for stage in dvc_stages(committed_tree()):  # as DVC expands dvc.yaml
        key = ".".join(environment.entry_key(stage.name))
        assert stage.params[environment.FILE] == (key,), stage.name


def project(dest: Path) -> Path:
    committed_copy(ROOT, dest, "src", "stages", ".dvc", "dvc.yaml", "params.yaml",
                   environment.FILE)
    git(dest, "init", "-q")
    return dest


def test_deps_names_a_package_the_record_misses_and_a_missing_declaration(tmp_path: Path
                                                                         ) -> None:
    root = project(tmp_path)
    record_file = root / environment.FILE
    data = yaml.safe_load(record_file.read_text())
    del data["train"]["cnn_mnist"]["packages"]["optax"]
    data["download"]["mnist"]["packages"]["flax"] = "0.12.8"
    record_file.write_text(yaml.safe_dump(data))
    edit_yaml(root / "dvc.yaml", lambda spec: spec["stages"]["plots_page"].pop("params"))
    assert declared_problems(root) == [
        "download@mnist: records flax, which its code does not import in "
        "environment.yaml:download.mnist",
        "train@cnn_mnist: imports optax, not recorded in environment.yaml:train.cnn_mnist",
        "plots_page: declares no params dep environment.yaml: [plots_page]",
    ]


def test_record_changes_exactly_the_stages_that_import_the_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path / "p")
    assert record(root) == []  # as committed
    before = (root / environment.FILE).read_text()
    monkeypatch.syspath_prepend(str(fake_release(tmp_path / "alt", "pandera", "99.0")))
    importers = [name for name, env in envs().items() if "pandera" in env.packages]
    assert importers and record(root) == importers
    after = yaml.safe_load((root / environment.FILE).read_text())
    assert after["prepare"]["xor"]["packages"]["pandera"] == "99.0"
    assert "'99.0'" in (root / environment.FILE).read_text()  # a string, never a float
    monkeypatch.undo()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "alt" not in p])
    assert record(root) == importers and (root / environment.FILE).read_text() == before


def write_entry(root: Path, stage: str, entry: dict) -> None:
    *sections, last = environment.entry_key(stage)
    data: dict = {}
    node = data
    for part in sections:
        node = node.setdefault(part, {})
    node[last] = entry
    (root / environment.FILE).write_text(yaml.safe_dump(data))


def installed_entry(*packages: str, **facts: str) -> dict:
    return {"python": environment.python_version(), **facts,
            "packages": {p: environment.installed(p) for p in packages}}


def test_a_stage_under_dvc_refuses_other_versions_than_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "prepare@xor")
    write_entry(tmp_path, "prepare@xor", installed_entry("pandera", "numpy"))
    environment.guard_stage()  # as recorded: runs
    entry = installed_entry("pandera", "numpy")
    entry["packages"]["pandera"] = "0.1.0"
    write_entry(tmp_path, "prepare@xor", entry)
    installed = environment.installed("pandera")
    with pytest.raises(JaxpipeError) as caught:
        environment.guard_stage()
    assert str(caught.value) == (
        f"prepare@xor: pandera {installed} is installed, the record says 0.1.0 "
        "(environment.yaml:prepare.xor): run `jaxpipe env --record` to record the installed "
        "environment, then `dvc repro`")
    entry = installed_entry("numpy", machine="sparc64")
    entry["packages"]["no-such-dist"] = "1.0"
    write_entry(tmp_path, "prepare@xor", entry)
    with pytest.raises(JaxpipeError, match=r"machine is \S+ here, the record says sparc64 "
                                           r"\(environment.yaml:prepare.xor\) and 1 more: run"):
        environment.guard_stage()
    monkeypatch.setenv("DVC_STAGE", "sub/dvc.yaml:train@new_model")
    with pytest.raises(JaxpipeError, match=r"^sub/dvc.yaml:train@new_model: "
                       r"environment.yaml:train.new_model is missing: record this stage's"):
        environment.guard_stage()


@pytest.mark.parametrize("recorded", ["2.4.5", "2.4.7", "2.3.6", "3.4.6", "2.4.60", "2.4",
                                      "2.4.6.post1"])
def test_a_record_one_patch_release_apart_is_refused_like_any_other(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: str) -> None:
    """Versions are compared whole: numpy 2.4.6 installed, 2.4.5 recorded, refuses as a
    minor version apart does (a prefix or a shorter version is another version too)."""
    monkeypatch.syspath_prepend(str(fake_release(tmp_path / "site", "numpy", "2.4.6")))
    assert environment.installed("numpy") == "2.4.6"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "prepare@xor")
    write_entry(tmp_path, "prepare@xor", {"packages": {"numpy": "2.4.6"}})
    environment.guard_stage()  # the same release: runs
    write_entry(tmp_path, "prepare@xor", {"packages": {"numpy": recorded}})
    with pytest.raises(JaxpipeError, match=rf"^prepare@xor: numpy 2\.4\.6 is installed, the "
                                           rf"record says {re.escape(recorded)} \("):
        environment.guard_stage()


def test_a_record_of_another_python_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The python fact, like the packages, compared whole: on 3.11, 3.10 and 3.12 refuse,
    and so do 3.1 (a prefix), 3 and 3.11.7."""
    here = environment.python_version()
    major, minor = here.split(".")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "prepare@xor")
    write_entry(tmp_path, "prepare@xor", {"python": here})
    environment.guard_stage()
    for recorded in (f"{major}.{int(minor) - 1}", f"{major}.{int(minor) + 1}", here[:-1],
                     major, f"{here}.7"):
        write_entry(tmp_path, "prepare@xor", {"python": recorded})
        with pytest.raises(JaxpipeError, match=rf"^prepare@xor: python is {here} here, the "
                                               rf"record says {re.escape(recorded)} \("):
            environment.guard_stage()


def test_outside_dvc_nothing_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.chdir(tmp_path)  # no environment.yaml here
    environment.guard_stage()


def test_another_jax_backend_writes_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    import jax

    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "train@m")
    write_entry(tmp_path, "train@m", installed_entry("jax", jax_backend="tpu"))
    environment.guard_stage()  # the backend is only known once JAX has started
    out = tmp_path / "model.bin"
    with pytest.raises(JaxpipeError, match=rf"^train@m: jax_backend is {jax.default_backend()} "
                                           r"here, the record says tpu \(environment.yaml\)"):
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"weights")
    assert not out.exists() and list(tmp_path.glob(".model.bin*")) == []
    environment._pending_backend = None
    write_entry(tmp_path, "train@m", installed_entry("jax", jax_backend=jax.default_backend()))
    environment.guard_stage()
    with atomic_path(out) as tmp:
        tmp.write_bytes(b"weights")
    assert out.read_bytes() == b"weights"


def test_env_command_prints_each_stage_and_fails_on_a_difference(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    from jaxpipe.cli import main

    root = project(tmp_path / "p")
    stages = [stage.name for stage in dvc_stages(root)]
    main(["env", "--root", str(root)])  # one line
    assert capsys.readouterr().out.splitlines() == [
        f"{len(stages)} stages: all as recorded in environment.yaml (-v: each stage's software)"]
    main(["env", "-v", "--root", str(root)])  # and the details
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{len(stages)} stages: all as recorded in environment.yaml"
    assert [line.split(":")[0] for line in out[1::3]] == stages
    assert "train@cnn_mnist: as recorded" in out
    at = out.index("train@cnn_mnist: as recorded")
    assert out[at + 1] == (f"    python {environment.python_version()}, machine "
                           f"{environment.machine()}, jax_backend cpu")
    assert f"jax {environment.installed('jax')}" in out[at + 2]
    monkeypatch.syspath_prepend(str(fake_release(tmp_path / "alt", "optax", "9.9.9")))
    with pytest.raises(JaxpipeError, match=r"^\d+ stage\(s\) would run on another environment"):
        main(["env", "--root", str(root)])
    out = capsys.readouterr().out.splitlines()
    entries = environment.read_entries(root / environment.FILE)
    optax = environment.entry_of(entries, "train@cnn_mnist")["packages"]["optax"]
    importers = [s for s in stages if "optax" in environment.entry_of(entries, s)["packages"]]
    assert "train@cnn_mnist" in importers and "train@logreg_mobile" not in importers
    named = ", ".join(importers[:5]) + (f" and {len(importers) - 5} more"
                                        if len(importers) > 5 else "")
    assert out[0] == (f"{len(stages)} stages: {len(stages) - len(importers)} as recorded in "
                      f"environment.yaml, {len(importers)} differ: {named} (-v: each stage's "
                      "software)")
    assert out[1:] == [f"{s}: DIFFERS: optax 9.9.9 is installed, the record says {optax}"
                       for s in importers]  # only the stages that differ, and how


@pytest.mark.e2e
def test_an_upgrade_reruns_exactly_its_importers_and_going_back_restores_the_lock(
        pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's 'done when': another version ahead on PYTHONPATH, `jaxpipe env --record`,
    `dvc repro` re-runs exactly the stages whose code imports it; with the original back,
    the lock returns to the original versions."""
    ws = pipeline.root
    lock = (ws / "dvc.lock").read_text()
    alt = fake_release(tmp_path / "alt", "pandera", "99.0")
    importers = {name for name, env in envs().items() if "pandera" in env.packages}
    jaxpipe = str(Path(sys.executable).parent / "jaxpipe")
    try:
        monkeypatch.setenv("PYTHONPATH", str(alt))
        refused = dvc(ws, "repro", "--force", "--single-item", "prepare@xor", check=False,
                      mirror=pipeline.mirror)
        assert refused.returncode != 0
        assert ("error: prepare@xor: pandera 99.0 is installed, the record says "
                in refused.stdout + refused.stderr)
        dvc(ws, "checkout")
        subprocess.run([jaxpipe, "env", "--record"], cwd=ws, check=True, timeout=300)
        ran = dvc(ws, "repro", mirror=pipeline.mirror).stdout
        assert set(ran_stages(ran)) == importers
        assert "pandera: '99.0'" in (ws / "dvc.lock").read_text()
    finally:
        monkeypatch.delenv("PYTHONPATH")
        subprocess.run([jaxpipe, "env", "--record"], cwd=ws, check=True, timeout=300)
        dvc(ws, "repro", mirror=pipeline.mirror)
    assert (ws / "dvc.lock").read_text() == lock
    assert changed(dvc(ws, "status", "--json").stdout) == {}
