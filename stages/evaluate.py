"""Stage evaluate@<model>: score a model and its scikit-learn reference on the test split:
headline metrics, details, plot data."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from jaxpipe.artifacts import load_trained
from jaxpipe.core.config import load_config
from jaxpipe.core.console import run
from jaxpipe.data.tables import load_dataset
from jaxpipe.evaluate import EvalConfig, evaluate, write_evaluation

log = logging.getLogger("evaluate")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="key under evaluate: in params.yaml")
    parser.add_argument("--model-file", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="prepared data folder")
    parser.add_argument("--metrics", type=Path, required=True, help="headline metrics JSON")
    parser.add_argument("--details", type=Path, required=True,
                        help="details JSON (coefficients, training facts, the reference's fit)")
    parser.add_argument("--plots", type=Path, required=True, help="plot data folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    cfg = load_config(EvalConfig, args.params, "evaluate", args.model)
    result = evaluate(load_trained(args.model_file), load_dataset(args.data), cfg)
    write_evaluation(result, args.metrics, args.details, args.plots)
    headline = next(k for k in ("accuracy", "r2") if k in result.metrics)
    log.info("%s: %s %.4f on %d %s rows", args.model, headline, result.metrics[headline],
             result.n_scored, cfg.split)


if __name__ == "__main__":
    run(main)
