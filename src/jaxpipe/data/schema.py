"""Declared input schemas: every column of a raw table, its type, range or classes.

A schema file (``schemas/<dataset>.yaml``, its path given in dvc.yaml) lists each column:

    columns:
      battery_power: {type: int, min: 0}
      clock_speed: {type: float, min: 0, max: 10}
      price_range: {type: int, values: [0, 1, 2, 3]}
      'x\\d+': {type: float, pattern: true}     # a regular expression for many columns

It becomes a strict ``pandera`` schema: a missing, extra or duplicated column, a cell that is
not a finite number, not an integer, out of range or not among the declared values, fails
with one line that names the file, the column and the first bad row (1-based, data rows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from ruamel.yaml.error import YAMLError

from jaxpipe.core.config import check, parse, read_yaml, yaml_problem
from jaxpipe.core.errors import JaxpipeError


@dataclass(frozen=True)
class ColumnSpec:
    """One declared column (or, with ``pattern``, every column whose name matches)."""

    type: Literal["int", "float"] = "float"
    min: float | None = None
    max: float | None = None
    values: list[float] | None = None
    pattern: bool = False

    def __post_init__(self) -> None:
        check(self.min is None or self.max is None or self.min <= self.max, "min",
              "must not exceed max")
        check(self.values is None or len(self.values) > 0, "values", "must not be empty")


@dataclass(frozen=True)
class SchemaSpec:
    """A schema file: its columns, and for images the shape of one image."""

    columns: dict[str, ColumnSpec] = field(default_factory=dict)
    image_shape: list[int] | None = None

    def __post_init__(self) -> None:
        check(bool(self.columns), "columns", "declare at least one column")


def load_schema(path: str | Path) -> SchemaSpec:
    """Read and check a schema file (YAML 1.2, errors naming the key)."""
    try:
        raw = read_yaml(Path(path).read_text())
    except FileNotFoundError:
        raise JaxpipeError(f"{path}: schema file not found") from None
    except YAMLError as exc:
        raise JaxpipeError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    return parse(SchemaSpec, raw, str(path))


def _numeric(test: Callable[[pd.Series], pd.Series]) -> Callable[[pd.Series], pd.Series]:
    """A check on a column's values as numbers (a cell that is not a number is NaN)."""
    return lambda s: test(pd.to_numeric(s, errors="coerce"))


def _checks(spec: ColumnSpec) -> list[pa.Check]:
    checks = [pa.Check(_numeric(lambda v: v.notna()), error="is not a number"),
              pa.Check(_numeric(lambda v: np.isfinite(v)), error="is not finite")]
    if spec.type == "int":
        checks.append(pa.Check(_numeric(lambda v: v == np.floor(v)), error="is not an integer"))
    if spec.min is not None:
        checks.append(pa.Check(_numeric(lambda v: v >= spec.min),
                               error=f"is below the minimum {spec.min:g}"))
    if spec.max is not None:
        checks.append(pa.Check(_numeric(lambda v: v <= spec.max),
                               error=f"is above the maximum {spec.max:g}"))
    if spec.values is not None:
        allowed = sorted(spec.values)
        shown = [int(v) if float(v).is_integer() else v for v in allowed]
        checks.append(pa.Check(_numeric(lambda v: v.isin(allowed)),
                               error=f"is not one of {shown}"))
    return checks


def to_pandera(spec: SchemaSpec) -> pa.DataFrameSchema:
    """The strict pandera schema a ``SchemaSpec`` declares."""
    return pa.DataFrameSchema(
        {name: pa.Column(checks=_checks(col), nullable=False, regex=col.pattern)
         for name, col in spec.columns.items()}, strict=True)


def validate(frame: pd.DataFrame, spec: SchemaSpec, source: str) -> None:
    """Check ``frame`` against ``spec``; one line naming ``source``, column and row if not."""
    duplicated = frame.columns[frame.columns.duplicated()]
    if len(duplicated):
        raise JaxpipeError(f"{source}: column '{duplicated[0]}' appears more than once")
    if frame.empty and len(frame.columns):  # a header alone: its columns read as text
        raise JaxpipeError(f"{source}: no data rows (a header only)")
    try:  # rows by position: a table read with an index of its own still names data rows
        to_pandera(spec).validate(frame.reset_index(drop=True), lazy=True)
    except SchemaErrors as exc:
        raise JaxpipeError(f"{source}: {_first_failure(exc.failure_cases, list(frame.columns))}"
                           ) from None


def _first_failure(cases: pd.DataFrame, columns: list[str]) -> str:
    """The first failure in reading order: missing or extra columns, then the leftmost
    failing column's first bad row."""
    table_level = cases[cases["column"].isna()]
    for check_name, say in (("column_in_dataframe", "missing column '{}'"),
                            ("column_in_schema", "column '{}' is not in the schema")):
        hits = table_level[table_level["check"] == check_name]
        if len(hits):
            return say.format(hits["failure_case"].iloc[0])
    cells = cases[cases["column"].notna()].copy()
    if cells.empty:  # a failure pandera reports at another level: say it as it is
        return str(cases.iloc[0]["check"])
    cells["order"] = cells["column"].map({c: i for i, c in enumerate(columns)})
    cells["row"] = pd.to_numeric(cells["index"])
    first = cells.sort_values(["order", "row", "check_number"], kind="stable").iloc[0]
    shown = _show(first["failure_case"])
    what = "the value is missing" if shown == "missing" else f"{shown} {first['check']}"
    return f"column '{first['column']}', row {int(first['row']) + 1}: {what}"


def _show(value: object) -> str:
    """A cell as a person reads it: ``inf``, ``1.5``, ``'abc'``, ``missing``."""
    if isinstance(value, str):
        return repr(value)
    number = float(value) if isinstance(value, int | float | np.number) else None
    if number is None:
        return repr(value)
    return "missing" if np.isnan(number) else f"{number:g}"
