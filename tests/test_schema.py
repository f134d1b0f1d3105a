"""Declared schemas, checked in-process: the exact line each bad table gives (file, column,
1-based row, what is wrong), the bounds themselves accepted, and a strict column set."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import mobile_frame

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.schema import ColumnSpec, SchemaSpec, load_schema, validate

ROOT = Path(__file__).parents[1]
MOBILE = load_schema(ROOT / "schemas" / "mobile_price.yaml")
SMALL = SchemaSpec({"a": ColumnSpec("float", min=-1.0, max=2.5),
                    "b": ColumnSpec("int", min=0, max=9),
                    "y": ColumnSpec("float", values=[1, 0.5, 0])})


def _small(**cells: list) -> pd.DataFrame:
    frame = {"a": [0.0, 1.0, 2.0], "b": [0, 5, 9], "y": [0.0, 0.5, 1.0]}
    return pd.DataFrame({**frame, **cells})


def _failure(frame: pd.DataFrame, spec: SchemaSpec = SMALL) -> str:
    with pytest.raises(JaxpipeError) as err:
        validate(frame, spec, "in.csv")
    return str(err.value)


def test_values_on_the_bounds_pass() -> None:
    validate(_small(a=[-1.0, 2.5, 0.0], b=[0, 9, 9], y=[0.0, 0.5, 1.0]), SMALL, "in.csv")
    validate(mobile_frame(50), MOBILE, "in.csv")


CASES = {
    "above the maximum": (_small(a=[0.0, 2.5000001, 0.0]),
                          "in.csv: column 'a', row 2: 2.5 is above the maximum 2.5"),
    "below the minimum": (_small(b=[0, -1, 3]),
                          "in.csv: column 'b', row 2: -1 is below the minimum 0"),
    "not an integer": (_small(b=[0, 1, 2.5]),
                       "in.csv: column 'b', row 3: 2.5 is not an integer"),
    "not a number": (_small(b=["0", "x", "1"]),
                     "in.csv: column 'b', row 2: 'x' is not a number"),
    "not finite": (_small(a=[0.0, 1.0, np.inf]), "in.csv: column 'a', row 3: inf is not finite"),
    "missing": (_small(a=[0.0, np.nan, 1.0]), "in.csv: column 'a', row 2: the value is missing"),
    # declared values are shown sorted, integers without a decimal point, others as they are
    "not allowed": (_small(y=[0.0, 0.25, 1.0]),
                    "in.csv: column 'y', row 2: 0.25 is not one of [0, 0.5, 1]"),
    "extra column": (_small(c=[1, 2, 3]), "in.csv: column 'c' is not in the schema"),
    "missing column": (_small().drop(columns=["b"]), "in.csv: missing column 'b'"),
    # the leftmost failing column, then its first bad row
    "first in reading order": (_small(a=[0.0, 1.0, 9.0], b=[0, 99, 1]),
                               "in.csv: column 'a', row 3: 9 is above the maximum 2.5"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_table_gives_one_exact_line(case: str) -> None:
    frame, line = CASES[case]
    assert _failure(frame) == line


def test_a_row_index_that_is_not_a_number_still_gives_the_row_in_reading_order() -> None:
    frame = _small(b=[0, 1, 20]).set_axis(["r1", "r2", "r3"])
    assert _failure(frame) == "in.csv: column 'b', row 3: 20 is above the maximum 9"


def test_the_mobile_schema_names_the_bad_cell() -> None:
    frame = mobile_frame(30)
    frame.loc[4, "n_cores"] = 0
    assert _failure(frame, MOBILE).startswith("in.csv: column 'n_cores', row 5: 0 is below")


def test_a_header_only_table_says_it_has_no_data_rows(tmp_path: Path) -> None:
    """Read from a CSV with a header alone, every column is text: the line says why."""
    path = tmp_path / "train.csv"
    mobile_frame(3).iloc[:0].to_csv(path, index=False)
    assert _failure(pd.read_csv(path), MOBILE) == "in.csv: no data rows (a header only)"
