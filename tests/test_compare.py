"""`jaxpipe exp` (jaxpipe.compare): experiments side by side in a terminal's width."""

from __future__ import annotations

import json

import pytest

from jaxpipe.compare import render, rows_from_json
from jaxpipe.core.errors import JaxpipeError


def commit(name: str, lr: float, l2: float, metrics: dict[str, dict]) -> dict:
    return {"rev": name, "name": name, "data": {
        "params": {"params.yaml": {"data": {"train": {"m": {"lr": lr, "l2": l2}}}},
                   "environment.yaml": {"data": {"train": {"m": {"python": "3.11"}}}}},
        "metrics": {f"metrics/{k}.json": {"data": v} for k, v in metrics.items()}
                   | {"metrics/details/m.json": {"data": {"rows": 3}}}}}


def show_json(base_metrics: dict | None = None) -> str:
    same = {"acc_model": {"accuracy": 0.5}}
    base = commit("main", 0.1, 0.1, base_metrics if base_metrics is not None else
                  {"m": {"accuracy": 0.905, "log_loss": 0.3671, "roc_auc": 0.97}, **same})
    exps = [commit(f"lr-{lr}", lr, 0.1, {"m": {"accuracy": acc, "log_loss": 0.35,
                                               "roc_auc": 0.98}, **same})
            for lr, acc in ((0.2, 0.915), (0.05, 0.885))]
    exps.append(commit("a-very-long-experiment-name", 0.1, 0.01,
                       {"m": {"accuracy": 0.9, "log_loss": 0.3, "roc_auc": 0.97}, **same}))
    base["experiments"] = [{"name": e["name"], "revs": [e]} for e in exps]
    return json.dumps([{"rev": "workspace", "name": None, "data": base["data"]}, base])


def test_one_row_per_experiment_with_what_it_changed() -> None:
    lines = render(*rows_from_json(show_json()), width=120)
    assert lines == [
        "experiment         changed params   m",
        "main               (baseline)       acc 0.905 loss 0.3671 auc 0.97",
        "lr-0.2             train.m.lr=0.2   acc 0.915 loss 0.35 auc 0.98",
        "lr-0.05            train.m.lr=0.05  acc 0.885 loss 0.35 auc 0.98",
        "a-very-long-exper~ train.m.l2=0.01  acc 0.9 loss 0.3 auc 0.97"]


def test_a_narrow_terminal_gets_indented_continuations() -> None:
    lines = render(*rows_from_json(show_json()), width=40)
    assert all(len(line) <= 40 for line in lines)
    assert lines[:2] == ["main               (baseline)",
                         "                   m: acc 0.905 loss 0.~"]


def test_a_baseline_without_metrics_says_to_commit_the_lock() -> None:
    with pytest.raises(JaxpipeError, match=r"^the baseline main has no metrics: commit "
                                           r"dvc.lock after `dvc repro`"):
        render(*rows_from_json(show_json(base_metrics={})))


def test_bad_json_and_no_commit_are_one_line() -> None:
    with pytest.raises(JaxpipeError, match=r"dvc exp show --json: not JSON"):
        rows_from_json("oops")
    with pytest.raises(JaxpipeError, match=r"no commit to compare with"):
        rows_from_json(json.dumps([{"rev": "workspace", "data": {}}]))
