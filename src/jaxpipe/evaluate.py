"""Evaluate: headline metrics, details, a scikit-learn reference on the same split, and plot
data.

The headline metrics (``metrics/<model>.json``, what ``dvc metrics show`` and ``dvc exp show``
list) share their names across models, so the tables have one column per figure, not one per
model and figure: accuracy, log loss, ROC AUC and the reference's accuracy for classifiers;
RMSE, R² and the reference's R² for regression. What only one model has (coefficients, steps
to converge, the kept epoch) goes to a details file beside them, and per-class figures to
plot data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np

from jaxpipe.artifacts import Trained
from jaxpipe.core.config import MAX_STEPS, check, in_range
from jaxpipe.core.fileio import output_set, write_csv_rows, write_json
from jaxpipe.data.tables import Dataset, Split

Rows = tuple[list[str], list[list]]


@dataclass(frozen=True)
class EvalConfig:
    """params.yaml ``evaluate.<model>``."""

    threshold: float = 0.5
    reference: bool = True
    reference_c: float = 1.0
    reference_max_iter: int = 1000
    split: Literal["train", "val", "test"] = "test"  # the split to score

    def __post_init__(self) -> None:
        check(0 < self.threshold < 1, "threshold", "must be in (0, 1)")
        check(self.reference_c > 0, "reference_c", "must be positive")
        in_range(self.reference_max_iter, "reference_max_iter", 1, MAX_STEPS)


@dataclass(frozen=True)
class Evaluation:
    """Headline metrics (ours and the reference's), details, and plot tables (header, rows) by
    name."""

    metrics: dict
    details: dict
    plots: dict[str, Rows]
    n_scored: int


def _skm() -> ModuleType:
    """scikit-learn's metrics, imported on first use (a second to import: `jaxpipe check`
    reads ``EvalConfig`` without it)."""
    from sklearn import metrics

    return metrics


def _r(value: float) -> float:
    return round(float(value), 6)


def _labels(probs: np.ndarray) -> list[int]:
    return list(range(2 if probs.ndim == 1 else probs.shape[1]))


def _classes(probs: np.ndarray, threshold: float) -> np.ndarray:
    return (probs > threshold).astype(int) if probs.ndim == 1 else probs.argmax(axis=1)


def classification_metrics(y: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict:
    """The headline figures: accuracy, log loss, and ROC AUC if binary.

    Per-class precision, recall, F1 and support go to plot data (``per_class_rows``), so
    that ``dvc exp show`` and ``dvc metrics show`` list a handful of columns per model.
    """
    binary = probs.ndim == 1
    full = np.column_stack([1 - probs, probs]) if binary else probs
    pred = _classes(probs, threshold)
    out = {"accuracy": _r(_skm().accuracy_score(y, pred)),
           "log_loss": _r(_skm().log_loss(y, np.clip(full, 1e-15, 1), labels=_labels(probs)))}
    if binary and len(np.unique(y)) == 2:
        out["roc_auc"] = _r(_skm().roc_auc_score(y, probs))
    return out


def per_class_rows(y: np.ndarray, probs: np.ndarray, threshold: float) -> Rows:
    """Precision, recall, F1 and support of every class, one row each."""
    labels = _labels(probs)
    prec, rec, f1, support = _skm().precision_recall_fscore_support(
        y, _classes(probs, threshold), labels=labels, zero_division=0)
    return (["class", "precision", "recall", "f1", "support"],
            [[c, _r(prec[c]), _r(rec[c]), _r(f1[c]), int(support[c])] for c in labels])


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    """RMSE and R^2."""
    metrics = _skm()
    return {"rmse": _r(np.sqrt(metrics.mean_squared_error(y, pred))),
            "r2": _r(metrics.r2_score(y, pred))}


def reference(task: str, train: Split, test: Split, cfg: EvalConfig) -> dict:
    """The model a user would reach for, fitted on the same train split, scored on test."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    x_train, x_test = train.x.reshape(len(train.x), -1), test.x.reshape(len(test.x), -1)
    if task == "regression":
        model = LinearRegression().fit(x_train, train.y)
        out = {"r2": regression_metrics(test.y, model.predict(x_test))["r2"]}
        out.update({f"coef_{i}": _r(c) for i, c in enumerate(model.coef_)})
        out["intercept"] = _r(model.intercept_)
    else:
        model = LogisticRegression(C=cfg.reference_c, max_iter=cfg.reference_max_iter)
        model.fit(x_train, train.y)
        probs = model.predict_proba(x_test)
        probs = probs[:, 1] if task == "binary" else probs
        out = {"accuracy": classification_metrics(test.y, probs, cfg.threshold)["accuracy"]}
    return {f"sklearn_{k}": v for k, v in out.items()}


def plot_rows(task: str, y: np.ndarray, out: np.ndarray, threshold: float) -> dict[str, Rows]:
    """Plot data: predictions (confusion or predicted-vs-actual), per-class figures, and, if
    binary, the ROC curve."""
    if task == "regression":
        return {"predictions": (["actual", "predicted"],
                                [[_r(a), _r(p)] for a, p in zip(y, out, strict=True)])}
    pred = _classes(out, threshold)
    rows = {"predictions": (["actual", "predicted"],
                            [[int(a), int(p)] for a, p in zip(y, pred, strict=True)]),
            "per_class": per_class_rows(y, out, threshold)}
    if task == "binary" and len(np.unique(y)) == 2:
        fpr, tpr, _ = _skm().roc_curve(y, out)
        rows["roc"] = (["fpr", "tpr"], [[_r(f), _r(t)] for f, t in zip(fpr, tpr, strict=True)])
    return rows


def evaluate(trained: Trained, data: Dataset, cfg: EvalConfig) -> Evaluation:
    """Score ``trained`` on the split ``cfg`` names, beside the reference fitted on train."""
    scored = data.split(cfg.split)
    out = trained.predict(scored.x)
    task = trained.module.TASK
    if task == "regression":
        metrics = regression_metrics(scored.y, out)
    else:
        metrics = classification_metrics(scored.y, out, cfg.threshold)
    details = {"split": cfg.split, "rows": len(scored.y),
               **trained.module.metrics(trained.config, trained.params, trained.meta["info"])}
    if cfg.reference:
        ref = reference(task, data.split("train"), scored, cfg)
        headline = "sklearn_r2" if task == "regression" else "sklearn_accuracy"
        metrics[headline] = ref.pop(headline)
        details.update(ref)  # the closed-form coefficients, beside the learned ones
        if task == "regression":
            coefs = [k for k in details if k.startswith("coef_")] + ["intercept"]
            details["max_abs_coef_diff"] = _r(max(abs(details[k] - details[f"sklearn_{k}"])
                                                  for k in coefs))
    return Evaluation(metrics, details,
                      plot_rows(task, scored.y, out, cfg.threshold), len(scored.y))


def write_evaluation(evaluation: Evaluation, metrics_path: Path, details_path: Path,
                     plots_dir: Path) -> None:
    """Write the headline metrics and the details (JSON each) and the plot tables (one CSV
    each, in a fresh folder), all or nothing."""
    with output_set(metrics_path, details_path, plots_dir) as (metrics_tmp, details_tmp,
                                                                plots_tmp):
        plots_tmp.mkdir()
        for name, (header, rows) in evaluation.plots.items():
            write_csv_rows(plots_tmp / f"{name}.csv", header, rows)
        write_json(details_tmp, evaluation.details)
        write_json(metrics_tmp, evaluation.metrics)
