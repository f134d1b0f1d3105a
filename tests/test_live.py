"""Live progress (``JAXPIPE_LIVE=1``): the CNN's epochs reach DVC Studio (a server on
127.0.0.1 standing in for it) and DVCLive's files while ``dvc exp run`` trains, and no
tracked output changes."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from helpers import committed_tree

from jaxpipe import live
from jaxpipe.analysis.env import third_party_modules
from jaxpipe.core.errors import JaxpipeError

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(("value", "on"), [("", False), ("0", False), ("off", False),
                                           ("1", True), ("yes", True), (" TRUE ", True)])
def test_the_environment_turns_it_on_or_off(value: str, on: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(live.ENV, value)
    assert live.wanted() is on


def test_another_value_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(live.ENV, "studio")
    with pytest.raises(JaxpipeError) as caught:
        live.wanted()
    assert str(caught.value) == "JAXPIPE_LIVE='studio': expected 1 (on) or 0 (off)"


def test_off_no_epoch_is_logged_and_nothing_is_written(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(live.ENV, raising=False)
    with live.session("m"):
        live.epoch(1, loss=0.5)
    assert list(tmp_path.iterdir()) == []


def test_on_every_epoch_is_a_step_of_dvclive(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from jaxpipe.models import epoch_done

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(live.ENV, "1")
    with live.session("m"):
        for epoch in (1, 2, 3):
            epoch_done(epoch, train_loss=1.0 / epoch, val_loss=2.0 / epoch)
    epoch_done(4, train_loss=9.0, val_loss=9.0)  # after the session: not logged
    summary = json.loads((tmp_path / "dvclive" / "m" / "metrics.json").read_text())
    assert summary == {"train_loss": pytest.approx(1 / 3), "val_loss": pytest.approx(2 / 3),
                       "step": 2}
    rows = (tmp_path / "dvclive/m/plots/metrics/val_loss.tsv").read_text().splitlines()
    assert rows[0] == "step\tval_loss" and [r.split("\t")[0] for r in rows[1:]] == ["0", "1", "2"]
    assert not (tmp_path / "dvclive" / "m" / "dvc.yaml").exists()  # joins no `dvc exp show`


def test_dvclive_is_no_part_of_a_stages_recorded_software() -> None:
    """It only watches: whether it is installed, and its version, change no output."""
    assert "dvclive" not in third_party_modules([ROOT / "src/jaxpipe/live.py"])
    record = yaml.safe_load((committed_tree() / "environment.yaml").read_text())
    assert "dvclive" not in repr(record)


class _Studio(BaseHTTPRequestHandler):
    events: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).events.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                  **json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def studio() -> Iterator[tuple[str, list[dict]]]:
    _Studio.events = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Studio)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", _Studio.events
    finally:
        server.shutdown()
        server.server_close()


def _outs(lock: Path, stage: str) -> dict[str, str]:
    entry = yaml.safe_load(lock.read_text())["stages"][stage]
    return {out["path"]: out["md5"] for out in entry["outs"]}


@pytest.mark.e2e
def test_dvc_exp_run_sends_each_epoch_to_studio_and_keeps_the_bytes(
        pipeline, studio: tuple[str, list[dict]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from jaxpipe.tools.workspace import dvc

    url, events = studio
    ws = tmp_path / "ws"
    shutil.copytree(pipeline.root, ws, symlinks=True)
    run = ("exp", "run", "--force", "--single-item", "train@cnn_mnist",
           "-S", "train.cnn_mnist.epochs=2")
    dvc(ws, *run, "-n", "plain", mirror=pipeline.mirror)
    plain = _outs(ws / "dvc.lock", "train@cnn_mnist")
    monkeypatch.setenv(live.ENV, "1")
    monkeypatch.setenv("DVC_STUDIO_TOKEN", "isat_test_token")
    monkeypatch.setenv("DVC_STUDIO_URL", url)
    monkeypatch.setenv("DVC_STUDIO_REPO_URL", "https://example.com/team/jaxpipe.git")
    dvc(ws, *run, "-n", "watched", mirror=pipeline.mirror)
    # DVC posts its own events around the stage (client "dvc"); DVCLive posts each epoch's
    # figures as it ends (metrics and plot points in separate requests, the last again at end)
    ours = [e for e in events if e.get("type") == "data" and e.get("client") == "dvclive"]
    assert all(e["path"] == "/api/live" and e["auth"] == "token isat_test_token"
               and e["name"] == "watched" for e in ours)
    sent = {e["step"]: e["metrics"]["dvclive/cnn_mnist/metrics.json"]["data"]
            for e in ours if "metrics" in e}
    points = [p for e in ours if "plots" in e
              for p in e["plots"]["dvclive/cnn_mnist/plots/metrics/val_loss.tsv"]["data"]]
    history = (ws / "plots/cnn_mnist/history.csv").read_text().splitlines()[1:]
    val_losses = [float(row.split(",")[2]) for row in history]
    assert sorted(sent) == [0, 1], events
    assert [sent[step]["val_loss"] for step in (0, 1)] == pytest.approx(val_losses, rel=1e-6)
    assert [p["step"] for p in points] == [0, 1]  # each point sent once
    assert _outs(ws / "dvc.lock", "train@cnn_mnist") == plain  # the same model and history


LAUNCHED = """
import os, sys
here = os.path.join(sys.argv[1], os.environ["JAXPIPE_PROCESS_ID"])
os.makedirs(here)
os.chdir(here)
from jaxpipe import live
from jaxpipe.models import epoch_done
with live.session("m"):
    for epoch in (1, 2):
        epoch_done(epoch, train_loss=1.0 / epoch, val_loss=2.0 / epoch)
"""


def test_in_a_launched_run_only_process_0_reports(
        studio: tuple[str, list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two real processes under ``jaxpipe.launch``, as ``dvc exp run`` starts a stage (its
    experiment's variables set), each in a folder of its own: process 0 writes DVCLive's
    files and posts each epoch to Studio once; process 1 writes nothing and posts nothing."""
    from jaxpipe.launch import launch

    url, events = studio
    for name, value in {live.ENV: "1", "DVC_STUDIO_TOKEN": "isat_test_token",
                        "DVC_STUDIO_URL": url, "DVC_EXP_NAME": "launched",
                        "DVC_STUDIO_REPO_URL": "https://example.com/team/jaxpipe.git",
                        "DVC_EXP_BASELINE_REV": "0" * 39 + "1"}.items():
        monkeypatch.setenv(name, value)
    script = tmp_path / "child.py"
    script.write_text(LAUNCHED)
    (tmp_path / "runs").mkdir()
    assert launch([sys.executable, str(script), str(tmp_path / "runs")], 2, timeout_s=120) == 0
    runs = tmp_path / "runs"
    assert json.loads((runs / "0/dvclive/m/metrics.json").read_text())["step"] == 1
    assert list((runs / "1").iterdir()) == []
    # one experiment started; each epoch's figures sent once (DVCLive sends the last again
    # as it ends)
    assert [e["type"] for e in events].count("start") == 1, events
    steps = [e["step"] for e in events if e.get("type") == "data" and "metrics" in e]
    assert steps[:2] == [0, 1] and set(steps) == {0, 1} and steps.count(0) == 1, events
