"""``jaxpipe.evaluate``: metrics as flat numbers with the names the issue lists, plot data
shapes, the scikit-learn reference with its configured regularisation, and each model's
details."""

import json
from pathlib import Path

import numpy as np
from helpers import make_dataset

from jaxpipe.data.tables import Split
from jaxpipe.evaluate import (
    EvalConfig,
    classification_metrics,
    per_class_rows,
    plot_rows,
    reference,
)


def test_binary_metrics_schema_and_values() -> None:
    y = np.array([0, 0, 1, 1])
    out = classification_metrics(y, np.array([0.1, 0.6, 0.7, 0.9]))
    assert out["accuracy"] == 0.75 and out["roc_auc"] == 1.0
    assert set(out) == {"accuracy", "log_loss", "roc_auc"}
    assert all(isinstance(v, int | float) for v in out.values())


def test_multiclass_metrics_have_per_class_f1_and_no_auc() -> None:
    y = np.array([0, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 2, 1]] * 0.9 + 0.1 / 3
    out = classification_metrics(y, probs)
    assert out["accuracy"] == 0.75 and "roc_auc" not in out
    header, rows = per_class_rows(y, probs, 0.5)
    assert header == ["class", "precision", "recall", "f1", "support"]
    assert [r[0] for r in rows] == [0, 1, 2] and rows[2][2] == 0.5 and rows[2][4] == 2


def test_reference_fits_on_train_and_prefixes_names() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x @ np.array([2.0, -1.0]) + 0.5).astype(np.float32)
    split = Split(x, y, ["a", "b"])
    out = reference("regression", split, split, EvalConfig())
    assert abs(out["sklearn_coef_0"] - 2.0) < 1e-4 and abs(out["sklearn_intercept"] - 0.5) < 1e-4
    assert out["sklearn_r2"] > 0.9999


def test_plot_rows() -> None:
    y = np.array([0, 1, 1, 0])
    rows = plot_rows("binary", y, np.array([0.2, 0.8, 0.4, 0.1]), 0.5)
    assert rows["predictions"] == (["actual", "predicted"], [[0, 0], [1, 1], [1, 0], [0, 0]])
    assert rows["roc"][0] == ["fpr", "tpr"] and rows["roc"][1][-1] == [1.0, 1.0]
    assert set(plot_rows("multiclass", y, np.eye(2)[y], 0.5)) == {"predictions", "per_class"}


def test_evaluate_scores_the_split_it_names_beside_the_reference(tmp_path: Path) -> None:
    """The whole evaluation of a saved model: metrics on the named split, reference on train."""
    from helpers import make_dataset

    from jaxpipe import models
    from jaxpipe.artifacts import load_trained, save_trained
    from jaxpipe.evaluate import evaluate, write_evaluation

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.int32)
    flipped = 1 - y[80:]  # a test split the model must get wrong: scoring it shows it
    data = make_dataset(train=(x[:80], y[:80]), test=(x[80:], flipped))
    module = models.load("logreg")
    cfg = module.Config(steps=200, lr=0.5)
    save_trained(tmp_path / "m.st", "m", "logreg", cfg, module.fit(cfg, data), data.inputs)
    trained = load_trained(tmp_path / "m.st")
    on_test = evaluate(trained, data, EvalConfig())
    on_train = evaluate(trained, data, EvalConfig(split="train"))
    assert on_test.n_scored == 40 and on_train.n_scored == 80
    assert on_test.metrics["accuracy"] < 0.2 and on_train.metrics["accuracy"] > 0.9
    assert on_test.metrics["sklearn_accuracy"] < 0.2  # fitted on train, scored on test
    write_evaluation(on_test, tmp_path / "metrics.json", tmp_path / "details.json",
                     tmp_path / "plots")
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"predictions.csv", "roc.csv",
                                                                 "per_class.csv"}
    headline = json.loads((tmp_path / "metrics.json").read_text())
    assert set(headline) == {"accuracy", "log_loss", "roc_auc", "sklearn_accuracy"}
    assert headline["accuracy"] < 0.2
    details = json.loads((tmp_path / "details.json").read_text())
    assert details == {"rows": 40, "split": "test"}  # logistic regression has no extras


def test_regression_details_hold_both_fits_and_their_distance(tmp_path: Path) -> None:
    """The linear model's coefficients, the closed form's, and the largest gap between them
    go to the details; the headline keeps RMSE, R² and the reference's R² only."""
    from helpers import make_dataset

    from jaxpipe import models
    from jaxpipe.artifacts import load_trained, save_trained
    from jaxpipe.evaluate import evaluate

    rng = np.random.default_rng(1)
    x = rng.uniform(size=(400, 2)).astype(np.float32)
    y = (x @ np.array([3.0, 4.0]) + 5.0 + rng.normal(0, 0.01, 400)).astype(np.float32)
    data = make_dataset(train=(x[:300], y[:300]), test=(x[300:], y[300:]))
    module = models.load("linreg")
    cfg = module.Config(steps=50)  # short: the learned fit stays visibly off the closed form
    save_trained(tmp_path / "m.st", "m", "linreg", cfg, module.fit(cfg, data), data.inputs)
    result = evaluate(load_trained(tmp_path / "m.st"), data, EvalConfig())
    assert set(result.metrics) == {"rmse", "r2", "sklearn_r2"}
    assert result.metrics["sklearn_r2"] > 0.999
    details = result.details
    assert details["split"] == "test" and details["rows"] == 100
    assert abs(details["sklearn_coef_0"] - 3.0) < 0.01
    assert abs(details["sklearn_intercept"] - 5.0) < 0.01
    gaps = [abs(details[k] - details[f"sklearn_{k}"]) for k in ("coef_0", "coef_1", "intercept")]
    assert details["max_abs_coef_diff"] == round(max(gaps), 6) > 0


def test_regression_plot_rows_are_actual_and_predicted_values() -> None:
    rows = plot_rows("regression", np.array([1.0, 2.5]), np.array([1.25, 2.0]), 0.5)
    assert rows == {"predictions": (["actual", "predicted"], [[1.0, 1.25], [2.5, 2.0]])}


def test_a_certain_wrong_answer_costs_the_clipped_log_loss() -> None:
    """Probabilities are clipped to [1e-15, 1] before the log loss: a prediction of exactly 0
    for the true class costs -ln(1e-15), not infinity or sklearn's own bound."""
    out = classification_metrics(np.array([1, 0]), np.array([0.0, 0.0]))
    assert out["log_loss"] == round(-np.log(1e-15) / 2, 6)


def _trained(tmp_path: Path, kind: str, cfg: object, data: object) -> object:
    from jaxpipe import models
    from jaxpipe.artifacts import load_trained, save_trained

    save_trained(tmp_path / "m.st", "m", kind, cfg, models.load(kind).fit(cfg, data),
                 data.inputs)
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
