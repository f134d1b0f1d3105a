"""Whole-stage and whole-pipeline timings: train@cnn_mnist against its PyTorch twins, stage
start-up, the compilation cache, from-scratch and no-op `dvc repro` (for benchmarks/run.py)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from jaxpipe.data.tables import load_dataset

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def run_s(cmd: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - started



def cnn_stage(tmp: str | Path, **overrides: object) -> list[str]:
    """The ``train@cnn_mnist`` command as dvc runs it, with params.yaml's ``train.cnn_mnist``
    changed by ``overrides`` (in a params file under ``tmp``) and its outputs and ``--timing``
    JSON (``t.json``) under ``tmp``."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["cnn_mnist"].update(overrides)
    (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(params))
    return [sys.executable, "stages/train.py", "cnn_mnist", "--data", str(DATA / "prepared" /
            "mnist"), "--out", f"{tmp}/m.safetensors", "--history", f"{tmp}/h.csv",
            "--timing", f"{tmp}/t.json", "--params", f"{tmp}/params.yaml"]


def bench_overhead() -> dict:
    """No-op `dvc repro`, and a short train@cnn_mnist stage (one epoch of 2,048 images: mostly
    start-up) with jaxpipe's compilation cache off and warm."""
    out = {"import_s": run_s([sys.executable, "-c", "import jaxpipe.train"]),
           "jax_init_s": run_s([sys.executable, "-c",
                                 "import jax; jax.numpy.zeros(1).block_until_ready()"])}
    status = subprocess.run(["dvc", "status"], cwd=ROOT, capture_output=True, text=True)
    if "up to date" in status.stdout:
        out["noop_dvc_repro_s"] = run_s(["dvc", "repro"])
    with tempfile.TemporaryDirectory() as tmp:  # a short CNN stage: mostly start-up
        stage = cnn_stage(tmp, epochs=1, max_train_images=2048)
        bare = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
        off = {**bare, "JAXPIPE_COMPILATION_CACHE": "0"}
        cached = {**bare, "JAX_COMPILATION_CACHE_DIR": f"{tmp}/jaxcache"}  # jaxpipe's defaults
        out["train_stage_s"] = min(run_s(stage, off) for _ in range(2))
        run_s(stage, cached)  # fill the cache
        out["train_stage_cached_s"] = min(run_s(stage, cached) for _ in range(2))
    out["cache_speedup"] = out["train_stage_s"] / out["train_stage_cached_s"]
    return out



def bench_pipeline(mirror: Path | None) -> dict:
    """The whole pipeline from scratch in a throw-away copy (``jaxpipe.tools.workspace``), as a
    user runs it: cold (empty compilation cache), forced again warm, then a no-op; and each
    stage script's import time (``--help`` exits right after its imports)."""
    from jaxpipe.tools.workspace import dvc, make_workspace

    out: dict = {"stage_import_s": {}}
    for script in sorted((ROOT / "stages").glob("*.py")):
        out["stage_import_s"][script.stem] = min(
            run_s([sys.executable, str(script), "--help"]) for _ in range(2))
    with tempfile.TemporaryDirectory() as tmp:
        ws = make_workspace(ROOT, Path(tmp) / "ws", mirror=mirror)
        cache = {**os.environ, "JAX_COMPILATION_CACHE_DIR": f"{tmp}/jaxcache"}
        old = os.environ.copy()
        os.environ.update(cache)
        try:
            for key, args in (("from_scratch_s", ["repro"]), ("forced_warm_cache_s",
                              ["repro", "--force"]), ("noop_s", ["repro"])):
                started = time.perf_counter()
                proc = dvc(ws, *args, mirror=mirror)
                out[key] = time.perf_counter() - started
            out["stages"] = proc.stdout.count("didn't change") or None
        finally:
            os.environ.clear()
            os.environ.update(old)
    return out


def stage_counts() -> dict[str, int]:
    """How many stages of dvc.yaml run each stage script (foreach items counted)."""
    counts: dict[str, int] = {}
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        body = stage.get("do", stage)
        script = next(w for w in body["cmd"].split() if w.startswith("stages/"))
        key = Path(script).stem
        counts[key] = counts.get(key, 0) + len(stage.get("foreach", [None]))
    return counts


def startup_split(pipeline: dict, jax_init_s: float) -> dict:
    """The from-scratch repro's wall time split into start-up (each stage script's imports,
    JAX's start in the stages that compute with it, compilation: the cold run less the warm
    one) and the rest (dvc itself and the stages' work)."""
    counts = stage_counts()
    imports = sum(n * pipeline["stage_import_s"].get(k, 0.0) for k, n in counts.items())
    jax_start = (counts.get("train", 0) + counts.get("evaluate", 0)) * jax_init_s
    compile_s = max(pipeline["from_scratch_s"] - pipeline["forced_warm_cache_s"], 0.0)
    startup = imports + jax_start + compile_s
    return {"stages": sum(counts.values()), "imports_s": imports, "jax_start_s": jax_start,
            "compilation_s": compile_s, "startup_s": startup,
            "work_s": pipeline["from_scratch_s"] - startup,
            "startup_share": startup / pipeline["from_scratch_s"]}


STAGE_TWINS = {  # reference -> the command (less the epochs) of its twin of the whole fit
    "torch": ["benchmarks/cnn.py", "torch_stage", "{epochs}", "{{}}"],
    "torch_compile": ["benchmarks/cnn.py", "torch_compile_stage", "{epochs}", "{{}}"],
    "keras": ["benchmarks/keras_ref.py", "stage", "{epochs}", "0"],
    "keras_xla": ["benchmarks/keras_ref.py", "stage", "{epochs}", "1"],
}


# The opt-in trade of docs/reproducibility.md: XLA's default convolution (Eigen/oneDNN) and
# CPU-dependent math, faster here but other bytes on a CPU with other vector units
NATIVE = {"compiler_options": {"xla_cpu_experimental_ynn_fusion_type": ["LIBRARY_FUSION_TYPE_DOT"],
                               "xla_cpu_enable_platform_dependent_math": True}}


def _jaxpipe_stage(tmp: str, epochs: int, per_epoch: int, **overrides: object) -> dict:
    """One ``train@cnn_mnist`` run as dvc runs it: process wall, fit and steady rate."""
    wall = run_s(cnn_stage(tmp, epochs=epochs, **overrides))
    timing = json.loads((Path(tmp) / "t.json").read_text())
    ends = timing["epoch_end_seconds"]
    steady = per_epoch * (epochs - 1) / (ends[-1] - ends[0]) if epochs > 1 else None
    return {"wall_s": wall, "fit_s": timing["train_seconds"], "steady_images_per_s": steady}


def bench_stage(rounds: int, epochs: int, twins: tuple[str, ...] = tuple(STAGE_TWINS)) -> dict:
    """The whole ``train@cnn_mnist`` stage as dvc runs it (a fresh process: imports, JAX start,
    compilation, shuffling, per-epoch validation, best parameters kept) against its twins in
    PyTorch and Keras doing the same per-epoch work, interleaved, each in a fresh process;
    ``epochs`` from params unless given. Two rates each: whole (first step to last epoch's
    end) and steady (second epoch on), and the process's wall time."""
    epochs = epochs or yaml.safe_load((ROOT / "params.yaml").read_text())["train"][
        "cnn_mnist"]["epochs"]
    runs: dict[str, list[dict]] = {"jaxpipe": [], "jaxpipe_native": [],
                                   **{k: [] for k in twins}}
    n_train = len(load_dataset(DATA / "prepared" / "mnist").split("train").y)
    per_epoch = (n_train // 64) * 64
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            runs["jaxpipe"].append(_jaxpipe_stage(tmp, epochs, per_epoch))
            runs["jaxpipe_native"].append(_jaxpipe_stage(tmp, epochs, per_epoch, **NATIVE))
            for key in twins:
                command = [w.format(epochs=epochs) for w in STAGE_TWINS[key]]
                started = time.perf_counter()
                proc = subprocess.run([sys.executable, *command], cwd=ROOT, check=True,
                                      capture_output=True, text=True)
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                runs[key].append({**result, "wall_s": time.perf_counter() - started})
    out: dict = {"epochs": epochs, "images_trained": epochs * per_epoch}
    for key, values in runs.items():
        fit = statistics.median(r["fit_s"] for r in values)
        steady = [r["steady_images_per_s"] for r in values if r.get("steady_images_per_s")]
        out[key] = {"fit_s": fit, "wall_s": statistics.median(r["wall_s"] for r in values),
                    "images_per_s": epochs * per_epoch / fit,
                    "steady_images_per_s": statistics.median(steady) if steady else None}
    if "keras" in out and "keras_xla" in out:  # Keras on its best footing: the faster
        out["keras_best"] = max(("keras", "keras_xla"),
                                key=lambda k: out[k]["steady_images_per_s"] or 0)
    for mine in ("jaxpipe", "jaxpipe_native"):
        for ref in twins:
            ours, theirs = out[mine], out[ref]
            out[f"{mine}_vs_{ref}"] = ours["images_per_s"] / theirs["images_per_s"]
            out[f"{mine}_vs_{ref}_wall"] = theirs["wall_s"] / ours["wall_s"]
            if ours["steady_images_per_s"] and theirs["steady_images_per_s"]:
                out[f"{mine}_vs_{ref}_steady"] = (ours["steady_images_per_s"]
                                                   / theirs["steady_images_per_s"])
    return out
