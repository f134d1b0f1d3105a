"""Library paths the stages take, run in-process: params loading and its errors, prepare()
from a raw table and from an MNIST folder, the image and finiteness checks, the table
schema, the preflight's params and mirror checks, and the model-specific details."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from helpers import make_dataset, mobile_frame, write_fake_mirror

from jaxpipe.core.config import load_config, load_params
from jaxpipe.core.errors import ConfigError, JaxpipeError
from jaxpipe.data.prepare import PrepareConfig, prepare, prepare_images
from jaxpipe.data.raw import check_images
from jaxpipe.data.schema import load_schema
from jaxpipe.data.tables import load_dataset, table_from_frame, write_dataset
from jaxpipe.preflight import check_mirror, check_params, stage_items

ROOT = Path(__file__).parents[1]


def _params(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_load_config_reads_the_section_and_names_file_section_and_key(tmp_path: Path) -> None:
    path = _params(tmp_path, "prepare:\n  d:\n    kind: table\n    seed: 7\n"
                             "  bad:\n    kind: table\n    test_size: 2\n")
    cfg = load_config(PrepareConfig, path, "prepare", "d")
    assert cfg == PrepareConfig(kind="table", seed=7)
    with pytest.raises(ConfigError) as err:
        load_config(PrepareConfig, path, "prepare", "bad")
    assert str(err.value).startswith(f"{path}:prepare.bad.test_size: ")


def test_a_missing_params_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_params(tmp_path / "nope.yaml", "train")
    assert str(err.value) == f"{tmp_path / 'nope.yaml'}: params file not found"


def test_prepare_reads_a_csv_source(tmp_path: Path) -> None:
    source = tmp_path / "train.csv"
    mobile_frame(n=200).to_csv(source, index=False)
    cfg = load_config(PrepareConfig, ROOT / "params.yaml", "prepare", "mobile_multiclass")
    tables, scaler = prepare(source, cfg, load_schema(ROOT / "schemas" / "mobile_price.yaml"))
    assert sorted(tables) == ["test", "train"]
    assert tables["train"].num_rows + tables["test"].num_rows == 200
    assert tables["test"].num_rows == 40
    assert scaler["target"] == "price_range" and len(scaler["features"]) == 20


def test_prepare_reads_an_mnist_folder_and_checks_it(tmp_path: Path) -> None:
    mnist = write_fake_mirror(tmp_path / "mirror", n_train=100, n_test=30) / "mnist"
    cfg = PrepareConfig(kind="images", target="label", val_size=0.2, seed=0)
    schema = load_schema(ROOT / "schemas" / "mnist.yaml")
    tables, scaler = prepare(mnist, cfg, schema)
    assert {k: t.num_rows for k, t in tables.items()} == {"train": 80, "val": 20, "test": 30}
    assert scaler["features"] == ["image"] and scaler["scale"] == [255.0]
    write_dataset(tmp_path / "prepared", tables, scaler)
    data = load_dataset(tmp_path / "prepared")
    assert data.split("test").x.shape == (30, 28, 28, 1)  # NHWC, one channel
    assert float(data.split("test").x.max()) == pytest.approx(250 / 255)


def test_image_checks_accept_the_schema_shape_and_name_a_wrong_one() -> None:
    schema = load_schema(ROOT / "schemas" / "mnist.yaml")
    labels = np.arange(4, dtype=np.uint8)
    check_images(np.zeros((4, 28, 28), np.uint8), labels, schema, "src")  # as declared
    with pytest.raises(JaxpipeError) as err:
        check_images(np.zeros((4, 28, 27), np.uint8), labels, schema, "src (train)")
    assert str(err.value) == "src (train): images are [28, 27], the schema declares [28, 28]"


def test_image_and_label_counts_must_agree() -> None:
    images, labels = np.zeros((5, 28, 28), np.uint8), np.arange(4, dtype=np.uint8)
    with pytest.raises(JaxpipeError) as err:
        prepare_images(images, labels, images[:2], labels[:2], PrepareConfig(kind="images"))
    assert str(err.value) == "MNIST images and labels differ in count"


def test_a_non_finite_cell_is_named_by_column_row_and_value(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, np.inf], "y": [0, 1, 0]})
    table = table_from_frame(frame, "y", pa.int64())
    write_dataset(tmp_path / "d", {"train": table, "test": table},
                  {"features": ["a", "b"], "mean": [0, 0], "scale": [1, 1], "target": "y"})
    with pytest.raises(JaxpipeError) as err:
        load_dataset(tmp_path / "d")
    assert str(err.value).endswith("column 'b', row 3: inf is not finite")


def test_tables_have_an_explicit_schema_with_a_typed_required_target() -> None:
    frame = pd.DataFrame({"a": [1, 2], "y": [0, 1]})
    table = table_from_frame(frame, "y", pa.uint8())
    assert table.schema.field("a").type == pa.float64()
    assert table.schema.field("y").type == pa.uint8()
    assert not any(field.nullable for field in table.schema)
    assert table.column("y").to_pylist() == [0, 1]


def test_preflight_names_a_params_file_it_cannot_read(tmp_path: Path) -> None:
    items = stage_items(ROOT / "dvc.yaml")
    assert check_params(tmp_path / "none.yaml", None, items) == [
        f"{tmp_path / 'none.yaml'}: params file not found"]


def test_preflight_names_the_file_and_key_of_a_bad_prepare_value(tmp_path: Path) -> None:
    text = (ROOT / "params.yaml").read_text().replace("    test_size: 0.2\n    seed: 42\n",
                                                      "    test_size: 3\n    seed: 42\n", 1)
    path = _params(tmp_path, text)
    problems = check_params(path, None, stage_items(ROOT / "dvc.yaml"))
    assert problems == [f"{path}:prepare.mobile_binary.test_size: must be in [0, 1)"]


def test_preflight_verifies_each_mirror_file_and_names_a_bad_one(tmp_path: Path) -> None:
    mirror = write_fake_mirror(tmp_path / "mirror")
    local = tmp_path / "local.yaml"
    from jaxpipe.tools.mirror import apply_mirror

    apply_mirror(ROOT / "params.yaml", mirror, local)
    problems, verified = check_mirror(ROOT / "params.yaml", local, mirror)
    assert problems == [] and verified == 5  # one CSV, four MNIST files
    (mirror / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the file")
    problems, verified = check_mirror(ROOT / "params.yaml", local, mirror)
    assert verified == 4 and len(problems) == 2
    assert problems[0].startswith("download.mnist.files.test_labels: ")
    assert "jaxpipe-mirror" in problems[1]


def _trained(tmp_path: Path, kind: str, cfg: object, data: object) -> object:
    from jaxpipe import models
    from jaxpipe.artifacts import load_trained, save_trained

    scaler = {"features": ["a", "b"], "mean": [0, 0], "scale": [1, 1], "target": "y"}
    save_trained(tmp_path / "m.st", "m", kind, cfg, models.load(kind).fit(cfg, data), scaler)
    return load_trained(tmp_path / "m.st")


def test_the_xor_details_are_its_steps_whether_it_converged_and_its_last_loss(
        tmp_path: Path) -> None:
    from jaxpipe import models
    from jaxpipe.evaluate import EvalConfig, evaluate

    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([0, 1, 1, 0], np.int32)
    data = make_dataset(None, train=(x, y), test=(x, y))
    cfg = models.load("mlp").Config()
    trained = _trained(tmp_path, "mlp", cfg, data)
    details = evaluate(trained, data, EvalConfig(reference=False)).details
    info = trained.meta["info"]
    assert details == {"split": "test", "rows": 4, "steps_to_converge": info["steps"],
                       "converged": int(info["converged"]),
                       "final_loss": round(float(info["final_loss"]), 6)}
    assert details["converged"] == 1 and details["steps_to_converge"] % 10 == 0



def test_the_history_csv_has_a_column_per_series_and_a_row_per_step(tmp_path: Path) -> None:
    from jaxpipe.train import write_history

    write_history(tmp_path / "h.csv", {"step": np.array([1, 2, 3]),
                                       "train_loss": np.array([0.5, 0.25, 0.125])})
    assert (tmp_path / "h.csv").read_text().splitlines() == [
        "step,train_loss", "1,0.5", "2,0.25", "3,0.125"]


def test_the_cnn_details_are_its_kept_epoch_and_how_much_it_trained() -> None:
    from jaxpipe import models

    cnn = models.load("cnn")
    info = {"best_epoch": 3, "best_val_loss": 0.12345678, "train_images": 512,
            "train_steps": 24, "other": 1}
    assert cnn.metrics(cnn.Config(), None, info) == {
        "best_epoch": 3, "best_val_loss": 0.123457, "train_images": 512, "train_steps": 24}


def test_a_mesh_of_all_devices_holds_every_visible_one() -> None:
    import jax

    from jaxpipe.models.cnn.mesh import data_mesh

    assert data_mesh("all").devices.size == jax.device_count()
    assert data_mesh(1).devices.size == 1


JOIN_ENV = ("JAXPIPE_DISTRIBUTED", "JAXPIPE_NUM_PROCESSES", "JAXPIPE_PROCESS_ID",
            "JAX_COORDINATOR_ADDRESS", "JAXPIPE_JOIN_TIMEOUT_S")


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"JAXPIPE_NUM_PROCESSES": "3", "JAXPIPE_PROCESS_ID": "2", "JAXPIPE_JOIN_TIMEOUT_S": "9",
      "JAX_COORDINATOR_ADDRESS": "127.0.0.1:7001"},
     {"coordinator_address": "127.0.0.1:7001", "num_processes": 3, "process_id": 2,
      "initialization_timeout": 9}),
    ({"JAXPIPE_NUM_PROCESSES": "2"},
     {"coordinator_address": None, "num_processes": 2, "process_id": 0,
      "initialization_timeout": 300}),
    ({"JAXPIPE_DISTRIBUTED": "auto"}, {}),
])
def test_a_run_joins_with_the_processes_its_environment_names(
        monkeypatch: pytest.MonkeyPatch, env: dict, expected: dict | None) -> None:
    """What the environment hands ``jax.distributed.initialize`` (the join itself, two real
    processes on 127.0.0.1, is tests/test_distributed.py's; this process's JAX has started,
    so the initialisation is recorded here, not run)."""
    import jax
    from jax._src import xla_bridge

    from jaxpipe.models.cnn.mesh import join_processes

    calls: list[dict] = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
    for name in JOIN_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    join_processes()
    assert calls == ([] if expected is None else [expected])


def test_a_join_after_jax_started_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import jax

    from jaxpipe.models.cnn.mesh import join_processes

    jax.numpy.zeros(1).block_until_ready()  # JAX's backend is up
    monkeypatch.setenv("JAXPIPE_NUM_PROCESSES", "2")
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    with pytest.raises(JaxpipeError, match="must join before JAX computes anything"):
        join_processes()
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    join_processes()  # already joined: nothing to do


@pytest.mark.parametrize(("index", "rows"), [(0, (0, 16)), (1, (16, 32)), (3, (48, 64))])
def test_each_process_streams_its_own_quarter_of_a_batch(monkeypatch: pytest.MonkeyPatch,
                                                         index: int, rows: tuple) -> None:
    """Four processes share a 64-image batch in process order (the four-process run itself
    is tests/test_distributed.py's; one process here plays each rank in turn)."""
    import jax

    from jaxpipe.models.cnn import mesh

    monkeypatch.setattr(jax, "process_count", lambda: 4)
    monkeypatch.setattr(jax, "process_index", lambda: index)
    assert mesh.local_rows(None, 64) == slice(*rows)


def test_the_reference_uses_its_configured_regularisation() -> None:
    """C=1e-4 shrinks the reference to the majority class (70%); C=1 separates the classes."""
    from jaxpipe.data.tables import Split
    from jaxpipe.evaluate import EvalConfig, reference

    rng = np.random.default_rng(0)
    y = (np.arange(200) % 10 < 7).astype(np.int32)
    x = (y[:, None] * 2.0 - 1.0 + rng.normal(0, 0.5, (200, 1))).astype(np.float32)
    split = Split(x, y, ["a"])
    strong = reference("binary", split, split, EvalConfig(reference_c=1e-4))
    plain = reference("binary", split, split, EvalConfig())
    assert strong == {"sklearn_accuracy": 0.7}
    assert plain["sklearn_accuracy"] > 0.95


def test_train_returns_numpy_parameters_and_a_numbered_history() -> None:
    from jaxpipe import models
    from jaxpipe.train import TrainConfig, train

    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    data = make_dataset(None, train=(x, np.array([0, 1, 1, 1], np.int32)),
                        test=(x, np.array([0, 1, 1, 1], np.int32)))
    fit = train(TrainConfig("logreg", models.load("logreg").Config(steps=7)), data)
    assert all(type(v) is np.ndarray for v in fit.params.values())
    assert fit.history["step"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert list(fit.history)[0] == "step" and len(fit.history["train_loss"]) == 7


def test_jaxpipe_caps_the_isa_and_keeps_the_other_xla_flags(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import platform

    import jaxpipe

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX512 --xla_foo=1 "
                       "--xla_cpu_enable_platform_dependent_math=true")
    jaxpipe._pin_cpu_numerics()
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert os.environ["XLA_FLAGS"] == (
            f"--xla_foo=1 --xla_cpu_max_isa={jaxpipe.XLA_ISA} "
            "--xla_cpu_enable_platform_dependent_math=false")  # consistent YNNPACK sums


def test_the_compilation_cache_lives_under_the_home_cache_by_default(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    import jaxpipe

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("jax.config.update", lambda *args: None)  # leave this process's JAX be
    jaxpipe._compilation_cache()
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / ".cache" / "jaxpipe" / "jax")


def test_preflight_checks_the_mirror_with_the_local_overrides(tmp_path: Path) -> None:
    from jaxpipe.preflight import preflight, stage_names
    from jaxpipe.tools.mirror import apply_mirror

    mirror = write_fake_mirror(tmp_path / "mirror")
    local = tmp_path / "local.yaml"
    apply_mirror(ROOT / "params.yaml", mirror, local)
    problems, summary = preflight(ROOT / "params.yaml", local, ROOT / "dvc.yaml", mirror)
    assert problems == []
    entries = sum(len(v) for v in stage_items(ROOT / "dvc.yaml").values())
    stages = len(stage_names(ROOT / "dvc.yaml"))
    assert summary == (f"{entries} stage entries, the software of {stages} stages as recorded, "
                       f"5 mirror file(s) verified in {mirror}")
    problems, _ = preflight(ROOT / "params.yaml", None, ROOT / "dvc.yaml", mirror)
    assert problems and "jaxpipe-mirror" in problems[-1]  # official checksums: a mismatch
