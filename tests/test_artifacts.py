"""``jaxpipe.artifacts``: model files: safe format, round trip, byte-identical for the same
seed and whatever the order of their tensors and metadata, no NaN or infinity in the
metadata, clear errors."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import MODEL_META, reordered

from jaxpipe.artifacts import flatten, load_model, save_model, unflatten
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import md5sum
from jaxpipe.data.inputs import Inputs
from jaxpipe.models import cnn

INPUTS = Inputs(("a", "b"), (0.0, 0.0), (1.0, 1.0), "y", "scaled", classes=2)
SCALER = INPUTS.to_json()
META = {"model": "m", "kind": "logreg", "task": "binary", "config": {}, "info": {},
        "inputs": SCALER}
MNIST = Inputs.of_images((28, 28), 10)
GOOD = {"w": np.zeros(2, np.float32), "c": np.zeros((), np.float32)}


def test_round_trip_of_a_flax_state(tmp_path: Path) -> None:
    _, params = cnn.init(3)
    save_model(tmp_path / "m.safetensors", params, {"kind": "cnn", "info": {"a": 1}})
    flat, meta = load_model(tmp_path / "m.safetensors")
    assert meta == {"kind": "cnn", "info": {"a": 1}}
    assert flat["conv1.kernel"].shape == (3, 3, 1, 32)
    back = unflatten(flat, cnn.template(cnn.Config(), MNIST))
    for name, value in flatten(back).items():
        np.testing.assert_array_equal(value, flatten(params)[name])


SCRIPT = """
import sys
from jaxpipe.models import cnn
from jaxpipe.artifacts import save_model
save_model(sys.argv[1], cnn.init(7)[1], {"b": 2, "a": [1, 2], "c": {"z": 1, "y": 2}})
"""


def test_same_seed_gives_byte_identical_files_across_processes(tmp_path: Path) -> None:
    paths = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for path in paths:  # separate processes: hash seeds and dict orders differ
        subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True)
    assert md5sum(paths[0]) == md5sum(paths[1])


def test_not_a_model_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(JaxpipeError, match="bad.safetensors: not a jaxpipe model file"):
        load_model(bad)
    with pytest.raises(JaxpipeError, match="run the train stage first"):
        load_model(tmp_path / "missing.safetensors")
    assert not list(tmp_path.glob(".*.tmp"))


def test_missing_parameter_is_named() -> None:
    template = cnn.template(cnn.Config(), MNIST)
    flat = flatten(cnn.init(0)[1])
    del flat["fc2.bias"]
    with pytest.raises(JaxpipeError, match="m.st: lacks parameter 'fc2.bias'"):
        unflatten(flat, template, "m.st")


def test_every_kind_round_trips_through_its_template(tmp_path: Path) -> None:
    """save_trained then load_trained gives back each family's parameters and predictions."""
    from helpers import make_dataset

    from jaxpipe import models
    from jaxpipe.artifacts import load_trained, save_trained

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    inputs = Inputs(("a", "b", "c"), (0.0,) * 3, (1.0,) * 3, "y", "scaled", classes=2)
    data = make_dataset(inputs, train=(x, y), test=(x, y))
    for kind in ("logreg", "softmax", "mlp", "linreg"):
        module = models.load(kind)
        cfg = module.Config()
        fit = module.fit(cfg, data)
        save_trained(tmp_path / f"{kind}.st", kind, kind, cfg, fit, inputs)
        trained = load_trained(tmp_path / f"{kind}.st")
        assert trained.config == cfg and trained.meta["task"] == module.TASK
        assert trained.inputs == inputs
        for name, value in flatten(fit.params).items():
            np.testing.assert_array_equal(flatten(trained.params)[name], value)
            assert flatten(trained.params)[name].shape == np.shape(value)
        host = fit.params
        np.testing.assert_array_equal(trained.predict(x), module.predict(cfg, host, x))


def test_a_tensor_of_the_wrong_shape_is_named(tmp_path: Path) -> None:
    from jaxpipe.artifacts import load_trained

    save_model(tmp_path / "m.st", {**GOOD, "w": np.zeros(3, np.float32)}, META)
    wrong = r"m.st: parameter 'w' has shape \(3,\), expected \(2,\)"
    with pytest.raises(JaxpipeError, match=wrong):
        load_trained(tmp_path / "m.st")
    save_model(tmp_path / "k.st", {"w": np.zeros(2, np.float32)}, {**META, "kind": "forest"})
    with pytest.raises(JaxpipeError, match="k.st: unknown model kind 'forest'"):
        load_trained(tmp_path / "k.st")


def test_a_transposed_tensor_of_the_same_size_is_refused(tmp_path: Path) -> None:
    """The CNN's first dense layer is (3136, 256): stored as (256, 3136) it holds as many
    numbers, and a loader that only counted them would read every weight from the wrong
    place."""
    from jaxpipe.artifacts import save_trained
    from jaxpipe.models import Fit

    graphdef, params = cnn.init(0)
    flat = flatten(params)
    save_trained(tmp_path / "good.st", "m", "cnn", cnn.Config(), Fit(params, {}), MNIST)
    flat_meta = load_model(tmp_path / "good.st")[1]
    flat["fc1.kernel"] = np.ascontiguousarray(flat["fc1.kernel"].T)
    save_model(tmp_path / "t.st", flat, flat_meta)
    from jaxpipe.artifacts import load_trained

    with pytest.raises(JaxpipeError) as caught:
        load_trained(tmp_path / "t.st")
    assert str(caught.value) == (f"{tmp_path / 't.st'}: parameter 'fc1.kernel' has shape "
                                 "(256, 3136), expected (3136, 256)")


DAMAGED = {  # what is wrong: (tensors, metadata, the line after "<path>: ")
    "task": (GOOD, {**META, "task": "regression"},
             "task 'regression' does not match kind 'logreg' ('binary')"),
    "extra tensor": ({**GOOD, "z": np.zeros(1, np.float32)}, META, "unexpected parameter 'z'"),
    "missing tensor": ({"w": GOOD["w"]}, META, "lacks parameter 'c'"),
    "dtype": ({**GOOD, "w": np.zeros(2, np.float64)}, META,
              "parameter 'w' is float64, expected float32"),
    "non-finite": ({**GOOD, "w": np.array([0, np.inf], np.float32)}, META,
                   "parameter 'w' holds non-finite values"),
    "no inputs": (GOOD, {**META, "inputs": None},
                  "inputs: missing or malformed (expected a mapping)"),
    "older file": (GOOD, {k: v for k, v in {**META, "scaler": SCALER}.items() if k != "inputs"},
                   "written by an older jaxpipe (a 'scaler', no 'inputs'); train it again: "
                   "dvc repro train@m"),
    "short mean": (GOOD, {**META, "inputs": {**SCALER, "mean": [0.0]}},
                   "inputs: 'mean' needs one number per feature (2)"),
    "mean not a list": (GOOD, {**META, "inputs": {**SCALER, "mean": 0.0}},
                        "inputs: 'mean' needs one number per feature (2)"),
    "text scale": (GOOD, {**META, "inputs": {**SCALER, "scale": [1.0, "2"]}},
                   "inputs: 'scale' holds a value that is not a finite number"),
    "zero scale": (GOOD, {**META, "inputs": {**SCALER, "scale": [1.0, 0.0]}},
                   "inputs: 'scale' holds a value that is not positive"),
    "metadata not a mapping": (GOOD, [1, 2], "not a jaxpipe model file (metadata is not a "
                                             "mapping)"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_model_file_gives_one_exact_line(tmp_path: Path, case: str) -> None:
    from jaxpipe.artifacts import load_trained

    tensors, meta, line = DAMAGED[case]
    save_model(tmp_path / "m.st", tensors, meta)
    with pytest.raises(JaxpipeError) as err:
        load_trained(tmp_path / "m.st")
    assert str(err.value) == f"{tmp_path / 'm.st'}: {line}"


def test_a_good_file_loads_as_its_kind(tmp_path: Path) -> None:
    from jaxpipe.artifacts import load_trained

    save_model(tmp_path / "m.st", {"w": np.array([1.0, -2.0], np.float32),
                                   "c": np.array(0.5, np.float32)}, META)
    trained = load_trained(tmp_path / "m.st")
    assert trained.kind == "logreg" and trained.meta == META
    np.testing.assert_array_equal(trained.params["w"], [1.0, -2.0])
    assert float(trained.params["c"]) == 0.5


def test_model_files_are_identical_whatever_the_order_of_tensors_and_metadata(
        tmp_path: Path) -> None:
    params = {"w": np.arange(3, dtype=np.float32), "c": np.float32(0.5),
              "layer": {"kernel": np.ones((2, 2), np.float32), "bias": np.zeros(2, np.float32)}}
    save_model(tmp_path / "a.st", params, MODEL_META)
    save_model(tmp_path / "b.st", reordered(params), reordered(MODEL_META))
    assert (tmp_path / "a.st").read_bytes() == (tmp_path / "b.st").read_bytes()
    flat, meta = load_model(tmp_path / "a.st")
    assert meta == MODEL_META and sorted(flat) == ["c", "layer.bias", "layer.kernel", "w"]
    raw = (tmp_path / "a.st").read_bytes()
    header = json.loads(raw[8: 8 + int.from_bytes(raw[:8], "little")])
    stored = header["__metadata__"]["jaxpipe"]
    assert stored == json.dumps(MODEL_META, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_model_metadata_refuses_non_finite_numbers(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        save_model(tmp_path / "m.st", {"w": np.zeros(2, np.float32)},
                   {**MODEL_META, "info": {"final_loss": bad}})
    assert list(tmp_path.iterdir()) == []
