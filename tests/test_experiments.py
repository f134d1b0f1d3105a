"""`dvc exp run -S` writes values as YAML 1.2 (`1e-05`, `null`, lists); the stages read them
back as the same values, as DVC itself does."""

import json
from collections.abc import Iterator

import pytest

from jaxpipe.tools.workspace import dvc

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
    linreg = metrics["metrics/linreg_sgd.json"]["data"]
    assert abs(linreg["coef_0"] - 2.5) < 0.1 and abs(linreg["coef_1"] - 4.5) < 0.1
    assert dvc(ws, "status", "--json").stdout.strip() in ("{}", "")  # the workspace is as it was
