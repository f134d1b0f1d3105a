"""The reproducibility checker itself: it passes a deterministic project and names the
outputs of a nondeterministic one (a tiny DVC project, no JAX, so it runs fast)."""

from pathlib import Path

import pytest

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.tools.repro import check, format_report
from jaxpipe.tools.workspace import RunConfig, dvc, git

DVC_YAML = """
stages:
  train:
    foreach: [a, b]
    do:
      cmd: python make.py ${item}
      deps: [make.py]
      params:
        - train.${item}
      outs:
        - out_${item}.txt
  evaluate:
    foreach: [a, b]
    do:
      cmd: python -c "import shutil; shutil.copy('out_${item}.txt', 'eval_${item}.txt')"
      deps:
        - out_${item}.txt
      outs:
        - eval_${item}.txt
"""
MAKE = """
import os, sys, yaml
item = sys.argv[1]
lr = yaml.safe_load(open("params.yaml"))["train"][item]["lr"]
noise = os.urandom(8).hex() if {noisy} == "random" and item == "b" else ""
noise += str(len(os.sched_getaffinity(0))) if {noisy} == "cores" and item == "b" else ""
open(f"out_{{item}}.txt", "w").write(f"{{lr}} {{noise}}")
"""


def tiny_project(root: Path, noisy: str) -> Path:
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text("train:\n  a: {lr: 0.1}\n  b: {lr: 0.1}\n")
    (root / "make.py").write_text(MAKE.format(noisy=repr(noisy)))
    git(root, "init", "-q")
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "tiny")
    return root


@pytest.mark.e2e
def test_deterministic_project_passes(tmp_path: Path) -> None:
    steps = check(tiny_project(tmp_path, noisy=""), None, "a", "lr", 0.5, [RunConfig(cores=1)])
    assert all(s.ok for s in steps), format_report(steps)
    assert "all checks passed" in format_report(steps)


@pytest.mark.e2e
def test_nondeterministic_output_is_named(tmp_path: Path) -> None:
    steps = check(tiny_project(tmp_path, noisy="random"), None, "a", "lr", 0.5)
    forced = next(s for s in steps if "--force" in s.name)
    assert not forced.ok
    assert {p.split(":")[0] for p in forced.problems} == {"out_b.txt", "eval_b.txt"}
    assert "FAILED: repro --force is bitwise identical" in format_report(steps)
    assert steps[-1].ok  # changing train.a.lr re-ran exactly train@a and evaluate@a


@pytest.mark.e2e
def test_output_that_depends_on_the_core_count_is_named(tmp_path: Path) -> None:
    steps = check(tiny_project(tmp_path, noisy="cores"), None, "a", "lr", 0.5,
                  [RunConfig(cores=1)])
    forced, cross = steps[2], steps[3]
    assert forced.ok  # same machine, same core count: identical
    assert cross.name == "repro --force under cores=1 is bitwise identical" and not cross.ok
    assert {p.split(":")[0] for p in cross.problems} == {"out_b.txt", "eval_b.txt"}


def test_run_configs_parse_and_refuse_what_this_machine_cannot_do() -> None:
    assert RunConfig.parse("cores=1,isa=AVX") == RunConfig(cores=1, isa="AVX")
    assert str(RunConfig(cores=1, isa="AVX")) == "cores=1,isa=AVX"
    assert RunConfig(isa="AVX2").env({"XLA_FLAGS": "--a"})["XLA_FLAGS"] == (
        "--a --xla_cpu_max_isa=AVX2")
    with pytest.raises(JaxpipeError, match="cores=1000"):
        RunConfig.parse("cores=1000")
    with pytest.raises(JaxpipeError, match="isa=AVX9"):
        RunConfig.parse("isa=AVX9")
