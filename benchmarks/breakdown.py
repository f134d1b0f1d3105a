"""Where the CNN stage's time goes: the stage by phase, the jitted step by XLA operation, and
the PyTorch twin's step by operator (for benchmarks/run.py, or on its own).

    python benchmarks/breakdown.py [--epochs 3] [--steps 200]   # prints JSON

- ``stage``: ``train@cnn_mnist`` run as dvc runs it, in a fresh process, with ``--timing``:
  seconds per phase (``jaxpipe.models.phase``), and the start-up before ``main`` (interpreter,
  imports, JAX) as the process wall time less the phases.
- ``jax_step``: one epoch of the stage's own training loop (``jaxpipe.models.cnn.loop``) on
  the real training set, traced by ``jax.profiler`` with the Python tracer off, after a
  warm-up epoch; each XLA operation's time per step, grouped by kind, and the share of the
  step's wall time that is not XLA executing (dispatch, waiting, Python).
- ``torch_step``: the PyTorch twin's steps (best footing, ``benchmarks/cnn.py``) under
  ``torch.profiler``, each operator's own CPU time per step, in its own process.
- ``keras_step``: the Keras twin's steps (``benchmarks/keras_ref.py step``, XLA off: oneDNN's
  kernels) with ``ONEDNN_VERBOSE=1``: each oneDNN primitive's median time per call and calls
  per step, to read beside ``jax_step``'s operations (each named with its HLO shape and the
  JAX operation it comes from).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline import cnn_stage

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "data" / "prepared" / "mnist"
TOP = 30  # operations listed by name; the rest are summed into their kind

# XLA:CPU thunk names -> kind of work (first match wins). Read from the compiled step's HLO
# (``jax.jit(...).lower(...).compile().as_text()``): the loop fusions compute the first
# convolution (nine shifted products, fused with its bias and ReLU, and again in the ReLU's
# gradient) and slice the padded input for its weight gradient.
KINDS = [("matmul (YNNPACK)", r"^ynn_fusion"), ("matmul", r"^dot|^custom-call|gemm"),
         ("convolution", r"convolution"), ("pooling, bias gradients", r"reduce-window"),
         ("layout copies", r"^copy|^transpose"),
         ("loop fusions: conv1, ReLU, slices", r"fusion"), ("other", r".")]


def kind_of(name: str) -> str:
    return next(k for k, pattern in KINDS if re.search(pattern, name))


def profile_stage(epochs: int) -> dict:
    """The whole stage in a fresh process, as dvc runs it, with its phase timings."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = cnn_stage(tmp, epochs=epochs)
        started = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        wall = time.perf_counter() - started
        timing = json.loads((Path(tmp) / "t.json").read_text())
    phases = timing["phases"]
    # the rest: the interpreter, imports and JAX's start before main, and the small steps
    # between phases (the loss checks, the history)
    phases["start-up and the rest"] = round(wall - sum(phases.values()), 4)
    return {"epochs": epochs, "wall_s": round(wall, 3), "phases_s": phases,
            "shares": {k: round(v / wall, 4) for k, v in phases.items()}}


def _events(trace_dir: Path) -> tuple[list[dict], dict[int, str]]:
    """The complete events of a perfetto trace, and each thread's name."""
    path = next(trace_dir.rglob("perfetto_trace.json.gz"))
    events = json.loads(gzip.open(path).read())
    events = events["traceEvents"] if isinstance(events, dict) else events
    threads = {e["tid"]: e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    return [e for e in events if e.get("ph") == "X"], threads


def _is_op(name: str, thread: str) -> bool:
    """An XLA operation (thunk) event: on an XLA thread, named like an HLO instruction."""
    return not thread.startswith("python") and re.match(r"^[a-z][\w.-]*$", name) is not None


def profile_jax_step() -> dict:
    """One traced epoch of the stage's loop, after a warm-up epoch, on the real data."""
    import jax

    from jaxpipe.data.tables import load_dataset
    from jaxpipe.models.cnn import loop, mesh, net, xla_options
    from jaxpipe.train import load_train_config

    cfg = load_train_config(ROOT / "params.yaml", "cnn_mnist").config
    options = xla_options(cfg.compiler_options)
    train = load_dataset(MNIST).split("train")
    grid = mesh.data_mesh(1)
    graphdef, params = net.init(cfg.seed)
    tx = net.optimizer()
    params, opt_state = mesh.replicated(grid, (params, net.optimizer_state(params, cfg.lr)))
    runner = loop.InMemory(grid, train.x, train.y, options)
    n_batches = len(train.y) // cfg.batch_size

    def epoch(i: int) -> float:
        nonlocal params, opt_state
        order = loop.batch_order(cfg.seed, i, len(train.y), cfg.batch_size)
        started = time.perf_counter()
        params, opt_state, _ = loop.run_epoch(runner.step, graphdef, tx, params, opt_state,
                                              runner.steps(order), n_batches, "profile")
        return time.perf_counter() - started

    epoch(1)  # compile and warm up
    with tempfile.TemporaryDirectory() as tmp:
        options_ = jax.profiler.ProfileOptions()
        options_.python_tracer_level = 0
        options_.host_tracer_level = 1  # level 2 (every thread-pool task) slows the step ~40%
        with jax.profiler.trace(tmp, create_perfetto_trace=True, profiler_options=options_):
            wall = epoch(2)
        events, threads = _events(Path(tmp))
    per_op: dict[str, float] = collections.defaultdict(float)
    span = dispatch = 0.0
    for e in events:
        name, thread = e["name"], threads.get(e.get("tid"), "")
        if name == "ThunkExecutor::Execute (wait for completion)":
            span += e["dur"]
        elif name.startswith("PjitFunction("):
            dispatch += e["dur"]
        elif _is_op(name, thread):
            per_op[name] += e["dur"]
    ms = 1e-3 / n_batches  # microseconds in all -> milliseconds per step
    # what each operation computes: its shape and the JAX operation it was lowered from
    hlo = runner.step.lower(graphdef, tx, params, opt_state, *next(runner.steps(
        loop.batch_order(cfg.seed, 3, len(train.y), cfg.batch_size)))).compile().as_text()
    source = {m[1]: f"{m[2]} {m[3].removeprefix('jit(_indexed_step)/')}" for m in re.finditer(
        r"^\s+%([\w.-]+) = (\S+) .*?op_name=\"([^\"]+)\"", hlo, re.M)}
    kinds: dict[str, float] = collections.defaultdict(float)
    for name, us in per_op.items():
        kinds[kind_of(name)] += us * ms
    step_ms = wall * 1e3 / n_batches
    top = sorted(per_op.items(), key=lambda kv: -kv[1])[:TOP]
    return {"steps": n_batches, "step_ms": round(step_ms, 3),
            "images_per_s": round(n_batches * cfg.batch_size / wall),
            "xla_span_ms": round(span * ms, 3),  # first operation to last, per step
            "python_dispatch_ms": round(dispatch * ms, 3),
            "op_cpu_ms": round(sum(per_op.values()) * ms, 3),  # summed over threads
            "by_kind_ms": {k: round(v, 3) for k, v in sorted(kinds.items(),
                                                              key=lambda kv: -kv[1])},
            "top_ops_ms": {k: round(v * ms, 3) for k, v in top},
            "top_ops_source": {k: source.get(k, "") for k, _ in top}}


def profile_keras_step(batches: int = 100) -> dict:
    """The Keras twin's step (XLA off) with oneDNN's verbose log: per primitive (kind,
    implementation, shapes), calls per step and the median milliseconds of a call, over 2
    epochs of ``batches`` steps (the first epoch's calls, which create the primitives,
    included: the median discards them)."""
    proc = subprocess.run([sys.executable, "benchmarks/keras_ref.py", "step", "2", "0",
                           str(batches * 64)], cwd=ROOT, capture_output=True, text=True,
                          check=True, env={**os.environ, "ONEDNN_VERBOSE": "1"})
    calls: dict[str, list[float]] = collections.defaultdict(list)
    for line in proc.stdout.splitlines() + proc.stderr.splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and len(fields) > 8 and fields[3] == "exec":
            key = f"{fields[5]} {fields[7]} {fields[-2]} ({fields[6]})"
            calls[key].append(float(fields[-1]))
    steps = 2 * batches
    rows = {k: {"calls_per_step": round(len(v) / steps, 2),
                "median_ms": round(statistics.median(v), 3),
                "ms_per_step": round(statistics.median(v) * len(v) / steps, 3)}
            for k, v in calls.items()}
    return {"steps": steps, "primitives": dict(sorted(rows.items(),
                                                      key=lambda kv: -kv[1]["ms_per_step"])),
            "onednn_ms_per_step": round(sum(r["ms_per_step"] for r in rows.values()), 3)}


def profile_torch_step(steps: int) -> dict:
    """The PyTorch twin's steps under torch.profiler (its own process: see ``main``)."""
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cnn as cnn_bench

    from jaxpipe.data.tables import load_dataset

    train = load_dataset(MNIST).split("train")
    torch.manual_seed(0)
    net, (xt,) = cnn_bench.torch_footing(cnn_bench.torch_net(), train.x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    yt = torch.from_numpy(train.y.astype(np.int64))
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(xt), generator=gen)

    def one(i: int) -> None:
        sl = perm[i * 64:(i + 1) * 64]
        opt.zero_grad()
        torch.nn.functional.nll_loss(net(xt[sl]), yt[sl]).backward()
        opt.step()

    for i in range(20):
        one(i)
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(20, 20 + steps):
            one(i)
    wall = time.perf_counter() - started
    rows = sorted(prof.key_averages(), key=lambda r: -r.self_cpu_time_total)[:TOP]
    return {"steps": steps, "step_ms_profiled": round(wall * 1e3 / steps, 3),
            "top_ops_self_ms": {r.key: round(r.self_cpu_time_total / 1e3 / steps, 3)
                                for r in rows}}


def run(epochs: int, steps: int) -> dict:
    """All three profiles, each in its own process."""
    out = {"stage": profile_stage(epochs)}
    for part in ("jax_step", "torch_step", "keras_step"):
        proc = subprocess.run([sys.executable, __file__, "--part", part, "--steps", str(steps)],
                              cwd=ROOT, check=True, capture_output=True, text=True)
        out[part] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the stage profile")
    parser.add_argument("--steps", type=int, default=200, help="PyTorch steps profiled")
    parser.add_argument("--part", choices=["jax_step", "torch_step", "keras_step"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "jax_step":
        result = profile_jax_step()
    elif args.part == "torch_step":
        result = profile_torch_step(args.steps)
    elif args.part == "keras_step":
        result = profile_keras_step()
    else:
        result = run(args.epochs, args.steps)
    sys.stdout.write(json.dumps(result, indent=None if args.part else 2) + "\n")


if __name__ == "__main__":
    main()
