"""Training throughput of the CNN over 1, 2, 4... forced CPU devices (or the real ones).

    python -m jaxpipe.tools.scaling --devices 1 2 4 --images 4096 --epochs 3

Each device count runs in its own process (the count is fixed once JAX starts), on
synthetic MNIST-shaped images with the params.yaml settings of ``train.cnn_mnist``. One
epoch first compiles; then ``--epochs`` epochs are timed (validation on 100 images each).
Prints one JSON line per count: images/s, wall and CPU milliseconds per step.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxpipe.core.console import run
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.inputs import Inputs
from jaxpipe.data.tables import Dataset, Split
from jaxpipe.models import cnn
from jaxpipe.train import load_train_config

log = logging.getLogger("scaling")


def measure(devices: int, images: int, epochs: int, params: str) -> dict:
    """Steady-state images/s of ``fit`` on ``devices`` devices (this process)."""
    base = load_train_config(params, "cnn_mnist").config
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(images, 28, 28, 1)).astype(np.float32)
    y = (np.arange(images) % 10).astype(np.int32)
    splits = {"train": Split(x, y, []), "val": Split(x[:100], y[:100], [])}
    data = Dataset(Path("memory"), splits, Inputs.of_images(cnn.IMAGE_SHAPE, 10))
    kwargs = {"batch_size": base.batch_size, "lr": base.lr, "eval_batch_size": 100,
              "compiler_options": base.compiler_options, "devices": devices}
    cnn.fit(cnn.Config(epochs=1, **kwargs), data)  # compiles
    started, cpu = time.perf_counter(), time.process_time()
    cnn.fit(cnn.Config(epochs=epochs, **kwargs), data)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    steps = epochs * (images // base.batch_size)
    return {"devices": devices, "visible": jax.device_count(), "batch_size": base.batch_size,
            "images_per_s": round(steps * base.batch_size / seconds, 1),
            "ms_per_step": round(1000 * seconds / steps, 2),
            "cpu_ms_per_step": round(1000 * cpu / steps, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--real", action="store_true", help="the visible devices, not forced")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (0 < args.images <= 1_000_000 and 0 < args.epochs <= 100):
        raise JaxpipeError("--images must be in (0, 1e6], --epochs in (0, 100]")
    if args.worker is not None:
        sys.stdout.write(json.dumps(measure(args.worker, args.images, args.epochs,
                                            args.params)) + "\n")
        return
    for n in args.devices:
        env = dict(os.environ) if args.real else {**os.environ, "JAX_NUM_CPU_DEVICES": str(n)}
        cmd = [sys.executable, "-m", "jaxpipe.tools.scaling", "--worker", str(n), "--images",
               str(args.images), "--epochs", str(args.epochs), "--params", args.params]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        if proc.returncode:
            raise JaxpipeError(f"{n} devices: {proc.stderr.strip().splitlines()[-1:]}")
        sys.stdout.write(proc.stdout.strip().splitlines()[-1] + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    run(main)
