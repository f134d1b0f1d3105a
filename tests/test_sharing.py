"""Team sharing through a DVC remote, and experiments, with the real dvc and git."""

import json
from pathlib import Path

import pytest

from jaxpipe.preflight import stage_items
from jaxpipe.tools.workspace import changed, dvc, git, ran_stages

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def pushed(pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline workspace with a local remote set, outputs pushed, dvc.lock committed."""
    remote = tmp_path_factory.mktemp("remote")
    dvc(pipeline.root, "remote", "add", "-d", "team", str(remote))
    dvc(pipeline.root, "push", "--run-cache")
    git(pipeline.root, "add", "-A")
    git(pipeline.root, "commit", "-q", "-m", "pipeline results")
    return pipeline.root


def clone(origin: Path, dest: Path) -> Path:
    git(origin.parent, "clone", "-q", str(origin), str(dest))
    return dest


def metrics_of(root: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((root / "metrics").glob("*.json"))}


def test_config_in_git_holds_no_secrets(pushed: Path) -> None:
    config = (pushed / ".dvc" / "config").read_text()
    assert "analytics = false" in config and "team" in config
    assert ".dvc/config.local" in (pushed / ".gitignore").read_text()


def test_clone_and_pull_restores_everything_without_running(pushed: Path,
                                                            tmp_path: Path) -> None:
    mate = clone(pushed, tmp_path / "teammate")
    assert not (mate / "data").exists()
    dvc(mate, "pull")
    assert changed(dvc(mate, "status", "--json").stdout) == {}
    assert ran_stages(dvc(mate, "repro").stdout) == []
    models = stage_items(pushed / "dvc.yaml")["evaluate"]  # one metrics file per model
    assert metrics_of(mate) == metrics_of(pushed) and len(metrics_of(mate)) == len(models)
    assert (mate / "data/models/cnn_mnist.safetensors").read_bytes() == (
        pushed / "data/models/cnn_mnist.safetensors").read_bytes()


def test_repro_pull_restores_instead_of_recomputing(pushed: Path, tmp_path: Path) -> None:
    mate = clone(pushed, tmp_path / "teammate")
    out = dvc(mate, "repro", "--pull")
    assert ran_stages(out.stdout) == []
    assert metrics_of(mate) == metrics_of(pushed)


def test_experiments_run_queue_and_show(pushed: Path, tmp_path: Path) -> None:
    mate = clone(pushed, tmp_path / "experimenter")
    dvc(mate, "pull")
    run = dvc(mate, "exp", "run", "-n", "strong-l2", "-S", "train.logreg_mobile.l2=0.5")
    assert set(ran_stages(run.stdout)) == {"train@logreg_mobile", "evaluate@logreg_mobile"}
    for lr in ("0.02", "0.3"):
        dvc(mate, "exp", "run", "--queue", "-n", f"lr-{lr}", "-S", f"train.logreg_mobile.lr={lr}")
    dvc(mate, "queue", "start", "-j", "1")
    dvc(mate, "queue", "logs", "lr-0.3", "--follow", check=False)  # waits for the run
    dvc(mate, "queue", "logs", "lr-0.02", "--follow", check=False)
    shown = json.loads(dvc(mate, "exp", "show", "--json").stdout)
    accuracies = {}
    for exp in (e for commit in shown for e in (commit.get("experiments") or [])):
        for rev in exp["revs"]:
            data = rev["data"]
            file = data["metrics"].get("metrics/logreg_mobile.json")
            if file and "data" in file:
                accuracies[rev.get("name")] = file["data"]["accuracy"]
    assert {"strong-l2", "lr-0.02", "lr-0.3"} <= set(accuracies), shown
    assert len(set(accuracies.values())) > 1  # the runs really differ
