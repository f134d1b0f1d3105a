"""`dvc exp run -S` writes values as YAML 1.2 (`1e-05`, `null`, lists); the stages read them
back as the same values, as DVC itself does."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dvc.api as dvc_api
import pytest

from jaxpipe.tools.workspace import GIT_ENV, changed, dvc, git

pytestmark = pytest.mark.e2e


def _named(node: object, name: str) -> Iterator[dict]:
    if isinstance(node, dict):
        if node.get("name") == name and "data" in node:
            yield node["data"]
        for value in node.values():
            yield from _named(value, name)
    elif isinstance(node, list):
        for value in node:
            yield from _named(value, name)


def test_set_params_of_every_yaml_type_run(pipeline) -> None:
    ws = pipeline.root
    dvc(ws, "exp", "run", "--temp", "-n", "typed",
        "-S", "train.logreg_mobile.lr=1e-5",              # an exponent float (DVC writes 1e-05)
        "-S", "train.logreg_mobile.steps=50",             # an int
        "-S", "generate.linear.weights=[2.5,4.5]",        # a list
        "-S", "prepare.mobile_binary.columns_from=null",  # a null: every feature column
        mirror=pipeline.mirror)
    data = next(_named(json.loads(dvc(ws, "exp", "show", "--json").stdout), "typed"))
    params = data["params"]["params.yaml"]["data"]
    assert params["train"]["logreg_mobile"]["lr"] == 1e-5
    assert params["train"]["logreg_mobile"]["steps"] == 50
    assert params["generate"]["linear"]["weights"] == [2.5, 4.5]
    assert params["prepare"]["mobile_binary"]["columns_from"] is None
    metrics = data["metrics"]
    logreg = metrics["metrics/logreg_mobile.json"]["data"]
    baseline = json.loads((ws / "metrics/logreg_mobile.json").read_text())
    assert logreg["accuracy"] != baseline["accuracy"] or logreg["log_loss"] != baseline["log_loss"]
    assert metrics["metrics/linreg_sgd.json"]["data"]["r2"] > 0.99
    # the learned coefficients are details, not headline metrics: read them from the experiment
    linreg = json.loads(dvc_api.read("metrics/details/linreg_sgd.json", repo=str(ws), rev="typed"))
    assert abs(linreg["coef_0"] - 2.5) < 0.1 and abs(linreg["coef_1"] - 4.5) < 0.1
    assert changed(dvc(ws, "status", "--json").stdout) == {}  # the workspace is as it was


def _widest(text: str) -> int:
    return max(len(line.rstrip()) for line in text.splitlines())


def test_tables_fit_a_terminal(pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dvc metrics show`, and `dvc exp show --only-changed` for a two-run sweep of the SGD
    learning rate, fit in 120 columns: the headline figures share names across models and
    the per-model ones are in metrics/details/ (measured unbounded, COLUMNS=1000)."""
    ws = pipeline.root
    monkeypatch.setenv("COLUMNS", "1000")
    assert _widest(dvc(ws, "metrics", "show").stdout) <= 120
    dvc(ws, "exp", "remove", "--all-commits")  # only this sweep in the table
    git(ws, "add", "-A")  # the results as a commit: the baseline row the sweep is compared to
    git(ws, "commit", "-q", "-m", "results")
    try:
        for lr in ("0.005", "0.02"):
            dvc(ws, "exp", "run", "--temp", "-n", f"sgd-{lr}",
                "-S", f"train.linreg_sgd.lr={lr}", mirror=pipeline.mirror)
        table = dvc(ws, "exp", "show", "--only-changed", "--no-pager").stdout
        header = table.splitlines()[1].split()
        assert header == ["Experiment", "Created", "r2", "rmse", "train.linreg_sgd.lr",
                          "data/models/linreg_sgd.safetensors"]
        assert _widest(table) <= 120, table
    finally:
        dvc(ws, "exp", "remove", "--all-commits")
        git(ws, "reset", "-q", "--soft", "HEAD~1")  # the workspace's git as it was


def test_exp_run_set_changes_one_line_of_params_yaml(pipeline) -> None:
    """`dvc exp run -S` in the workspace rewrites params.yaml with DVC's writer: one line."""
    ws = pipeline.root
    before, lock = (ws / "params.yaml").read_text(), (ws / "dvc.lock").read_text()
    try:
        dvc(ws, "exp", "run", "-S", "train.logreg_mobile.lr=0.2", mirror=pipeline.mirror)
        diff = git(ws, "diff", "--unified=0", "--", "params.yaml").splitlines()
        edited = [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        assert edited == ["-    lr: 0.1", "+    lr: 0.2"], edited
    finally:
        (ws / "params.yaml").write_text(before)
        (ws / "dvc.lock").write_text(lock)
        dvc(ws, "checkout", "--force")
    assert changed(dvc(ws, "status", "--json").stdout) == {}


def _doc_block(doc: str, heading: str) -> list[str]:
    """The command lines of the first bash block under ``heading`` (a whole line) in ``doc``."""
    text = (Path(__file__).parents[1] / doc).read_text()
    section = text[text.index(f"\n{heading}\n"):]
    block = section[section.index("```bash\n") + 8:]
    return [line.split("#")[0].rstrip() for line in block[:block.index("```")].splitlines()]


def test_the_documented_experiments_run_in_order_without_leaking(pipeline, tmp_path: Path
                                                                  ) -> None:
    """docs/experiments.md's commands, as written, on a copy of the pipeline: its results
    committed as the page says first, then each experiment changes only its own param, the
    baseline row is filled, the comparison fits 120 columns, and params.yaml is touched only
    by `dvc exp apply`."""
    ws = tmp_path / "ws"
    shutil.copytree(pipeline.root, ws, symlinks=True)
    if git(ws, "ls-files", "dvc.lock").strip():  # a first run's results: not committed yet
        git(ws, "rm", "-q", "--cached", "dvc.lock")
        git(ws, "commit", "-q", "-m", "no results committed yet")
    params = (ws / "params.yaml").read_text()
    keep = _doc_block("docs/experiments.md", "## Keep the results first")
    lines = _doc_block("docs/experiments.md", "## Run experiments")
    # wait for the queue; grep -c reads all of `dvc queue status` (grep -q exits at its first
    # match, so dvc may die of SIGPIPE, and under pipefail that ended the wait early)
    script = "\n".join(lines).replace(
        "dvc queue start && dvc queue status",
        "dvc queue start && for i in $(seq 600); do "
        "[ \"$(dvc queue status | grep -cE 'Queued|Running')\" = 0 ] && break; "
        "sleep 1; done; dvc queue status")
    env = {**os.environ, **GIT_ENV, "JAXPIPE_MIRROR": str(pipeline.mirror), "COLUMNS": "120",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ws / "src")}
    subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(keep)], cwd=ws, env=env,
                   check=True, capture_output=True, timeout=60)
    assert git(ws, "status", "--porcelain", "dvc.lock") == ""  # the lock is committed
    apply = next(i for i, line in enumerate(script.splitlines()) if "dvc exp apply" in line)
    before, after = script.splitlines()[:apply], script.splitlines()[apply:]
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(before)], cwd=ws,
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (ws / "params.yaml").read_text() == params  # --temp and --queue leave it be
    assert "experiment         changed params" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    table = proc.stdout[proc.stdout.index("experiment         changed params"):].splitlines()
    assert all(len(line) <= 120 for line in table), table
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == {"main", "l2-0.01", "lr-0.05", "lr-0.2"}, table
    assert "(baseline)" in rows["main"] and "acc " in rows["main"]  # filled, not '!'
    assert " train.logreg_mobile.l2=0.01 " in rows["l2-0.01"]
    for lr in ("0.05", "0.2"):
        changed = rows[f"lr-{lr}"].split()[1]
        assert changed == f"train.logreg_mobile.lr={lr}", rows  # the l2 run did not leak
    assert "No file hash info found" not in proc.stderr
    subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(after)], cwd=ws, env=env,
                   check=True, capture_output=True, timeout=300)
    assert "    lr: 0.2\n" in (ws / "params.yaml").read_text()
