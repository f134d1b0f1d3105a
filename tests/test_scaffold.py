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
from helpers import unused

from jaxpipe.core.config import read_yaml
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.preflight import stage_items
from jaxpipe.scaffold import new_family, new_model, next_steps
from jaxpipe.tools.workspace import changed, committed_copy, dvc, git, ran_stages

ROOT = Path(__file__).parents[1]
FILES = ("dvc.yaml", "params.yaml", "environment.yaml")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return committed_copy(ROOT, tmp_path, *FILES)


def texts(root: Path) -> dict[str, str]:
    return {name: (root / name).read_text() for name in FILES}


def test_a_new_model_is_a_copy_beside_its_original_and_nothing_else_changes(
        project: Path) -> None:
    before = {name: read_yaml(text) for name, text in texts(project).items()}
    new = unused(project, "logreg_strong")
    new_model(project, new, "logreg_mobile")
    after = {name: read_yaml(text) for name, text in texts(project).items()}
    for name in ("params.yaml", "environment.yaml"):
        for section in ("train", "evaluate"):
            assert after[name][section][new] == before[name][section]["logreg_mobile"]
            del after[name][section][new]
        assert after[name] == before[name]  # every other entry as it was
    items = after["dvc.yaml"]["stages"]["train"]["foreach"]
    assert items[new] == items.pop("logreg_mobile") == items.pop(new)
    assert f"metrics/{new}.json" in after["dvc.yaml"]["metrics"]
    artifact = new.replace("_", "-")
    assert after["dvc.yaml"]["artifacts"][artifact]["path"] == f"data/models/{new}.safetensors"
    plots = {next(iter(p)): next(iter(p.values())) for p in after["dvc.yaml"]["plots"]}
    assert plots[f"Confusion matrix ({new})"]["y"] == {
        f"plots/{new}/eval/predictions.csv": "predicted"}
    assert f"plots/{new}/eval/roc.csv" in plots["ROC curve (binary models)"]["y"]
    assert stage_items(project / "dvc.yaml")["evaluate"][new]  # evaluate shares it


def test_the_new_artifact_is_described_by_its_family_and_data_not_the_originals_numbers(
        project: Path) -> None:
    """The original's desc ("... (λ = 0.1) ...") goes stale once the copy's l2 changes."""
    new = unused(project, "logreg_strong")
    before = read_yaml((project / "dvc.yaml").read_text())
    new_model(project, new, "logreg_mobile")
    after = read_yaml((project / "dvc.yaml").read_text())
    kind = read_yaml((project / "params.yaml").read_text())["train"]["logreg_mobile"]["kind"]
    data = before["stages"]["train"]["foreach"]["logreg_mobile"]["data"]
    assert after["artifacts"][new.replace("_", "-")]["desc"] == (
        f"A {kind} model on {data} (its values in params.yaml train.{new}; describe it here)")
    assert after["artifacts"]["logreg-mobile"] == before["artifacts"]["logreg-mobile"]


def test_the_next_step_names_the_values_to_edit_and_what_dvc_status_will_show(
        project: Path) -> None:
    new = unused(project, "logreg_strong")
    new_model(project, new, "logreg_mobile")
    keys = list(read_yaml((project / "params.yaml").read_text())["train"][new])
    hint = next_steps(project, new)
    assert hint.startswith(f"next: edit params.yaml train.{new} ({', '.join(keys[:6])}")
    assert f"then `dvc repro` runs train@{new} and evaluate@{new} only;" in hint
    assert hint.endswith("'modified: stages/train.py, src/...': they have never run, no code "
                         "changed")


def test_the_files_change_only_by_added_lines(project: Path) -> None:
    before = texts(project)
    new_model(project, unused(project, "cnn_small"), "cnn_mnist")
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
    return set(changed(dvc(ws, "status", "--json", mirror=mirror).stdout))


@pytest.mark.e2e
def test_a_team_adds_a_model_and_a_family_and_only_their_stages_run(
        pipeline, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(pipeline.root, ws, symlinks=True)
    assert _out_of_date(ws, pipeline.mirror) == set()

    model, family = unused(ws, "logreg_strong"), unused(ws, "ridge_demo")
    mate = unused(ws, "ridge_mobile")
    made = _run(ws, "-m", "jaxpipe.cli", "new", "model", model, "--like", "logreg_mobile")
    assert made.returncode == 0, made.stderr
    assert _out_of_date(ws, pipeline.mirror) == {f"train@{model}", f"evaluate@{model}"}
    ran = ran_stages(dvc(ws, "repro", mirror=pipeline.mirror).stdout)
    assert sorted(ran) == [f"evaluate@{model}", f"train@{model}"]

    for args in (["new", "family", family],
                 ["new", "model", mate, "--like", "logreg_mobile", "--kind", family]):
        made = _run(ws, "-m", "jaxpipe.cli", *args)
        assert made.returncode == 0, made.stderr
    assert _out_of_date(ws, pipeline.mirror) == {f"train@{mate}", f"evaluate@{mate}"}
    ran = ran_stages(dvc(ws, "repro", mirror=pipeline.mirror).stdout)
    assert sorted(ran) == [f"evaluate@{mate}", f"train@{mate}"]
    metrics = json.loads((ws / f"metrics/{mate}.json").read_text())
    assert metrics["accuracy"] > 0.8

    deps = _run(ws, "-m", "jaxpipe.analysis.declared", "--root", str(ws))
    assert deps.returncode == 0, deps.stderr
    # committed, as a team does: the tests about every stage and every model follow the
    # pipeline there (their copies are of the committed files)
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", f"{model} and {mate}")
    tests = _run(ws, "-m", "pytest", "-n", "0", "-q", "-p", "no:cacheprovider", "-m", "not e2e",
                 f"tests/test_family_{family}.py", "tests/test_dependencies.py",
                 "tests/test_preflight.py", "tests/test_env.py",
                 "tests/test_plot_templates.py", "tests/test_models.py")
    assert tests.returncode == 0, tests.stdout[-3000:]
