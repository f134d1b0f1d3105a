"""`dvc exp run -S` writes values as YAML 1.2 (`1e-05`, `null`, lists); the stages read them
back as the same values, as DVC itself does."""

import json
from collections.abc import Iterator

import dvc.api as dvc_api
import pytest

from jaxpipe.tools.workspace import dvc, git

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
    assert dvc(ws, "status", "--json").stdout.strip() in ("{}", "")  # the workspace is as it was


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
        changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        assert changed == ["-    lr: 0.1", "+    lr: 0.2"], changed
    finally:
        (ws / "params.yaml").write_text(before)
        (ws / "dvc.lock").write_text(lock)
        dvc(ws, "checkout", "--force")
    assert json.loads(dvc(ws, "status", "--json").stdout or "{}") == {}
