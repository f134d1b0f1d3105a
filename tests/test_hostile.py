"""Hostile inputs through the real stage scripts: each fails with exit code 2 and one line
naming the file, key, column or value at fault, and the earlier good outputs stay as they
were, byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest
from helpers import committed, mobile_frame

from jaxpipe.artifacts import flatten, load_model, save_model
from jaxpipe.core.config import roundtrip_yaml

ROOT = Path(__file__).parents[1]
Edit = Callable[[pd.DataFrame], pd.DataFrame]


def stage(cwd: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, str(ROOT / "stages" / f"{name}.py"), *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def snapshot(*paths: Path) -> dict[str, str]:
    """Every file under ``paths`` with the MD5 of its bytes."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))]
    return {str(f): hashlib.md5(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def one_line_failure(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def set_param(params: Path, dotted: str, value: object) -> None:
    yaml = roundtrip_yaml()
    data = yaml.load(params.read_text())
    *keys, last = dotted.split(".")
    node = data
    for key in keys:
        node = node[key]
    node[last] = value
    with params.open("w") as handle:
        yaml.dump(data, handle)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with params.yaml, a good raw table, its prepared set and a trained model."""
    work = tmp_path_factory.mktemp("hostile")
    (work / "params.yaml").write_text(committed("params.yaml"))
    set_param(work / "params.yaml", "train.logreg_mobile.steps", 20)
    mobile_frame(200).to_csv(work / "good.csv", index=False)
    prepare = stage(work, "prepare", "mobile_binary", "--input", "good.csv", "--schema",
                    str(ROOT / "schemas/mobile_price.yaml"), "--out", "prepared")
    assert prepare.returncode == 0, prepare.stderr
    train = stage(work, "train", "logreg_mobile", "--data", "prepared", "--out", "model.st",
                  "--history", "history.csv")
    assert train.returncode == 0, train.stderr
    return work


TABLES: dict[str, tuple[Edit, tuple[str, ...]]] = {
    "missing column": (lambda f: f.drop(columns=["ram"]), ("missing column 'ram'",)),
    "extra column": (lambda f: f.assign(colour=1), ("column 'colour' is not in the schema",)),
    "inf cell": (lambda f: f.astype({"m_dep": float}).assign(
        m_dep=lambda g: g.m_dep.where(g.index != 4, np.inf)), ("'m_dep', row 5", "inf")),
    "empty cell": (lambda f: f.astype({"ram": float}).assign(
        ram=lambda g: g.ram.where(g.index != 2, np.nan)), ("'ram', row 3", "missing")),
    "text cell": (lambda f: f.astype({"fc": object}).assign(
        fc=lambda g: g.fc.where(g.index != 0, "many")), ("'fc', row 1", "'many'")),
    "non-integer target": (lambda f: f.astype({"price_range": float}).assign(
        price_range=lambda g: g.price_range.where(g.index != 6, 1.5)),
        ("'price_range', row 7", "1.5 is not an integer")),
    "unknown class": (lambda f: f.assign(price_range=lambda g: g.price_range.where(
        g.index != 1, 9)), ("'price_range', row 2", "9 is not one of [0, 1, 2, 3]")),
    "out of range": (lambda f: f.assign(blue=lambda g: g.blue.where(g.index != 8, 3)),
                     ("'blue', row 9",)),
    "single class": (lambda f: f.assign(price_range=1), ("one class (1)",)),
}


@pytest.mark.parametrize("case", sorted(TABLES))
def test_a_bad_table_fails_in_one_line_and_keeps_the_old_output(work: Path, case: str) -> None:
    edit, words = TABLES[case]
    edit(mobile_frame(200)).to_csv(work / "bad.csv", index=False)
    before = snapshot(work / "prepared")
    proc = stage(work, "prepare", "mobile_binary", "--input", "bad.csv", "--schema",
                 str(ROOT / "schemas/mobile_price.yaml"), "--out", "prepared")
    one_line_failure(proc, "bad.csv", *words)
    assert snapshot(work / "prepared") == before


def test_a_duplicated_header_is_refused(work: Path) -> None:
    text = (work / "good.csv").read_text().replace("sc_w", "sc_h", 1)
    (work / "dup.csv").write_text(text)
    proc = stage(work, "prepare", "mobile_binary", "--input", "dup.csv", "--schema",
                 str(ROOT / "schemas/mobile_price.yaml"), "--out", "prepared")
    one_line_failure(proc, "dup.csv", "column 'sc_h' appears more than once")


PARAMS = [
    ("train.logreg_mobile.steps", 10**9, "steps: 1000000000 is outside [1, 1_000_000]"),
    ("train.logreg_mobile.seed", 2**40, "seed: 1099511627776 is outside [0, 4_294_967_295]"),
    ("train.logreg_mobile.lr", float("nan"), "lr: must be positive"),
    ("train.logreg_mobile.kind", "forest", "kind: 'forest' is not one of"),
    ("train.logreg_mobile.stepz", 3, "logreg_mobile.stepz: unknown key"),
    ("prepare.mobile_binary.test_size", 0.0, "test_size: 0 leaves no test rows"),
]


@pytest.mark.parametrize(("key", "value", "message"), PARAMS, ids=[p[0].split(".")[-1] + str(
    i) for i, p in enumerate(PARAMS)])
def test_a_bad_param_fails_before_any_work(work: Path, tmp_path: Path, key: str, value: object,
                                           message: str) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((work / "params.yaml").read_text())
    set_param(params, key, value)
    before = snapshot(work / "prepared", work / "model.st", work / "history.csv")
    if key.startswith("train"):
        proc = stage(work, "train", "logreg_mobile", "--data", "prepared", "--out", "model.st",
                     "--history", "history.csv", "--params", str(params))
    else:
        proc = stage(work, "prepare", "mobile_binary", "--input", "good.csv", "--out",
                     "prepared", "--params", str(params))
    one_line_failure(proc, str(params), message)
    assert snapshot(work / "prepared", work / "model.st", work / "history.csv") == before


def test_hidden_zero_and_huge_generated_sets_name_their_bound(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(committed("params.yaml"))
    set_param(params, "generate.linear.n_samples", 10**12)
    proc = stage(tmp_path, "generate", "linear", "--out", "x.parquet", "--params", str(params))
    one_line_failure(proc, "n_samples: 1000000000000 is outside [1, 10_000_000]")
    set_param(params, "train.xor_mlp.hidden", 0)
    proc = stage(tmp_path, "train", "xor_mlp", "--data", "nowhere", "--out", "m.st",
                 "--history", "h.csv", "--params", str(params))
    one_line_failure(proc, "hidden: 0 is outside [1, 4_096]")
    assert not list(tmp_path.glob("*.parquet")) and not (tmp_path / "m.st").exists()


@pytest.mark.parametrize("damage", ["nan weight", "extra tensor", "wrong task", "bad scale"])
def test_a_damaged_model_file_is_refused_by_evaluate(work: Path, tmp_path: Path,
                                                     damage: str) -> None:
    flat, meta = load_model(work / "model.st")
    params = {k: v.copy() for k, v in flatten(flat).items()}
    if damage == "nan weight":
        params["w"][0] = np.nan
    elif damage == "extra tensor":
        params["backdoor"] = np.zeros(1, np.float32)
    elif damage == "wrong task":
        meta = {**meta, "task": "regression"}
    else:
        meta = {**meta, "inputs": {**meta["inputs"], "scale": [0.0] * len(meta["inputs"]["mean"])}}
    save_model(tmp_path / "bad.st", params, meta)
    expected = {"nan weight": "parameter 'w' holds non-finite values",
                "extra tensor": "unexpected parameter 'backdoor'",
                "wrong task": "task 'regression' does not match kind 'logreg'",
                "bad scale": "'scale' holds a value that is not positive"}[damage]
    proc = stage(work, "evaluate", "logreg_mobile", "--model-file", str(tmp_path / "bad.st"),
                 "--data", "prepared", "--metrics", str(tmp_path / "m.json"),
                 "--details", str(tmp_path / "d.json"), "--plots", str(tmp_path / "plots"))
    one_line_failure(proc, "bad.st", expected)
    assert not any((tmp_path / name).exists() for name in ("m.json", "d.json", "plots"))


@pytest.mark.parametrize(("images", "labels", "message"), [
    (np.zeros((3, 28, 28), np.uint8), np.array([1, 200, 3], np.uint8),
     "labels: column 'label', row 2: 200 is not one of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"),
    (np.zeros((3, 784, 1), np.uint8), np.array([1, 2, 3], np.uint8),
     "images are [784, 1], the schema declares [28, 28]"),
    (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8), "no images"),
    (np.zeros((2, 28, 28), np.uint8), np.array([1, 2, 3], np.uint8), "2 images but 3 labels"),
])
def test_mnist_files_are_checked_against_their_schema(images: np.ndarray, labels: np.ndarray,
                                                      message: str) -> None:
    from jaxpipe.core.errors import JaxpipeError
    from jaxpipe.data.raw import check_images
    from jaxpipe.data.schema import load_schema

    with pytest.raises(JaxpipeError) as caught:
        check_images(images, labels, load_schema(ROOT / "schemas/mnist.yaml"), "mnist (train)")
    assert str(caught.value).startswith("mnist (train)") and message in str(caught.value)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_stage_is_one_line_and_writes_nothing(work: Path, tmp_path: Path,
                                                             signum: int) -> None:
    """Ctrl-C (SIGINT) or SIGTERM while a stage trains: one line, exit 130, no output and no
    temp file; the earlier model stays as it was."""
    params = tmp_path / "params.yaml"
    params.write_text((work / "params.yaml").read_text())
    set_param(params, "train.logreg_mobile.steps", 1_000_000)  # long enough to interrupt
    shutil.copy(work / "model.st", tmp_path / "model.st")
    before = snapshot(tmp_path / "model.st")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "stages" / "train.py"), "logreg_mobile", "--params",
         str(params), "--data", str(work / "prepared"), "--out", "model.st", "--history",
         "history.csv"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    status = Path(f"/proc/{proc.pid}/status")
    for _ in range(600):  # JAX's thread pools started: the data is loaded, training under way
        threads = [ln for ln in status.read_text().splitlines() if ln.startswith("Threads:")]
        if int(threads[0].split()[1]) > 8:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == ("error: train@logreg_mobile: interrupted; earlier "
                                            "outputs are untouched")
    assert "Traceback" not in err
    assert snapshot(tmp_path / "model.st") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.st", "params.yaml"]


def _tamper(folder: Path, how: str) -> str:
    """Damage a prepared folder as a person or a script might; the file it names."""
    if how == "edited cell":
        table = pq.read_table(folder / "train.parquet").to_pandas()
        table.loc[0, "ram"] = table["ram"].max() * 10
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), folder / "train.parquet")
        return "train.parquet"
    if how == "dropped column":
        table = pq.read_table(folder / "test.parquet")
        pq.write_table(table.drop_columns(["ram"]), folder / "test.parquet")
        return "test.parquet"
    if how == "retyped target":
        table = pq.read_table(folder / "train.parquet")
        i = table.schema.get_field_index("price_range")
        pq.write_table(table.set_column(i, "price_range", pa.compute.cast(
            table["price_range"], pa.float64())), folder / "train.parquet")
        return "train.parquet"
    if how == "edited scale":
        inputs = json.loads((folder / "inputs.json").read_text())
        inputs["mean"][0] += 1.0
        (folder / "inputs.json").write_text(json.dumps(inputs))
        return "inputs.json"
    if how == "added split":
        shutil.copy2(folder / "test.parquet", folder / "val.parquet")
        return "val.parquet"
    (folder / "manifest.json").unlink()
    return "manifest.json"


@pytest.mark.parametrize("how", ["edited cell", "dropped column", "retyped target",
                                 "edited scale", "added split", "no manifest"])
def test_a_tampered_prepared_split_is_refused_by_train_and_evaluate(
        work: Path, tmp_path: Path, how: str) -> None:
    folder = tmp_path / "prepared"
    shutil.copytree(work / "prepared", folder)
    name = _tamper(folder, how)
    train = stage(work, "train", "logreg_mobile", "--data", str(folder), "--out",
                  str(tmp_path / "m.st"), "--history", str(tmp_path / "h.csv"))
    line = one_line_failure(train, str(folder / name), "dvc repro prepare@prepared")
    evaluate = stage(work, "evaluate", "logreg_mobile", "--model-file", str(work / "model.st"),
                     "--data", str(folder), "--metrics", str(tmp_path / "m.json"),
                     "--details", str(tmp_path / "d.json"), "--plots", str(tmp_path / "plots"))
    assert one_line_failure(evaluate, str(folder / name)) == line.replace("train@", "evaluate@")
    assert not any((tmp_path / n).exists() for n in ("m.st", "h.csv", "m.json", "d.json", "plots"))


@pytest.mark.parametrize(("override", "message"), [
    ("mirror_folder: ../..", "mirror_folder: '../..' must be a folder inside the mirror"),
    ("mirror_folder: /etc", "mirror_folder: '/etc' must be a folder inside the mirror"),
    ("mirror_folder: 'a\\..\\..\\b'", "must be a folder inside the mirror"),
    ("files: {train_images: {name: ../../x.gz, md5: '" + "0" * 32 + "'}}",
     "name: '../../x.gz' must be a plain file name"),
])
def test_a_hostile_local_override_is_refused_before_any_download(
        tmp_path: Path, override: str, message: str) -> None:
    """params.local.yaml is deep-merged over params.yaml: it must not point a download
    outside the mirror or its output folder."""
    (tmp_path / "params.yaml").write_text(committed("params.yaml"))
    key, _, value = override.partition(": ")
    (tmp_path / "params.local.yaml").write_text(f"download:\n  mnist:\n    {key}: {value}\n")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "kept.txt").write_text("earlier output")
    env_mirror = tmp_path / "mirror"
    env_mirror.mkdir()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "download.py"), "mnist", "--out", "raw",
         "--local-params", "params.local.yaml"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "JAXPIPE_MIRROR": str(env_mirror)},
        timeout=120, check=False)
    one_line_failure(proc, "params.local.yaml", message)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["kept.txt"]


def test_an_output_folder_that_links_out_of_the_repository_is_refused(
        work: Path, tmp_path: Path) -> None:
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    shutil.copytree(work / "prepared", repo / "data" / "prepared")
    shutil.copy2(work / "params.yaml", repo / "params.yaml")
    elsewhere.mkdir()
    (repo / "data" / "models").symlink_to(elsewhere)
    proc = stage(repo, "train", "logreg_mobile", "--data", "data/prepared", "--out",
                 "data/models/m.safetensors", "--history", "h.csv")
    one_line_failure(proc, "data/models/m.safetensors: data/models is a link to "
                     f"{elsewhere.resolve()}, outside the repository")
    assert list(elsewhere.iterdir()) == [] and not (repo / "h.csv").exists()


WRITE_WITH_A_SMALL_DISK = """
import resource, signal, sys
sys.argv = sys.argv[1:]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv.pop(0)),) * 2)
import runpy
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_disk_that_fills_while_writing_names_the_file_and_keeps_the_old_one(
        work: Path, tmp_path: Path) -> None:
    """A model file that does not fit (safetensors' own error type): one line naming the
    output, not its staging file, and every earlier output as it was."""
    limit, output = 900, "model.safetensors"  # the model file is about 1,000 bytes
    for name in ("model.safetensors", "history.csv"):
        (tmp_path / name).write_text("earlier output")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", WRITE_WITH_A_SMALL_DISK, str(limit), str(ROOT / "stages/train.py"),
         "logreg_mobile", "--data", "prepared", "--out", str(tmp_path / "model.safetensors"),
         "--history", str(tmp_path / "history.csv")], cwd=work, env=env, capture_output=True,
        text=True, timeout=120, check=False)
    line = one_line_failure(proc, str(tmp_path / output), "nothing was replaced")
    assert "File too large" in line or "too large" in line.lower(), line
    for name in ("model.safetensors", "history.csv"):
        assert (tmp_path / name).read_text() == "earlier output"
