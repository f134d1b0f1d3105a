"""``jaxpipe.cli`` in-process: ``main`` with an argv list (exit codes, files, messages), and
``entry`` as the console script runs it (one line on stderr, exit code 2)."""

from __future__ import annotations

import ctypes
import logging
import os
import re
import stat
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaxpipe import models
from jaxpipe.artifacts import save_trained
from jaxpipe.cli import entry, main
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.inputs import Inputs
from jaxpipe.models import Fit
from jaxpipe.tools.mirror import apply_mirror, write_local
from jaxpipe.tools.workspace import committed_copy

ROOT = Path(__file__).parents[1]
SCALER = {"features": ["a", "b"], "mean": [10.0, -5.0], "scale": [2.0, 4.0], "target": "y",
          "stored": "scaled"}
INPUTS = Inputs.from_json({**SCALER, "classes": 2}, "test")
W, C = np.array([2.0, -1.0], np.float32), np.float32(0.5)
LINES = "x,y,z\n0,1,5\n1,3,4\n2,2,6\n"  # a plot of y and z over x


@pytest.fixture(autouse=True)
def plain_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No mirror from the caller's environment, wide help text; ``entry`` asks for a
    parent-death signal, undone afterwards."""
    monkeypatch.delenv("JAXPIPE_MIRROR", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    yield
    ctypes.CDLL(None, use_errno=True).prctl(1, 0)


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``main(argv)`` exits 2 as argparse does; return its last stderr line."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_command_is_required_and_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert fails([], capsys) == "jaxpipe: error: the following arguments are required: command"
    assert fails(["train"], capsys) == ("jaxpipe: error: argument command: invalid choice: "
                                        "'train' (choose from 'predict', 'plots', 'exp', "
                                        "'check', 'env', 'new')")


def test_the_help_says_what_each_command_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: jaxpipe [-h] {predict,plots,exp,check,env,new} ...\n\n"
                          "The ``jaxpipe`` command beside ``dvc``: check, env, exp, new, "
                          "predict, plots.\n")
    for line in ["predict             apply a trained model to new data",
                 "plots               render every dvc plot to static files, offline",
                 "exp                 experiments side by side: changed params and metrics",
                 "check               validate params, schemas and the mirror; run nothing",
                 "env                 each stage's software: recorded against installed",
                 "new                 add a model (like an existing one) or a model family"]:
        assert f"\n    {line}\n" in out


@pytest.mark.parametrize(("command", "lines"), [
    ("predict", ["usage: jaxpipe predict [-h] [--out CSV] model input [input ...]",
                 "  model       model file (data/models/<model>.safetensors)",
                 "  input       CSV or Parquet tables; for the CNN: PNG files (28x28, a light "
                 "digit on black; colour is read as its luminance), folders of them, IDX files "
                 "or a Parquet image column",
                 "  --out CSV   write the predictions as CSV to this file, or to standard "
                 "output with '-' (default: an aligned table on standard output)"]),
    ("plots", ["usage: jaxpipe plots [-h] [--out OUT] [--format {svg,png}] [--scale SCALE]",
               "  --scale SCALE       PNG pixels per CSS pixel (default 2)"]),
    ("check", ["usage: jaxpipe check [-h] [--params PARAMS] [--local LOCAL] "
               "[--dvc-yaml DVC_YAML] [--mirror MIRROR]",
               "  --mirror MIRROR      local mirror (default: $JAXPIPE_MIRROR)"]),
])
def test_each_command_documents_its_arguments(command: str, lines: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([command, "-h"])
    assert caught.value.code == 0
    out = capsys.readouterr().out.splitlines()
    for line in lines:
        assert line in out


def model_file(tmp_path: Path) -> Path:
    """A logistic-regression model file: p = sigmoid(scaled(a, b) . [2, -1] + 0.5)."""
    cfg = models.load("logreg").Config()
    path = tmp_path / "models" / "m.safetensors"
    path.parent.mkdir()
    save_trained(path, "m", "logreg", cfg, Fit({"w": W, "c": C}, {}, {}), INPUTS)
    return path


def test_predict_writes_one_row_per_input_row(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    frame = pd.DataFrame({"b": [-5.0, 3.0, -13.0], "a": [10.0, 14.0, 6.0]})
    frame.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "out" / "pred.csv"
    caplog.set_level(logging.INFO, logger="jaxpipe")
    assert main(["predict", str(model_file(tmp_path)), str(tmp_path / "new.csv"),
                 "--out", str(out)]) is None
    assert [r.getMessage() for r in caplog.records if r.name == "jaxpipe"] == [
        f"3 predictions written to {out}"]
    written = pd.read_csv(out)
    assert list(written.columns) == ["input", "predicted", "p_0", "p_1"]
    z = ((frame[["a", "b"]] - SCALER["mean"]) / SCALER["scale"]).to_numpy() @ W + C
    p_1 = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(written["p_1"], p_1, rtol=1e-5)
    assert written["predicted"].tolist() == [1, 1, 0]


def test_predict_names_a_missing_or_bad_input(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    model = model_file(tmp_path)
    assert fails(["predict", str(model)], capsys) == (
        "jaxpipe predict: error: the following arguments are required: input")
    with pytest.raises(JaxpipeError, match=r"^x.csv: not found$"):
        main(["predict", str(model), "x.csv"])
    assert capsys.readouterr().out == ""  # no partial table
    pd.DataFrame({"a": [1.0]}).to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(JaxpipeError, match=r"new.csv: missing column 'b' \(the model needs 2"):
        main(["predict", str(model), str(tmp_path / "new.csv"), "--out", str(tmp_path / "o.csv")])
    assert not (tmp_path / "o.csv").exists()


def plot_project(root: Path) -> Path:
    """A DVC project (no git) with one plot, ``dvc plots show`` ready."""
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc" / "config").write_text("[core]\n    no_scm = True\n    analytics = false\n")
    (root / "lines.csv").write_text(LINES)
    (root / "dvc.yaml").write_text("plots:\n  - lines.csv:\n      x: x\n      y: [y, z]\n"
                                   "      title: Y and Z\n")
    return root


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plots_renders_every_dvc_plot_as_svg_by_default(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(plot_project(tmp_path))
    caplog.set_level(logging.INFO, logger="jaxpipe")
    assert main(["plots"]) is None
    assert [r.getMessage() for r in caplog.records if r.name == "jaxpipe"] == [
        "1 plots written to dvc_plots/static"]
    (svg,) = (tmp_path / "dvc_plots" / "static").iterdir()
    assert svg.name == "lines-csv.svg"
    text = svg.read_text()
    assert text.startswith("<svg") and ">Y and Z</text>" in text


def test_plots_renders_png_at_a_scale_where_asked(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(plot_project(tmp_path))
    assert main(["plots", "--out", "big", "--format", "png", "--scale", "2.5"]) is None
    assert [p.name for p in (tmp_path / "big").iterdir()] == ["lines-csv.png"]
    width, height = png_size((tmp_path / "big" / "lines-csv.png").read_bytes())
    main(["plots", "--out", "one", "--format", "png", "--scale", "1"])
    one = png_size((tmp_path / "one" / "lines-csv.png").read_bytes())
    assert abs(width - 2.5 * one[0]) <= 2 and abs(height - 2.5 * one[1]) <= 2
    main(["plots", "--out", "default", "--format", "png"])  # 2 by default: reads in a report
    default = png_size((tmp_path / "default" / "lines-csv.png").read_bytes())
    assert abs(default[0] - 2 * one[0]) <= 2 and abs(default[1] - 2 * one[1]) <= 2


def test_plots_refuses_an_unknown_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    assert fails(["plots", "--format", "pdf"], capsys) == (
        "jaxpipe plots: error: argument --format: invalid choice: 'pdf' "
        "(choose from 'svg', 'png')")
    assert fails(["plots", "--scale", "big"], capsys) == (
        "jaxpipe plots: error: argument --scale: invalid float value: 'big'")


def test_plots_says_when_dvc_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = plot_project(tmp_path)
    (root / ".dvc" / "config").write_text("[core]\n    no_scm = maybe\n")
    monkeypatch.chdir(root)
    with pytest.raises(JaxpipeError) as caught:
        main(["plots"])
    assert str(caught.value) == (
        "dvc plots show --json failed: ERROR: configuration error - config file error: "
        "expected true or false for dictionary value @ data['core']['no_scm']")
    assert not (root / "dvc_plots").exists()


def test_plots_without_any_plot_says_to_run_the_pipeline(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = plot_project(tmp_path)
    (root / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(root)
    with pytest.raises(JaxpipeError, match=r"^no plots to render \(run dvc repro first\)$"):
        main(["plots"])


def test_plots_needs_dvc_on_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(plot_project(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(JaxpipeError) as caught:
        main(["plots"])
    assert str(caught.value) == ("dvc: not found on PATH (activate the project's virtual "
                                 "environment)")


def test_plots_says_no_output_when_dvc_fails_silently(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``dvc`` that exits 1 without a word (a stand-in on PATH: real dvc always explains)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dvc").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "dvc").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(JaxpipeError) as caught:
        main(["plots"])
    assert str(caught.value) == "dvc plots show --json failed: no output"


def project(root: Path) -> Path:
    """params.yaml, dvc.yaml, schemas/ and an empty params.local.yaml, as committed."""
    root.mkdir(parents=True, exist_ok=True)
    committed_copy(ROOT, root, "params.yaml", "dvc.yaml", "environment.yaml", "schemas")
    write_local(root / "params.local.yaml", {})
    return root


def test_check_reads_the_default_files_and_the_mirror_from_the_environment(
        tmp_path: Path, fake_mirror: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    root = project(tmp_path / "p")
    apply_mirror(root / "params.yaml", fake_mirror, root / "params.local.yaml")  # md5s: local
    monkeypatch.chdir(root)
    monkeypatch.setenv("JAXPIPE_MIRROR", str(fake_mirror))
    caplog.set_level(logging.INFO, logger="jaxpipe")
    assert main(["check"]) is None
    (last,) = [r.getMessage() for r in caplog.records if r.name == "jaxpipe"]
    assert re.fullmatch(rf"ok: \d+ stages of dvc.yaml: the params of the \d+ that take "
                        rf"params \(not plots_page\), the software of all \d+ as recorded, "
                        rf"5 mirror file\(s\) verified in "
                        rf"{re.escape(str(fake_mirror))}", last), last


def test_check_lists_every_problem_then_fails(tmp_path: Path, fake_mirror: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    conf = project(tmp_path / "conf")
    (conf / "schemas" / "xor.yaml").write_text("columns:\n  y: {type: integer}\n")
    write_local(conf / "local.yaml", {"download": {"mnist": {"timeout_s": -1}}})
    (conf / "params.yaml").rename(conf / "p.yaml")
    (conf / "dvc.yaml").rename(conf / "pipeline.yaml")
    monkeypatch.chdir(tmp_path)  # no default file here
    monkeypatch.setenv("JAXPIPE_MIRROR", str(tmp_path / "not-this-one"))
    caplog.set_level(logging.INFO, logger="jaxpipe")
    with pytest.raises(JaxpipeError) as caught:
        main(["check", "--params", "conf/p.yaml", "--local", "conf/local.yaml",
              "--dvc-yaml", "conf/pipeline.yaml", "--mirror", str(fake_mirror)])
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert str(caught.value) == f"{len(errors)} problem(s) found; nothing was run"
    assert "conf/schemas/xor.yaml.columns.y.type: 'integer' is not one of ['int', 'float']" \
        in errors
    assert "conf/p.yaml:download.mnist (+ conf/local.yaml).timeout_s: must be positive" in errors
    # the mirror given is checked, not $JAXPIPE_MIRROR
    assert f"if the mirror is a deliberate subset, adopt its checksums with `jaxpipe-mirror " \
        f"{fake_mirror}` (params.yaml stays unchanged)" in errors
    assert not any("not-this-one" in e for e in errors)
    assert not [r for r in caplog.records if r.getMessage().startswith("ok:")]


def test_the_console_script_ends_a_failure_with_one_line_and_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["/venv/bin/jaxpipe", "check", "--dvc-yaml", "none.yaml"])
    with pytest.raises(SystemExit) as caught:
        entry()
    assert caught.value.code == 2
    assert capsys.readouterr().err == (
        "error: none.yaml: not found\n")
    assert os.listdir(tmp_path) == []
