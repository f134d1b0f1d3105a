"""``jaxpipe.tools.scaling``, the scaling benchmark, called in-process: what one measurement
trains on and how it turns times into rates, and how the parent runs one worker per device
count (the environment and command line each gets, what it prints, a worker's failure).

No JAX training here (the e2e-sized work is the benchmark itself): ``measure`` is checked
with ``cnn.fit`` replaced by a recorder on a scripted clock, so the data, the configs and
the arithmetic around the two fits are exact; the parent is checked with a stand-in Python
that prints what it was started with, through the real ``subprocess.run``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.tables import Dataset
from jaxpipe.models import cnn
from jaxpipe.tools import scaling

PARAMS = """
train:
  cnn_mnist:
    kind: cnn
    epochs: 10
    batch_size: 24
    lr: 0.02
    seed: 3
    max_train_images: 50
    eval_batch_size: 500
    compiler_options: {xla_cpu_enable_fast_math: false}
    devices: 1
    memory_budget_mb: 64
"""
OPTIONS = {"xla_cpu_enable_fast_math": False}
WALL_PER_EPOCH, CPU_PER_EPOCH = 0.70037, 1.30011


class Recorder:
    """Stands in for ``cnn.fit``: records each call; each epoch takes a fixed scripted time."""

    def __init__(self) -> None:
        self.calls: list[tuple[cnn.Config, Dataset]] = []
        self.wall, self.cpu = 50.0, 5.0

    def fit(self, cfg: cnn.Config, data: Dataset) -> None:
        self.calls.append((cfg, data))
        self.wall += WALL_PER_EPOCH * cfg.epochs
        self.cpu += CPU_PER_EPOCH * cfg.epochs


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(scaling.cnn, "fit", rec.fit)
    monkeypatch.setattr(scaling, "time", SimpleNamespace(perf_counter=lambda: rec.wall,
                                                         process_time=lambda: rec.cpu))
    return rec


@pytest.fixture
def params(tmp_path: Path) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    return str(path)


FAKE_PYTHON = """#!{python} -S
import json, os, sys
print("a line the worker logged")
print("another")
worker = sys.argv[sys.argv.index("--worker") + 1]
if os.environ.get("SCALING_TEST_FAIL") == worker:
    sys.stderr.write("Traceback (most recent call last):\\n  ...\\nValueError: no devices\\n")
    sys.exit(1)
print(json.dumps({{"argv": sys.argv[1:], "cpu_devices": os.environ.get("JAX_NUM_CPU_DEVICES")}}))
"""


@pytest.fixture
def fake_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the interpreter the workers run in: it prints two log lines, then its
    arguments and JAX_NUM_CPU_DEVICES as the JSON result (or fails, for one worker)."""
    path = tmp_path / "python"
    path.write_text(FAKE_PYTHON.format(python=sys.executable))
    path.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(path))
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    monkeypatch.delenv("SCALING_TEST_FAIL", raising=False)
    return path


def worker_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def worker_argv(devices: int, images: int = 4096, epochs: int = 3,
                params: str = "params.yaml") -> list[str]:
    return ["-m", "jaxpipe.tools.scaling", "--worker", str(devices), "--images", str(images),
            "--epochs", str(epochs), "--params", params]


def test_a_measurement_compiles_with_one_epoch_then_times_the_others(
        recorder: Recorder, params: str) -> None:
    result = scaling.measure(2, 130, 3, params)
    assert result == {"devices": 2, "visible": jax.device_count(), "batch_size": 24,
                      "images_per_s": 171.3, "ms_per_step": 140.07, "cpu_ms_per_step": 260.02}
    assert list(result) == ["devices", "visible", "batch_size", "images_per_s", "ms_per_step",
                            "cpu_ms_per_step"]
    first, timed = (cfg for cfg, _ in recorder.calls)
    same = {"batch_size": 24, "lr": 0.02, "eval_batch_size": 100,
            "compiler_options": OPTIONS, "devices": 2}
    assert first == cnn.Config(epochs=1, **same)
    assert timed == cnn.Config(epochs=3, **same)


def test_a_measurement_trains_on_fixed_mnist_shaped_images(recorder: Recorder,
                                                           params: str) -> None:
    scaling.measure(1, 130, 1, params)
    scaling.measure(1, 130, 1, params)
    data = recorder.calls[0][1]
    assert recorder.calls[1][1] is data  # the compile run and the timed run: the same data
    train, val = data.split("train"), data.split("val")
    assert sorted(data.splits) == ["train", "val"] and data.inputs.image_shape == (28, 28)
    assert data.path == Path("memory")  # an in-memory data set, as helpers.make_dataset
    assert train.x.shape == (130, 28, 28, 1) and train.x.dtype == np.float32
    assert -1 <= train.x.min() < -0.99 and 0.99 < train.x.max() < 1
    assert train.y.dtype == np.int32 and train.y.tolist() == [i % 10 for i in range(130)]
    assert train.features == [] and val.features == []
    np.testing.assert_array_equal(val.x, train.x[:100])
    np.testing.assert_array_equal(val.y, train.y[:100])
    again = recorder.calls[2][1].split("train")  # the second measurement's
    np.testing.assert_array_equal(again.x, train.x)  # the same images every run


def test_a_worker_prints_its_measurement_as_one_json_line(
        recorder: Recorder, params: str, fake_python: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    scaling.main(["--worker", "2", "--images", "130", "--epochs", "3", "--params", params])
    expected = {"devices": 2, "visible": jax.device_count(), "batch_size": 24,
                "images_per_s": 171.3, "ms_per_step": 140.07, "cpu_ms_per_step": 260.02}
    assert capsys.readouterr().out == json.dumps(expected) + "\n"
    assert [cfg.devices for cfg, _ in recorder.calls] == [2, 2]


def test_one_worker_per_device_count_with_that_many_cpu_devices(
        fake_python: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scaling.main(["--devices", "3", "1", "--images", "512", "--epochs", "2", "--params", "p.yaml"])
    assert worker_lines(capsys.readouterr().out) == [
        {"argv": worker_argv(3, 512, 2, "p.yaml"), "cpu_devices": "3"},
        {"argv": worker_argv(1, 512, 2, "p.yaml"), "cpu_devices": "1"}]


def test_by_default_1_2_and_4_devices_on_4096_images_for_3_epochs(
        fake_python: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scaling.main([])
    assert worker_lines(capsys.readouterr().out) == [
        {"argv": worker_argv(n), "cpu_devices": str(n)} for n in (1, 2, 4)]


def test_real_devices_leave_the_environment_as_it_is(
        fake_python: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    scaling.main(["--real", "--devices", "1", "2"])
    assert [w["cpu_devices"] for w in worker_lines(capsys.readouterr().out)] == [None, None]
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "7")
    scaling.main(["--real", "--devices", "1"])
    scaling.main(["--devices", "2"])
    assert [w["cpu_devices"] for w in worker_lines(capsys.readouterr().out)] == ["7", "2"]


def test_a_failed_worker_is_named_with_its_last_error_line_and_stops_the_run(
        fake_python: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SCALING_TEST_FAIL", "2")
    with pytest.raises(JaxpipeError) as err:
        scaling.main(["--devices", "1", "2", "4"])
    assert str(err.value) == "2 devices: ['ValueError: no devices']"
    assert worker_lines(capsys.readouterr().out) == [{"argv": worker_argv(1),
                                                      "cpu_devices": "1"}]


@pytest.mark.parametrize(("images", "epochs"), [(1, 100), (1_000_000, 1)])
def test_the_extremes_of_the_ranges_are_accepted(images: int, epochs: int, fake_python: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    scaling.main(["--devices", "1", "--images", str(images), "--epochs", str(epochs)])
    assert worker_lines(capsys.readouterr().out)[0]["argv"] == worker_argv(1, images, epochs)


@pytest.mark.parametrize(("images", "epochs"), [(0, 3), (-5, 3), (1_000_001, 3), (4096, 0),
                                                (4096, 101), (0, 0)])
def test_sizes_out_of_range_are_refused_before_any_worker_runs(
        images: int, epochs: int, fake_python: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(JaxpipeError) as err:
        scaling.main(["--images", str(images), "--epochs", str(epochs)])
    assert str(err.value) == "--images must be in (0, 1e6], --epochs in (0, 100]"
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(("argv", "said"), [
    (["--devices", "two"], "argument --devices: invalid int value: 'two'"),
    (["--devices"], "argument --devices: expected at least one argument"),
    (["--images", "1e3"], "argument --images: invalid int value: '1e3'"),
    (["--epochs", "2.5"], "argument --epochs: invalid int value: '2.5'"),
    (["--worker", "one"], "argument --worker: invalid int value: 'one'")])
def test_counts_that_are_not_whole_numbers_are_refused(
        argv: list[str], said: str, fake_python: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        scaling.main(argv)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.endswith(f": error: {said}\n")


def test_the_help_says_what_it_measures_and_hides_the_worker_option(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        scaling.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for said in ("Training throughput of the CNN over 1, 2, 4... forced CPU devices (or the "
                 "real ones).", "--devices DEVICES [DEVICES ...]", "--images IMAGES",
                 "--epochs EPOCHS", "--params PARAMS", "--real the visible devices, not forced"):
        assert said in text
    assert "--worker" not in text
