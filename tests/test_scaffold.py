"""`jaxpipe new model` and `jaxpipe new family`: a team adds its own model without touching
what exists. In-process on copies of the project's files, and end to end with the real
`dvc` in a copy of the pipeline: only the new stages are out of date, only they run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jaxpipe.core.config import read_yaml
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.preflight import stage_items
from jaxpipe.tools.scaffold import new_family, new_model
from jaxpipe.tools.workspace import dvc, ran_stages

ROOT = Path(__file__).parents[1]
FILES = ("dvc.yaml", "params.yaml", "environment.yaml")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in FILES:
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def texts(root: Path) -> dict[str, str]:
    return {name: (root / name).read_text() for name in FILES}


def test_a_new_model_is_a_copy_beside_its_original_and_nothing_else_changes(
        project: Path) -> None:
    before = {name: read_yaml(text) for name, text in texts(project).items()}
    new_model(project, "logreg_strong", "logreg_mobile")
    after = {name: read_yaml(text) for name, text in texts(project).items()}
    for name in ("params.yaml", "environment.yaml"):
        for section in ("train", "evaluate"):
            assert after[name][section]["logreg_strong"] == before[name][section]["logreg_mobile"]
            del after[name][section]["logreg_strong"]
        assert after[name] == before[name]  # every other entry as it was
    items = after["dvc.yaml"]["stages"]["train"]["foreach"]
    assert items["logreg_strong"] == items.pop("logreg_mobile") == items.pop("logreg_strong")
    assert "metrics/logreg_strong.json" in after["dvc.yaml"]["metrics"]
    assert after["dvc.yaml"]["artifacts"]["logreg-strong"]["path"] == (
        "data/models/logreg_strong.safetensors")
    plots = {next(iter(p)): next(iter(p.values())) for p in after["dvc.yaml"]["plots"]}
    assert plots["Confusion matrix (logreg_strong)"]["y"] == {
        "plots/logreg_strong/eval/predictions.csv": "predicted"}
    assert "plots/logreg_strong/eval/roc.csv" in plots["ROC curve (binary models)"]["y"]
    assert stage_items(project / "dvc.yaml")["evaluate"]["logreg_strong"]  # evaluate shares it


def test_the_files_change_only_by_added_lines(project: Path) -> None:
    before = texts(project)
    new_model(project, "cnn_small", "cnn_mnist")
    for name, text in texts(project).items():
        old, new = before[name].splitlines(), text.splitlines()
        left = iter(new)
        assert all(any(line == n for n in left) for line in old), name  # old lines, in order
        assert len(new) > len(old), name


@pytest.mark.parametrize(("name", "like", "message"), [
    ("Big", "logreg_mobile", "model 'Big': expected a lower-case identifier"),
    ("2nd", "logreg_mobile", "model '2nd': expected a lower-case identifier"),
    ("a-b", "logreg_mobile", "model 'a-b': expected a lower-case identifier"),
    ("xor_mlp", "logreg_mobile", "model 'xor_mlp': already exists"),
    ("cnn_mnist", "cnn_mnist", "model 'cnn_mnist': already exists"),
    ("fresh", "nope", "--like 'nope': no such model"),
])
def test_a_bad_name_is_refused_in_one_line_and_nothing_is_written(
        project: Path, name: str, like: str, message: str) -> None:
    before = texts(project)
    with pytest.raises(JaxpipeError) as caught:
        new_model(project, name, like)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert texts(project) == before and sorted(p.name for p in project.iterdir()) == sorted(FILES)


def test_another_family_must_fit_the_data_it_is_given(project: Path) -> None:
    before = texts(project)
    with pytest.raises(JaxpipeError, match="^--kind linreg: a regression model, but "
                                           "logreg_mobile's data and evaluation are for a "
                                           "binary one$"):
        new_model(project, "reg", "logreg_mobile", kind="linreg")
    with pytest.raises(JaxpipeError, match=r"^kind: 'forest' is not one of \["):
        new_model(project, "tree", "logreg_mobile", kind="forest")
    assert texts(project) == before


def test_a_new_family_is_one_module_and_its_test(tmp_path: Path) -> None:
    (tmp_path / "src" / "jaxpipe" / "models").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    written = new_family(tmp_path, "ridge_demo")
    assert written == [tmp_path / "src/jaxpipe/models/ridge_demo.py",
                       tmp_path / "tests/test_family_ridge_demo.py"]
    for path in written:
        compile(path.read_text(), str(path), "exec")
    for name in ("bad name", "Ridge", "ridge_demo"):
        with pytest.raises(JaxpipeError) as caught:
            new_family(tmp_path, name)
        assert name in str(caught.value)
    assert sorted(p.name for p in (tmp_path / "src/jaxpipe/models").iterdir()) == [
        "ridge_demo.py"]


def _run(ws: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ws / "src")}
    return subprocess.run([sys.executable, *args], cwd=ws, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def _out_of_date(ws: Path, mirror: Path) -> set[str]:
    return set(json.loads(dvc(ws, "status", "--json", mirror=mirror).stdout or "{}"))


@pytest.mark.e2e
def test_a_team_adds_a_model_and_a_family_and_only_their_stages_run(
        pipeline, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(pipeline.root, ws, symlinks=True)
    assert _out_of_date(ws, pipeline.mirror) == set()

    made = _run(ws, "-m", "jaxpipe.cli", "new", "model", "logreg_strong", "--like",
                "logreg_mobile")
    assert made.returncode == 0, made.stderr
    assert _out_of_date(ws, pipeline.mirror) == {"train@logreg_strong",
                                                 "evaluate@logreg_strong"}
    ran = ran_stages(dvc(ws, "repro", mirror=pipeline.mirror).stdout)
    assert sorted(ran) == ["evaluate@logreg_strong", "train@logreg_strong"]

    for args in (["new", "family", "ridge_demo"],
                 ["new", "model", "ridge_mobile", "--like", "logreg_mobile", "--kind",
                  "ridge_demo"]):
        made = _run(ws, "-m", "jaxpipe.cli", *args)
        assert made.returncode == 0, made.stderr
    assert _out_of_date(ws, pipeline.mirror) == {"train@ridge_mobile", "evaluate@ridge_mobile"}
    ran = ran_stages(dvc(ws, "repro", mirror=pipeline.mirror).stdout)
    assert sorted(ran) == ["evaluate@ridge_mobile", "train@ridge_mobile"]
    metrics = json.loads((ws / "metrics/ridge_mobile.json").read_text())
    assert metrics["accuracy"] > 0.8

    deps = _run(ws, "-m", "jaxpipe.tools.deps", "--root", str(ws))
    assert deps.returncode == 0, deps.stderr
    # the tests about every stage and every model follow the pipeline there
    tests = _run(ws, "-m", "pytest", "-n", "0", "-q", "-p", "no:cacheprovider", "-m", "not e2e",
                 "tests/test_family_ridge_demo.py", "tests/test_dependencies.py",
                 "tests/test_preflight.py", "tests/test_env.py",
                 "tests/test_plot_templates.py", "tests/test_models.py")
    assert tests.returncode == 0, tests.stdout[-3000:]
