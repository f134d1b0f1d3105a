"""CNN training throughput: jaxpipe vs a plain Flax loop vs PyTorch eager, same network.

Same architecture, batch size, optimizer (Adam 1e-3) and data for all three. Throughput is
measured after compilation (the first step is timed separately as compile time).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpipe.models import cnn


class PlainCNN(nnx.Module):
    """The write-up's network in idiomatic Flax (nnx.Conv everywhere): the 'before'."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.fc1 = nnx.Linear(7 * 7 * 64, 256, rngs=rngs)
        self.fc2 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.avg_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
        x = nnx.relu(self.fc1(x.reshape(x.shape[0], -1)))
        return nnx.log_softmax(self.fc2(x))


def jax_throughput(x: np.ndarray, y: np.ndarray, steps: int, batch: int, plain: bool,
                   options: dict[str, str | bool | list[str]]) -> dict:
    """Images/s of the training step (jaxpipe's, or the plain one) after compilation."""
    if plain:  # the plain loop's Adam: the learning rate a constant of the step
        graphdef, params = nnx.split(PlainCNN(nnx.Rngs(0)), nnx.Param)
        tx = optax.adam(1e-3)
        opt_state = tx.init(params)
    else:  # the stage's: the learning rate in the optimizer's state
        graphdef, params = cnn.init(0)
        tx, opt_state = cnn.net.optimizer(), cnn.net.optimizer_state(params, 1e-3)
    compiled = cnn.compiled_steps(cnn.xla_options(options))
    # the stage's dispatch: STEPS_PER_CALL steps a call (the plain loop: one a call)
    per_call = 1 if plain else cnn.loop.STEPS_PER_CALL
    step = compiled.indexed if plain else compiled.scanned
    x_dev, y_dev = jnp.asarray(x), jnp.asarray(y)
    calls = max(steps // per_call, 2)
    idx = jnp.arange(calls * per_call * batch).reshape(calls, per_call, batch) % len(x)
    if plain:
        idx = idx[:, 0]
    started = time.perf_counter()
    params, opt_state, loss = step(graphdef, tx, params, opt_state, x_dev, y_dev, idx[0])
    loss.block_until_ready()
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(1, calls):
        params, opt_state, loss = step(graphdef, tx, params, opt_state, x_dev, y_dev, idx[i])
    loss.block_until_ready()
    return {"images_per_s": (calls - 1) * per_call * batch / (time.perf_counter() - started),
            "compile_s": compile_s}


def torch_net():
    import torch.nn as tnn
    return tnn.Sequential(
        tnn.Conv2d(1, 32, 3, padding=1), tnn.ReLU(), tnn.AvgPool2d(2),
        tnn.Conv2d(32, 64, 3, padding=1), tnn.ReLU(), tnn.AvgPool2d(2), tnn.Flatten(),
        tnn.Linear(7 * 7 * 64, 256), tnn.ReLU(), tnn.Linear(256, 10), tnn.LogSoftmax(dim=1))


def torch_footing(net, *arrays, best: bool = True):
    """PyTorch's fastest eager set-up found here: channels-last layout for the network and its
    inputs, and denormals flushed to zero (as XLA's CPU backend does). ``best=False`` keeps the
    default NCHW set-up, to compare: ``python benchmarks/cnn.py torch_nchw 150 '{}'`` against
    ``torch 150 '{}'``, each in its own process."""
    import torch
    if not best:
        return net, [torch.from_numpy(_fresh(a)) for a in arrays]
    torch.set_flush_denormal(True)
    net = net.to(memory_format=torch.channels_last)
    return net, [torch.from_numpy(_fresh(a)).contiguous(memory_format=torch.channels_last)
                 for a in arrays]


def _fresh(x: np.ndarray) -> np.ndarray:
    """A fresh, owned, C-contiguous NCHW copy: PyTorch's best footing. Arrays straight from
    Parquet are views of Arrow buffers, on which PyTorch eager measured 1,800-2,500 images/s
    against 3,200 on a fresh copy."""
    return np.array(x.transpose(0, 3, 1, 2), order="C", copy=True)


def torch_throughput(x: np.ndarray, y: np.ndarray, steps: int, batch: int,
                     compiled: bool = False, best: bool = True) -> dict:
    """Images/s of the same network in PyTorch on the CPU: eager, or ``torch.compile``d
    (its first step, which compiles, is timed apart); ``best``: see ``torch_footing``."""
    import torch
    torch.manual_seed(0)
    net, (xt,) = torch_footing(torch_net(), x, best=best)
    model = torch.compile(net) if compiled else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    yt = torch.from_numpy(y.astype(np.int64))
    n = len(x)

    def one(i: int) -> None:
        sl = torch.arange(i * batch, (i + 1) * batch) % n
        opt.zero_grad()
        torch.nn.functional.nll_loss(model(xt[sl]), yt[sl]).backward()
        opt.step()

    warm = 3 if compiled else 1  # torch.compile may compile again on its second call
    started = time.perf_counter()
    for i in range(warm):
        one(i)
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(warm, steps):
        one(i)
    return {"images_per_s": (steps - warm) * batch / (time.perf_counter() - started),
            "compile_s": compile_s, "threads": torch.get_num_threads(),
            "version": torch.__version__}


def _torch_epoch(model, opt, xt, yt, batch: int, gen) -> None:
    """One shuffled epoch of Adam steps (drop remainder), as the jaxpipe stage trains."""
    import torch
    perm = torch.randperm(len(xt), generator=gen)
    for i in range(len(xt) // batch):
        sl = perm[i * batch:(i + 1) * batch]
        opt.zero_grad()
        torch.nn.functional.nll_loss(model(xt[sl]), yt[sl]).backward()
        opt.step()


def torch_train_accuracy(x, y, x_test, y_test, epochs: int, batch: int, seed: int) -> float:
    """Train the PyTorch twin for ``epochs`` (shuffled, drop remainder) and score the test set."""
    import torch
    torch.manual_seed(seed)
    net, (xt,) = torch_footing(torch_net(), x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    yt = torch.from_numpy(y.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        _torch_epoch(net, opt, xt, yt, batch, gen)
    with torch.no_grad():
        test = torch_footing(net, x_test)[1][0]
        pred = torch.cat([net(test[i:i + 1000]).argmax(1) for i in range(0, len(test), 1000)])
    return float((pred.numpy() == y_test).mean())


def torch_stage(train_x, train_y, val_x, val_y, epochs: int, batch: int, seed: int,
                compiled: bool) -> dict:
    """The PyTorch twin of the whole ``train@cnn_mnist`` fit: every epoch shuffled, trained
    (drop remainder), validated on the val split in batches of 1,000, the best-validation
    parameters copied; timed from first step to last copy (``compiled``: torch.compile)."""
    import copy

    import torch
    torch.manual_seed(seed)
    net, (xt, xv) = torch_footing(torch_net(), train_x, val_x)
    model = torch.compile(net) if compiled else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    yt, yv = torch.from_numpy(train_y.astype(np.int64)), torch.from_numpy(val_y.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    best, history, ends = (np.inf, 0, None), [], []
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        _torch_epoch(model, opt, xt, yt, batch, gen)
        with torch.no_grad():
            val = float(sum(torch.nn.functional.nll_loss(model(xv[i:i + 1000]), yv[i:i + 1000],
                                                         reduction="sum")
                            for i in range(0, len(xv), 1000))) / len(xv)
        history.append(val)
        if val < best[0]:
            best = (val, epoch, copy.deepcopy(net.state_dict()))
        ends.append(time.perf_counter() - started)
    fit_s = time.perf_counter() - started
    per_epoch = (len(xt) // batch) * batch
    steady = per_epoch * (epochs - 1) / (ends[-1] - ends[0]) if epochs > 1 else None
    return {"fit_s": fit_s, "images_per_s": epochs * per_epoch / fit_s,
            "steady_images_per_s": steady, "val_loss": history, "best_epoch": best[1],
            "threads": torch.get_num_threads()}


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a large float32 matmul in JAX on this machine (the best of ``repeats``)."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)).astype(np.float32))
    f = jax.jit(lambda m: m @ m)
    f(a).block_until_ready()
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def main() -> None:
    """``python benchmarks/cnn.py VARIANT STEPS OPTIONS_JSON``: one measurement, as JSON
    (VARIANT jaxpipe, plain_flax, torch, torch_compile, torch_nchw; or torch_stage,
    torch_compile_stage with STEPS read as epochs).

    Each measurement runs in its own process, so neither framework's thread pool (JAX's,
    PyTorch's OpenMP) is left spinning while the other is timed.
    """
    import json
    import sys
    from pathlib import Path

    from jaxpipe.data.tables import load_dataset

    variant, steps, options = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    data = load_dataset(Path(__file__).resolve().parents[1] / "data/prepared/mnist")
    train = data.split("train")
    if variant in ("torch_stage", "torch_compile_stage"):  # steps: epochs here
        val = data.split("val")
        result = torch_stage(train.x, train.y, val.x, val.y, steps, 64, 0,
                             variant == "torch_compile_stage")
    elif variant in ("torch", "torch_compile", "torch_nchw"):
        result = torch_throughput(train.x, train.y, steps, 64, variant == "torch_compile",
                                  best=variant != "torch_nchw")
    else:
        result = jax_throughput(train.x, train.y, steps, 64, variant == "plain_flax", options)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
