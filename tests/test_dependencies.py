"""dvc.yaml declares exactly the code each stage runs, so a code change re-runs its stages."""

import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import committed_tree, download_deps, edit_yaml

from jaxpipe.analysis.deps import check_project, dvc_stages, import_closure
from jaxpipe.tools.workspace import changed, committed_copy, dvc, git

ROOT = Path(__file__).parents[1]
HTTP, EVALUATE = "src/jaxpipe/data/http.py", "src/jaxpipe/evaluate.py"


def test_every_stage_declares_exactly_the_modules_it_imports() -> None:
    results = check_project(committed_tree())
    assert len(results) == len(dvc_stages(committed_tree()))
    problems = [f"{r.stage}: missing {p}" for r in results for p in r.missing]
    problems += [f"{r.stage}: extra {p}" for r in results for p in r.extra]
    assert problems == []


def test_a_model_stage_depends_on_its_own_family_only() -> None:
    stages = {r.stage: r.imported for r in check_project(committed_tree())}
    assert "src/jaxpipe/models/logreg.py" in stages["train@logreg_mobile"]
    for other in ("cnn/", "mlp.py", "linreg.py", "softmax.py"):
        assert not any(p.startswith(f"src/jaxpipe/models/{other}")
                       for p in stages["train@logreg_mobile"])
    assert "src/jaxpipe/models/cnn/__init__.py" in stages["evaluate@cnn_mnist"]
    assert not any("/tools/" in p for code in stages.values() for p in code)


def _copy_project(dest: Path) -> Path:
    committed_copy(ROOT, dest, "src", "stages", ".dvc", "dvc.yaml", "params.yaml",
                   "environment.yaml")
    git(dest, "init", "-q")
    return dest


def test_a_dropped_dep_is_named_with_its_stage(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    edit_yaml(root / "dvc.yaml", lambda spec: download_deps(spec).remove(HTTP))
    bad = {r.stage: r.missing for r in check_project(root) if r.missing}
    assert bad == {"download@mobile_price": ("src/jaxpipe/data/http.py",),
                   "download@mnist": ("src/jaxpipe/data/http.py",)}


def test_a_new_import_is_caught_and_an_unused_dep_too(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    script = root / "stages" / "generate.py"
    script.write_text(script.read_text().replace(
        "from jaxpipe.core.config import load_config",
        "from jaxpipe.core.config import load_config\nfrom jaxpipe.data import idx  # noqa"))
    edit_yaml(root / "dvc.yaml", lambda spec: download_deps(spec).append(EVALUATE))
    results = {r.stage: r for r in check_project(root)}
    assert results["generate@xor"].missing == ("src/jaxpipe/data/idx.py",)
    assert results["download@mnist"].extra == ("src/jaxpipe/evaluate.py",)


def test_closure_follows_from_imports_and_package_inits() -> None:
    closure = {p.relative_to(ROOT).as_posix()
               for p in import_closure(ROOT / "stages" / "generate.py", ROOT / "src")}
    assert {"src/jaxpipe/__init__.py", "src/jaxpipe/data/__init__.py",
            "src/jaxpipe/data/tables.py", "src/jaxpipe/core/fileio.py"} <= closure
    assert "src/jaxpipe/data/prepare.py" not in closure


@pytest.mark.e2e
@pytest.mark.parametrize("module", ["src/jaxpipe/models/cnn/net.py", "src/jaxpipe/data/tables.py",
                                    "src/jaxpipe/evaluate.py", "src/jaxpipe/data/kaggle.py",
                                    "src/jaxpipe/core/fileio.py"])
def test_editing_a_module_dirties_exactly_the_stages_that_import_it(pipeline, module: str
                                                                     ) -> None:
    ws = pipeline.root
    importers = {r.stage for r in check_project(ws) if module in r.imported}
    path = ws / module
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# an edit that changes the file's hash\n")
        status = changed(dvc(ws, "status", "--json").stdout)
    finally:
        path.write_bytes(original)
    assert importers and set(status) == importers
    assert changed(dvc(ws, "status", "--json").stdout) == {}


@pytest.mark.e2e
def test_editing_the_cnn_reruns_only_the_cnn(pipeline) -> None:
    """The same, spelled out for one module without the closure code."""
    path = pipeline.root / "src/jaxpipe/models/cnn/net.py"
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n")
        status = changed(dvc(pipeline.root, "status", "--json").stdout)
    finally:
        path.write_bytes(original)
    assert set(status) == {"train@cnn_mnist", "evaluate@cnn_mnist"}
    params = yaml.safe_load((committed_tree() / "params.yaml").read_text())
    assert params["train"]["cnn_mnist"]["kind"] == "cnn"


def test_the_command_reports_the_wrong_stages_then_fails(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    from jaxpipe.analysis.declared import main
    from jaxpipe.core.errors import JaxpipeError

    main(["--root", str(committed_tree())])
    stages = len(dvc_stages(committed_tree()))
    assert capsys.readouterr().out == (f"all {stages} stages declare exactly the code they "
                                       "import and the packages it imports\n")
    root = _copy_project(tmp_path)  # as committed: its own count of stages
    stages = len(dvc_stages(root))

    def swap(spec: dict) -> None:
        deps = download_deps(spec)
        deps[deps.index(HTTP)] = EVALUATE

    edit_yaml(root / "dvc.yaml", swap)
    with pytest.raises(JaxpipeError) as err:
        main(["--root", str(root)])
    assert str(err.value) == f"2 of {stages} stages' code deps are wrong"
    assert capsys.readouterr().out.splitlines() == [
        "download@mobile_price: imports src/jaxpipe/data/http.py, not in its deps",
        "download@mobile_price: declares src/jaxpipe/evaluate.py, which it does not import "
        "(wholly)",
        "download@mnist: imports src/jaxpipe/data/http.py, not in its deps",
        "download@mnist: declares src/jaxpipe/evaluate.py, which it does not import (wholly)"]


@pytest.mark.parametrize(("cmd", "params"), [
    ("python stages/train.py nope", {}),
    ("python stages/train.py nope", {"train": {"nope": {"lr": 1}}}),
    ("python stages/train.py", {"train": {"x": {"kind": "logreg"}}}),
])
def test_a_model_stage_without_its_kind_in_params_is_named(cmd: str, params: dict) -> None:
    from jaxpipe.analysis.deps import stage_code
    from jaxpipe.core.errors import JaxpipeError

    name = cmd.split()[2] if len(cmd.split()) > 2 else "<model>"
    with pytest.raises(JaxpipeError) as err:
        stage_code(ROOT, "train@nope", cmd, ["stages/train.py"], params)
    assert str(err.value) == (f"train@nope: its code reaches the model registry, so "
                              f"params.yaml needs train.{name}.kind (the family it trains)")
    found = stage_code(ROOT, "train@x", "python stages/train.py x", ["stages/train.py"],
                       {"train": {"x": {"kind": "logreg"}}})
    assert "src/jaxpipe/models/logreg.py" in found.imported
    assert "src/jaxpipe/models/cnn/__init__.py" not in found.imported


def test_a_file_tracked_with_dvc_add_is_not_a_stage_to_check(tmp_path: Path) -> None:
    """``dvc add`` makes a .dvc file, a stage to DVC with no name and no command: the
    checks read the pipeline's stages and leave it alone (they crashed on it)."""
    root = _copy_project(tmp_path)
    before = [s.name for s in dvc_stages(root)]
    (root / "extra.csv").write_text("a,b\n1,2\n")
    subprocess.run(["dvc", "add", "-q", "extra.csv"], cwd=root, check=True)
    assert (root / "extra.csv.dvc").is_file()
    assert [s.name for s in dvc_stages(root)] == before
    assert not [r for r in check_project(root) if r.missing or r.extra]
