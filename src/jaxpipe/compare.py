"""``jaxpipe exp``: experiments side by side in a terminal's width.

One row per experiment of a baseline commit (the current one, or those asked for) and one
for the baseline itself: its name, the params it changed against the baseline, and the
headline metrics of each model whose metrics differ in any row; a table per baseline.
``dvc exp show`` gives one column per param and metric of every file (thousands of columns
here); this reads the same data (``dvc exp show --json``) and prints only what differs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jaxpipe.core.errors import JaxpipeError

PARAMS_FILE = "params.yaml"
LOCAL_FILE = "params.local.yaml"  # overrides: a local mirror's checksums (jaxpipe-mirror)
SHORT = {"accuracy": "acc", "log_loss": "loss", "roc_auc": "auc", "rmse": "rmse", "r2": "r2"}
NAME_WIDTH = 18


@dataclass
class Row:
    """One experiment (or the baseline): its params, flattened, and metrics per model."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def _row(name: str, data: Mapping[str, Any] | None) -> Row:
    data = data or {}
    params = ((data.get("params") or {}).get(PARAMS_FILE) or {}).get("data") or {}
    metrics = {}
    for path, entry in (data.get("metrics") or {}).items():
        values = (entry or {}).get("data")
        if isinstance(values, Mapping) and path.startswith("metrics/") and path.count("/") == 1:
            metrics[path.removeprefix("metrics/").removesuffix(".json")] = dict(values)
    return Row(name, dict(_flatten(params)), metrics)


def groups_from_json(text: str) -> list[tuple[Row, list[Row]]]:
    """Each baseline commit of ``dvc exp show --json`` (the workspace left out) and its
    experiments: the first commit always, the others when they have experiments."""
    try:
        commits = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JaxpipeError(f"dvc exp show --json: not JSON ({exc.msg})") from None
    groups = []
    for base in (c for c in commits if c.get("rev") != "workspace"):
        experiments = [_row(rev.get("name") or exp.get("name") or str(rev["rev"])[:7],
                            rev.get("data"))
                       for exp in base.get("experiments") or [] for rev in exp.get("revs") or []]
        if experiments or not groups:
            groups.append((_row(base.get("name") or str(base["rev"])[:7], base.get("data")),
                           experiments))
    if not groups:
        raise JaxpipeError("no commit to compare with: commit params.yaml and dvc.lock first")
    return groups


def rows_from_json(text: str) -> tuple[Row, list[Row]]:
    """The (first) baseline and its experiments from ``dvc exp show --json``."""
    return groups_from_json(text)[0]


def baselines_from_list(text: str) -> dict[str, int]:
    """How many experiments each baseline has, from ``dvc exp list --all-commits``: a line
    ``<baseline>:`` (a branch, tag or short commit), then an indented line per experiment."""
    counts: dict[str, int] = {}
    baseline = None
    for line in text.splitlines():
        if line.strip() and not line[0].isspace() and line.rstrip().endswith(":"):
            baseline = line.rstrip()[:-1]
            counts[baseline] = 0
        elif line.strip() and baseline is not None:
            counts[baseline] += 1
    return counts


def local_params_note(text: str) -> str | None:
    """One line when experiments ran with other ``params.local.yaml`` overrides than their
    baseline commit's (a mirror's checksums, written by jaxpipe-mirror): dvc exp show lists
    them as changed params, though they only say which data files were verified."""
    def local(data: Mapping[str, Any] | None) -> Any:
        return (((data or {}).get("params") or {}).get(LOCAL_FILE) or {}).get("data") or {}

    commits = [c for c in json.loads(text) if c.get("rev") != "workspace"]
    differ = sum(local(rev.get("data")) != local(base.get("data"))
                 for base in commits for exp in base.get("experiments") or []
                 for rev in exp.get("revs") or [])
    if not differ:
        return None
    return (f"{differ} experiment(s) ran with other {LOCAL_FILE} overrides than their "
            "baseline commit (a mirror's checksums, from jaxpipe-mirror): they name the data "
            "files verified, not a change to the experiment; `dvc exp show` lists them as "
            f"{LOCAL_FILE}:download... columns (`--drop '{LOCAL_FILE}:'` hides them)")


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _changed_params(row: Row, baseline: Row) -> list[str]:
    keys = sorted(set(row.params) | set(baseline.params))
    return [f"{key}={_number(row.params.get(key))}" for key in keys
            if row.params.get(key) != baseline.params.get(key)]


def _metrics_text(values: Mapping[str, float]) -> str:
    return " ".join(f"{SHORT[k]} {_number(v)}" for k, v in values.items() if k in SHORT) or "-"


def render(baseline: Row, experiments: list[Row], width: int = 120) -> list[str]:
    """The table's lines, each at most ``width`` characters: a column per model whose
    metrics changed in some experiment (acc: accuracy, loss: log loss, auc: ROC AUC)."""
    models = sorted({m for row in experiments for m in row.metrics
                     if row.metrics.get(m) != baseline.metrics.get(m)})
    if not baseline.metrics and models:
        raise JaxpipeError(f"the baseline {baseline.name} has no metrics: commit dvc.lock after "
                           "`dvc repro` (docs/experiments.md), then run the experiments")
    table = [("experiment", ["changed params", *models])]
    for row, is_base in [(baseline, True), *[(r, False) for r in experiments]]:
        params = "(baseline)" if is_base else ", ".join(_changed_params(row, baseline)) or "-"
        table.append((row.name, [params] + [_metrics_text(row.metrics.get(m, {}))
                                            for m in models]))
    widths = [max(len(parts[i]) for _, parts in table) for i in range(len(models) + 1)]
    if NAME_WIDTH + 1 + sum(widths) + 2 * len(models) <= width:  # aligned columns
        return [_wrap(name, [p.ljust(w) for p, w in zip(parts, widths, strict=True)],
                      width)[0].rstrip() for name, parts in table]
    lines = []  # too wide for columns: each row goes on, indented, with the models named
    for name, parts in table[1:]:
        lines += _wrap(name, [parts[0], *(f"{m}: {t}" for m, t in zip(models, parts[1:],
                                                                       strict=True))], width)
    return lines


def _wrap(name: str, parts: list[str], width: int) -> list[str]:
    """``name`` then ``parts`` joined by two spaces, continued on indented lines."""
    indent = " " * (NAME_WIDTH + 1)
    label = name if len(name) <= NAME_WIDTH else name[:NAME_WIDTH - 1] + "~"
    lines, line, used = [], f"{label:<{NAME_WIDTH}} ", False
    for part in parts:
        if used and len(line) + 2 + len(part) > width:
            lines.append(line.rstrip())
            line, used = indent, False
        if used:
            line += "  "
        room = width - len(line)
        line += part if len(part) <= room else part[:room - 1] + "~"
        used = True
    return [*lines, line.rstrip()]
