"""The CNN write-up's reference: the same network in Keras on TensorFlow, on its best footing.

    python benchmarks/keras_ref.py step|stage EPOCHS JIT [IMAGES]

One measurement per process (TensorFlow's thread pools never share the machine with JAX's),
printed as JSON. The same network as ``jaxpipe.models.cnn`` (3x3 convolutions with "same"
padding, ReLU, 2x2 average pooling, dense 256, dense 10; the loss takes the logits), the
same Adam (1e-3), batch (64), data (the prepared MNIST splits, fresh float32 NHWC) and, for
``stage``, the same per-epoch work: a shuffled epoch (remainder dropped), the validation
split scored in batches of 1,000, the best epoch's weights kept. ``JIT`` 1 compiles the step
with XLA (``jit_compile=True``), 0 runs TensorFlow's graph with oneDNN kernels (its default
on x86). ``step``: ``EPOCHS`` epochs over the first ``IMAGES`` training images, no validation.

Timings come from a callback: ``fit_s`` from the first step to the end of the last epoch
(building the model and importing TensorFlow excluded, as for the PyTorch twin), and the
steady-state rate from the second epoch on (tracing and compiling excluded).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
BATCH, LR, VAL_BATCH = 64, 1e-3, 1000


def network(seed: int):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.AveragePooling2D(2),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.AveragePooling2D(2),
        layers.Flatten(),
        layers.Dense(256, activation="relu"),
        layers.Dense(10),  # logits: the loss applies log-softmax (from_logits, fused)
    ])


class EpochClock:
    """Wall time at the first batch and at the end of every epoch; keeps the best weights."""

    def __init__(self) -> None:
        import keras

        clock = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if clock.started is None:
                    clock.started = time.perf_counter()

            def on_epoch_begin(self, epoch, logs=None):
                clock.batches.append(0)

            def on_train_batch_end(self, batch, logs=None):
                clock.batches[-1] += 1

            def on_epoch_end(self, epoch, logs=None):
                clock.ends.append(time.perf_counter())
                val = (logs or {}).get("val_loss")
                if val is not None:
                    clock.val_loss.append(float(val))
                    if val < clock.best[0]:
                        clock.best = (float(val), epoch + 1, self.model.get_weights())

        self.callback = Callback()
        self.started: float | None = None
        self.ends: list[float] = []
        self.batches: list[int] = []  # training batches run in each epoch
        self.val_loss: list[float] = []
        self.best: tuple = (np.inf, 0, None)


def fresh(x: np.ndarray) -> np.ndarray:
    """An owned, C-contiguous float32 copy (not a view of an Arrow buffer)."""
    return np.array(x, dtype=np.float32, order="C", copy=True)


def measure(kind: str, epochs: int, jit: bool, images: int | None) -> dict:
    import keras
    import tensorflow as tf

    sys.path.insert(0, str(ROOT / "src"))
    from jaxpipe.data.tables import load_dataset

    data = load_dataset(ROOT / "data" / "prepared" / "mnist")
    train = data.split("train")
    n_batches = len(train.y[:images]) // BATCH
    # whole batches only, as the jaxpipe stage trains (the remainder dropped); Keras reshuffles
    # these rows every epoch. Not `steps_per_epoch` over all rows: Keras 3 then does not reset
    # its iterator between epochs, and every other epoch ran out of data after one batch
    # (counted: 283, 1, 283, ... batches), which doubled its apparent speed.
    x, y = fresh(train.x[:n_batches * BATCH]), train.y[:n_batches * BATCH].astype(np.int64)
    model = network(0)
    model.compile(optimizer=keras.optimizers.Adam(LR), jit_compile=jit,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clock = EpochClock()
    kwargs = {}
    if kind == "stage":
        val = data.split("val")
        kwargs = {"validation_data": (fresh(val.x), val.y.astype(np.int64)),
                  "validation_batch_size": VAL_BATCH}
    model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=True,
              callbacks=[clock.callback], verbose=0, **kwargs)
    if clock.batches != [n_batches] * epochs:
        raise SystemExit(f"Keras ran {clock.batches} batches per epoch, not {n_batches} each")
    fit_s = clock.ends[-1] - clock.started
    per_epoch = n_batches * BATCH
    steady = (per_epoch * (epochs - 1) / (clock.ends[-1] - clock.ends[0])
              if epochs > 1 else None)
    return {"fit_s": fit_s, "images_per_s": per_epoch * epochs / fit_s,
            "steady_images_per_s": steady, "epochs": epochs, "jit_compile": jit,
            "best_epoch": clock.best[1], "val_loss": clock.val_loss,
            "threads": [tf.config.threading.get_inter_op_parallelism_threads(),
                        tf.config.threading.get_intra_op_parallelism_threads()],
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
            "version": tf.__version__, "keras": keras.__version__}


def main() -> None:
    kind, epochs, jit = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    images = int(sys.argv[4]) if len(sys.argv) > 4 else None
    if kind not in ("step", "stage"):
        sys.exit(f"usage: {__doc__.splitlines()[2].strip()}")
    sys.stdout.write(json.dumps(measure(kind, epochs, jit, images)) + "\n")


if __name__ == "__main__":
    main()
