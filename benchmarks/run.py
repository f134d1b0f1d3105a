"""Benchmarks: every row a ratio against a reference measured in the same run.

    python benchmarks/run.py [--out benchmarks/results.json] [--accuracy]

Needs the pipeline's data (run `dvc repro` first) and, for the CNN rows, PyTorch
(`pip install -e '.[bench]'`). Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from jaxpipe.data.idx import read_idx
from jaxpipe.data.inputs import Inputs
from jaxpipe.data.prepare import PrepareConfig, prepare_images
from jaxpipe.data.raw import MNIST_FILES, read_mnist
from jaxpipe.data.tables import (
    LABEL_COLUMN,
    Dataset,
    Split,
    load_dataset,
    load_images,
    write_dataset,
)
from jaxpipe.models import linreg, logreg, mlp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import breakdown  # noqa: E402
import cnn as cnn_bench  # noqa: E402
import writeups  # noqa: E402
from pipeline import (  # noqa: E402
    bench_overhead,
    bench_pipeline,
    bench_stage,
    startup_split,
)

DATA = ROOT / "data"


def cpu_model() -> dict:
    """The CPU a run measured on (figures differ between machines: name it with them)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), platform.processor() or platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines()
                      if line.startswith("flags")), []))
    return {"cpu": name, "avx2": "avx2" in flags, "avx512f": "avx512f" in flags}


def timed(fn, *args, repeats: int = 3, **kwargs) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls, and the last result."""
    best, out = np.inf, None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - started)
    return best, out


def measured(command: list[str]) -> dict:
    """Run one measurement in a fresh process; its last line of output, as JSON."""
    proc = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_cnn(rounds: int, steps: int, accuracy: bool) -> dict:
    """jaxpipe's CNN step vs the plain Flax step, PyTorch (eager, compiled) and Keras (XLA
    off and on), in steady state, interleaved rounds, each measurement in a fresh process.
    Keras trains ``steps`` batches an epoch for 3 epochs and is timed from the second."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["cnn_mnist"]
    options = json.dumps(params.get("compiler_options") or {})
    commands = {variant: ["benchmarks/cnn.py", variant, str(steps), opts] for variant, opts in (
        ("jaxpipe", options), ("plain_flax", "{}"), ("torch", "{}"), ("torch_compile", "{}"))}
    for key, jit in (("keras", "0"), ("keras_xla", "1")):
        commands[key] = ["benchmarks/keras_ref.py", "step", "3", jit, str(steps * 64)]
    runs: dict[str, list[dict]] = {k: [] for k in commands}
    for _ in range(rounds):
        for variant, command in commands.items():
            result = measured(command)
            if variant.startswith("keras"):
                result["images_per_s"] = result["steady_images_per_s"]
            runs[variant].append(result)
    rate = {k: statistics.median(r["images_per_s"] for r in v) for k, v in runs.items()}
    keras_best = max(("keras", "keras_xla"), key=rate.__getitem__)
    ratios = [j["images_per_s"] / t["images_per_s"] for j, t in zip(runs["jaxpipe"], runs["torch"],
                                                                     strict=True)]
    peak = cnn_bench.matmul_peak()
    out = {"images_per_s": rate, "jaxpipe_vs_torch": statistics.median(ratios),
           "jaxpipe_vs_torch_per_round": ratios,
           "plain_flax_vs_torch": rate["plain_flax"] / rate["torch"],
           "keras_best": keras_best, "jaxpipe_vs_keras": rate["jaxpipe"] / rate[keras_best],
           "jaxpipe_vs_torch_compile": rate["jaxpipe"] / rate["torch_compile"],
           "compile_s": {k: statistics.median(r["compile_s"] for r in runs[k])
                         for k in ("jaxpipe", "plain_flax", "torch_compile")},
           "gflops_jaxpipe": rate["jaxpipe"] * 28e6 / 1e9, "matmul_peak_gflops": peak,
           "fraction_of_peak": rate["jaxpipe"] * 28e6 / 1e9 / peak,
           "torch": {k: runs["torch"][0][k] for k in ("threads", "version")}}
    if accuracy:
        mnist = load_dataset(DATA / "prepared" / "mnist")
        train, test = mnist.split("train"), mnist.split("test")
        out["torch_test_accuracy_10_epochs"] = cnn_bench.torch_train_accuracy(
            train.x, train.y, test.x, test.y, params["epochs"], params["batch_size"],
            params["seed"])
    return out


def bench_logreg() -> dict:
    """System 1: jaxpipe's compiled loop vs the write-up's loop vs scikit-learn's fit."""
    from sklearn.linear_model import LogisticRegression
    data = load_dataset(DATA / "prepared" / "mobile_binary")
    train = data.split("train")
    cfg = logreg.Config(steps=100, lr=0.1, l2=0.1, w_init=1e-5, c_init=1.0)

    def ours():
        return np.asarray(logreg.fit(cfg, data).history["train_loss"])

    compile_s, _ = timed(ours, repeats=1)
    ours_s, losses = timed(ours, repeats=5)
    writeup_s, ref = timed(writeups.logreg_loop, train.x, train.y, repeats=1)
    sk_s, _ = timed(lambda: LogisticRegression().fit(train.x, train.y), repeats=5)
    return {"jaxpipe_s": ours_s, "first_call_s": compile_s, "writeup_s": writeup_s,
            "sklearn_fit_s": sk_s, "speedup_vs_writeup": writeup_s / ours_s,
            "speedup_vs_sklearn": sk_s / ours_s,
            "max_loss_diff_vs_writeup": float(np.max(np.abs(losses - np.asarray(ref))))}


def bench_xor_linreg() -> dict:
    """Systems 2 and 3: whole compiled loops vs the write-ups' step-at-a-time loops."""
    import jax
    x4 = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y4 = np.array([0, 1, 1, 0])
    xor = Dataset(Path("xor"), {"train": Split(x4, y4, ["x0", "x1"])},
                  Inputs(("x0", "x1"), (0.0, 0.0), (1.0, 1.0), "y", "scaled", classes=2))
    cfg = mlp.Config()
    mlp.fit(cfg, xor)
    ours_s, fit = timed(mlp.fit, cfg, xor, repeats=5)
    info = fit.info
    eager_s, eager_steps = timed(writeups.xor_loop, writeups.xor_step, repeats=1)
    jitted = jax.jit(writeups.xor_step)
    writeups.xor_loop(jitted, max_steps=10)
    jit_s, _ = timed(writeups.xor_loop, jitted, repeats=3)
    lin_data = load_dataset(DATA / "prepared" / "linear")
    lin = lin_data.split("train")
    lcfg = linreg.Config()
    linreg.fit(lcfg, lin_data)
    lin_s, _ = timed(lambda: jax.block_until_ready(linreg.fit(lcfg, lin_data).params),
                     repeats=3)
    sample = 500  # the write-up loop is slow: time 500 of its 5,000 steps, scale up
    lin_writeup_s, _ = timed(writeups.linreg_loop, lin.x, lin.y, sample, repeats=1)
    lin_writeup_s *= lcfg.steps / sample
    return {"xor": {"jaxpipe_s": ours_s, "steps": info["steps"], "writeup_eager_s": eager_s,
                    "writeup_eager_steps": eager_steps, "writeup_jitted_step_s": jit_s,
                    "speedup_vs_writeup": eager_s / ours_s,
                    "writeup_jit_vs_eager": eager_s / jit_s},
            "linreg": {"jaxpipe_s": lin_s, "writeup_s_estimated": lin_writeup_s,
                       "speedup_vs_writeup": lin_writeup_s / lin_s}}


def bench_mnist_io() -> dict:
    """IDX -> Parquet (prepare) and Parquet -> NumPy, against decoding the raw IDX files."""
    raw = DATA / "raw" / "mnist"
    decode_s, _ = timed(lambda: {k: (read_idx(raw / a), read_idx(raw / b))
                                 for k, (a, b) in MNIST_FILES.items()})
    cfg = PrepareConfig(kind="images", target="label", val_size=0.2, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        def prepare():
            parts = read_mnist(raw)
            write_dataset(Path(tmp), *prepare_images(*parts["train"], *parts["test"], cfg))
        prepare_s, _ = timed(prepare, repeats=2)
        load_s, _ = timed(lambda: [(load_images(t), t[LABEL_COLUMN].to_numpy()) for t in (
            pq.read_table(Path(tmp) / f"{s}.parquet") for s in ("train", "val", "test"))])
        model_ready_s, _ = timed(lambda: load_dataset(Path(tmp)))
    return {"idx_decode_s": decode_s, "prepare_s": prepare_s, "parquet_load_s": load_s,
            "load_vs_idx_decode": load_s / decode_s, "load_split_float32_s": model_ready_s}


def table(results: dict) -> str:
    c, st, lg, xl, io, ov = (results[k] for k in ("cnn", "stage", "logreg", "xor_linreg",
                                                  "mnist_io", "overhead"))
    kb = st.get("keras_best", "keras")

    def stage_row(ref: str, label: str, mine: str = "jaxpipe") -> tuple[str, str, str]:
        ours, theirs = st[mine], st[ref]
        what = ("train@cnn_mnist stage" if mine == "jaxpipe"
                else "the stage, XLA's default convolution (CPU-dependent bytes),")
        return (f"{what} vs {label}: whole / steady",
                f"{st[f'{mine}_vs_{ref}']:.2f}x",
                f"steady {st.get(f'{mine}_vs_{ref}_steady', float('nan')):.2f}x; "
                f"{ours['images_per_s']:.0f} vs {theirs['images_per_s']:.0f} img/s whole, "
                f"{ours['steady_images_per_s'] or 0:.0f} vs "
                f"{theirs['steady_images_per_s'] or 0:.0f} steady; process "
                f"{ours['wall_s']:.1f} vs {theirs['wall_s']:.1f} s")

    m = results["machine"]
    rows = [
        ("CPU of this run", m["cpu"], f"AVX2 {m.get('avx2')}, AVX-512 {m.get('avx512f')}, "
         f"{m['cores']} cores, Python {m['python']}"),
        stage_row(kb, f"Keras ({'XLA' if kb == 'keras_xla' else 'no XLA'}, the faster)"),
        stage_row("torch", "PyTorch eager"),
        stage_row("torch_compile", "torch.compile"),
        stage_row(kb, "Keras (the faster)", "jaxpipe_native"),
        stage_row("torch", "PyTorch eager", "jaxpipe_native"),
        (f"CNN step, jaxpipe vs Keras ({'XLA' if c['keras_best'] == 'keras_xla' else 'no XLA'})",
         f"{c['jaxpipe_vs_keras']:.2f}x",
         f"{c['images_per_s']['jaxpipe']:.0f} vs {c['images_per_s'][c['keras_best']]:.0f} "
         f"img/s (Keras XLA off {c['images_per_s']['keras']:.0f}, on "
         f"{c['images_per_s']['keras_xla']:.0f})"),
        ("CNN step, jaxpipe vs PyTorch eager", f"{c['jaxpipe_vs_torch']:.2f}x",
         f"{c['images_per_s']['jaxpipe']:.0f} vs {c['images_per_s']['torch']:.0f} img/s"),
        ("CNN step, jaxpipe vs torch.compile", f"{c['jaxpipe_vs_torch_compile']:.2f}x",
         f"{c['images_per_s']['torch_compile']:.0f} img/s, "
         f"compile {c['compile_s']['torch_compile']:.0f} s"),
        ("CNN train, plain Flax vs PyTorch", f"{c['plain_flax_vs_torch']:.2f}x",
         f"{c['images_per_s']['plain_flax']:.0f} img/s"),
        ("CNN share of matmul peak", f"{c['fraction_of_peak']:.0%}",
         f"{c['gflops_jaxpipe']:.0f} of {c['matmul_peak_gflops']:.0f} GFLOP/s"),
        ("CNN compile (first step)", f"{c['compile_s']['jaxpipe']:.2f} s", ""),
        ("logreg_mobile vs write-up loop", f"{lg['speedup_vs_writeup']:.0f}x",
         f"{lg['jaxpipe_s'] * 1e3:.2f} ms vs {lg['writeup_s'] * 1e3:.0f} ms"),
        ("logreg_mobile vs sklearn fit", f"{lg['speedup_vs_sklearn']:.1f}x",
         f"sklearn {lg['sklearn_fit_s'] * 1e3:.2f} ms"),
        ("xor_mlp vs write-up loop", f"{xl['xor']['speedup_vs_writeup']:.0f}x",
         f"{xl['xor']['jaxpipe_s'] * 1e3:.2f} ms, {xl['xor']['steps']} steps"),
        ("linreg_sgd vs write-up loop", f"{xl['linreg']['speedup_vs_writeup']:.0f}x",
         f"{xl['linreg']['jaxpipe_s'] * 1e3:.1f} ms"),
        ("MNIST Parquet load vs IDX decode", f"{io['load_vs_idx_decode']:.2f}x",
         f"{io['parquet_load_s'] * 1e3:.0f} vs {io['idx_decode_s'] * 1e3:.0f} ms"),
        ("MNIST prepare (IDX -> Parquet)", f"{io['prepare_s']:.2f} s", ""),
        ("short CNN stage, compilation cache off/warm", f"{ov['cache_speedup']:.2f}x",
         f"{ov['train_stage_s']:.2f} s vs {ov['train_stage_cached_s']:.2f} s"),
    ]
    if "noop_dvc_repro_s" in ov:
        rows.append(("no-op dvc repro (this checkout)", f"{ov['noop_dvc_repro_s']:.2f} s", ""))
    if "profile" in results:
        pr, js, ts = results["profile"], results["profile"]["jax_step"], \
            results["profile"]["torch_step"]
        shares = sorted(pr["stage"]["shares"].items(), key=lambda kv: -kv[1])
        rows += [(f"train@cnn_mnist by phase ({pr['stage']['epochs']} epochs, "
                  f"{pr['stage']['wall_s']:.1f} s)", f"{shares[0][1]:.0%}",
                  ", ".join(f"{k} {v:.0%}" for k, v in shares)),
                 ("CNN step traced: wall / XLA span / op time", f"{js['step_ms']:.1f} ms",
                  f"{js['xla_span_ms']:.1f} / {js['op_cpu_ms']:.1f} ms; " + ", ".join(
                      f"{k} {v:.1f}" for k, v in js["by_kind_ms"].items())),
                 ("PyTorch step traced: top operators (own time)",
                  f"{ts['step_ms_profiled']:.1f} ms", ", ".join(
                      f"{k} {v:.1f}" for k, v in list(ts["top_ops_self_ms"].items())[:6]))]
    if "pipeline" in results:
        pl = results["pipeline"]
        sp = startup_split(pl, results["overhead"]["jax_init_s"])
        rows += [("dvc repro from scratch (cold compilation cache)",
                  f"{pl['from_scratch_s']:.0f} s", ""),
                 ("dvc repro --force (warm cache)", f"{pl['forced_warm_cache_s']:.0f} s", ""),
                 ("no-op dvc repro (workspace)", f"{pl['noop_s']:.1f} s", ""),
                 ("from-scratch repro: start-up / work",
                  f"{sp['startup_share']:.0%}",
                  f"start-up {sp['startup_s']:.0f} s (imports {sp['imports_s']:.0f}, JAX start "
                  f"{sp['jax_start_s']:.0f}, compilation {sp['compilation_s']:.0f}) of "
                  f"{pl['from_scratch_s']:.0f} s over {sp['stages']} stages; work and dvc "
                  f"{sp['work_s']:.0f} s"),
                 ("stage script imports (slowest)", f"{max(pl['stage_import_s'].values()):.2f} s",
                  ", ".join(f"{k} {v:.2f}" for k, v in pl["stage_import_s"].items()))]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:>9}  {c_}" for a, b, c_ in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--stage-rounds", type=int, default=2)
    parser.add_argument("--stage-epochs", type=int, default=0,
                        help="epochs of the whole-stage rows (default: params.yaml's)")
    parser.add_argument("--profile-epochs", type=int, default=3,
                        help="epochs of the stage's phase profile")
    parser.add_argument("--pipeline", action="store_true",
                        help="also time the whole pipeline from scratch in a throw-away copy")
    parser.add_argument("--accuracy", action="store_true",
                        help="also train the PyTorch twin for the full epochs")
    args = parser.parse_args()
    if not (DATA / "prepared" / "mnist").is_dir():
        sys.exit("error: data/prepared/mnist not found: run `dvc repro` first")
    results = {"machine": {**cpu_model(), "cores": os.cpu_count(),
                           "python": platform.python_version()}}
    for name, fn in (("cnn", lambda: bench_cnn(args.rounds, args.steps, args.accuracy)),
                     ("stage", lambda: bench_stage(args.stage_rounds, args.stage_epochs)),
                     ("logreg", bench_logreg), ("xor_linreg", bench_xor_linreg),
                     ("mnist_io", bench_mnist_io), ("overhead", bench_overhead),
                     ("profile", lambda: breakdown.run(args.profile_epochs, 200))):
        results[name] = fn()
        sys.stderr.write(f"{name}: done\n")
    if args.pipeline:
        mirror = os.environ.get("JAXPIPE_MIRROR")
        results["pipeline"] = bench_pipeline(Path(mirror).resolve() if mirror else None)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
