"""The CNN's training gives the same bytes whatever the core count, and whatever thread
count or ISA cap the environment asks for: jaxpipe pins both before JAX starts."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import committed_tree

ROOT = Path(__file__).parents[1]
SCRIPT = """
import hashlib, sys
import numpy as np
from jaxpipe.artifacts import flatten
from jaxpipe.models import cnn
from jaxpipe.train import load_train_config
sys.path.insert(0, sys.argv[2])
from helpers import make_dataset

cfg = load_train_config(sys.argv[1], "cnn_mnist").config
rng = np.random.default_rng(0)
x = rng.uniform(size=(256, 28, 28, 1)).astype(np.float32)
y = (np.arange(256) % 10).astype(np.int32)
fit = cnn.fit(cnn.Config(epochs=2, batch_size=64, eval_batch_size=100,
                         compiler_options=cfg.compiler_options),
              make_dataset(train=(x, y), val=(x[:100], y[:100])))
flat = flatten(fit.params)
digest = hashlib.md5(b"".join(flat[k].tobytes() for k in sorted(flat))).hexdigest()
print(digest, fit.history["val_loss"])
"""


NO_CACHE: dict[str, str | None] = {"JAXPIPE_COMPILATION_CACHE": "0",
                                    "JAX_COMPILATION_CACHE_DIR": None,
                                    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": None}
_digests: dict[tuple, str] = {}  # fits without a cache, by set-up: tests share them


def _train(cpus: set[int], **env: str | None) -> str:
    """The digest of a small CNN fit in a fresh process; ``env`` values of None are unset.
    A set-up without a compilation cache (``NO_CACHE``: nothing carries over between runs)
    already trained in this test process is not trained again."""
    if env.get("JAXPIPE_COMPILATION_CACHE") != "0":
        return _fit(cpus, env)
    key = (frozenset(cpus), tuple(sorted(env.items())))
    if key not in _digests:
        _digests[key] = _fit(cpus, env)
    return _digests[key]


def _environ(env: dict[str, str | None]) -> dict[str, str]:
    """This process's environment with ``env`` applied (values of None unset)."""
    return {k: v for k, v in {**os.environ, **env}.items() if v is not None}


def _fit(cpus: set[int], env: dict[str, str | None]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(committed_tree() / "params.yaml"),
         str(ROOT / "tests")],
        capture_output=True, text=True, check=True, env=_environ(env),
        preexec_fn=lambda: os.sched_setaffinity(0, cpus), timeout=300)
    return proc.stdout.strip()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_cnn_training_is_identical_on_one_and_two_cores_and_any_requested_pool() -> None:
    two = sorted(os.sched_getaffinity(0))[:2]
    results = {
        "1 core": _train({two[0]}, **NO_CACHE),
        "2 cores": _train(set(two), **NO_CACHE),
        "asks 8 threads, AVX": _train(set(two), PJRT_NPROC="8",
                                      XLA_FLAGS="--xla_cpu_max_isa=AVX", **NO_CACHE),
    }
    assert len(set(results.values())) == 1, results
    assert hashlib.md5(b"").hexdigest() not in results["1 core"]


def test_the_persistent_compilation_cache_changes_no_result(tmp_path: Path) -> None:
    """jaxpipe turns JAX's compilation cache on by default: a warm cache gives the bytes a
    cold one (and no cache) gives."""
    cpus = set(sorted(os.sched_getaffinity(0))[:2])
    cache = tmp_path / "jax-cache"
    cold = _train(cpus, JAX_COMPILATION_CACHE_DIR=str(cache))
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) >= 3 and all(name.startswith("jit_") for name in entries), entries
    warm = _train(cpus, JAX_COMPILATION_CACHE_DIR=str(cache))
    off = _train(cpus, **NO_CACHE)  # the same set-up as the 2-core run above
    assert cold == warm == off


def test_the_cache_is_on_by_default_even_when_jax_is_imported_first(tmp_path: Path) -> None:
    """Stage scripts import jax before jaxpipe; JAX has read its settings from the
    environment by then, so jaxpipe sets the cache folder in JAX's config too: a train stage
    with nothing set fills ``$XDG_CACHE_HOME/jaxpipe/jax``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "JAXPIPE_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    code = ("import jax, jaxpipe\n"
            "jax.jit(lambda v: v * 2)(jax.numpy.ones(3)).block_until_ready()\n"
            "print(jax.config.jax_compilation_cache_dir)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True, timeout=120)
    cache = tmp_path / "xdg" / "jaxpipe" / "jax"
    assert proc.stdout.strip() == str(cache)
    assert any(p.name.startswith("jit_") for p in cache.iterdir())


def _has_avx512() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


EMULATED = pytest.mark.skipif(
    shutil.which("qemu-x86_64") is None or not _has_avx512(),
    reason="needs an AVX-512 host and qemu-user (apt-get install qemu-user) to run the same "
           "training on an emulated AVX2-only CPU")

FAMILIES = """
import dataclasses, hashlib, sys
import numpy as np
import jaxpipe
from jaxpipe import models
from jaxpipe.artifacts import flatten
sys.path.insert(0, sys.argv[1])
from helpers import make_dataset

rng = np.random.default_rng(0)
x = rng.normal(size=(300, 6)).astype(np.float32)
targets = {"binary": (x[:, 0] + x[:, 1] > 0).astype(np.int32),
           "multiclass": np.digitize(x[:, 0], [-0.5, 0.5]).astype(np.int32),
           "regression": (x @ np.arange(1.0, 7.0) + 5).astype(np.float32)}
for family in models.families():
    if family == "cnn":  # images: its own test
        continue
    module = models.load(family)
    short = {f.name: 40 for f in dataclasses.fields(module.Config) if f.name in ("steps",
                                                                              "max_steps")}
    cfg = module.Config(**short)
    data = make_dataset(train=(x, targets[module.TASK]), test=(x, targets[module.TASK]))
    fit = module.fit(cfg, data)
    flat = flatten(fit.params)
    pred = np.ascontiguousarray(module.predict(cfg, fit.params, x))
    digest = hashlib.md5(b"".join(np.ascontiguousarray(flat[k]).tobytes() for k in sorted(flat))
                         + pred.tobytes()).hexdigest()
    print(family, digest)
"""


@pytest.mark.e2e
@EMULATED
def test_every_other_family_trains_identically_on_a_cpu_without_avx512() -> None:
    """Every model family but the CNN (read from src/jaxpipe/models), trained and asked
    for predictions here and on an emulated Haswell: identical bytes. Measured before the
    fix: softmax's weight gradient (a product YNNPACK refused) went to oneDNN and differed."""
    env = {**os.environ, "JAXPIPE_COMPILATION_CACHE": "0"}
    here = subprocess.run([sys.executable, "-c", FAMILIES, str(ROOT / "tests")], env=env,
                          capture_output=True, text=True, check=True, timeout=300).stdout
    there = subprocess.run(["qemu-x86_64", "-cpu", "Haswell-v4", sys.executable, "-c",
                            FAMILIES, str(ROOT / "tests")], env=env, capture_output=True,
                           text=True, check=True, timeout=900).stdout
    from jaxpipe.models import families

    assert [line.split()[0] for line in here.splitlines()] == [
        f for f in families() if f != "cnn"]
    assert there == here


@pytest.mark.e2e
@EMULATED
def test_cnn_training_is_identical_on_a_cpu_without_avx512() -> None:
    """The same fit on this AVX-512 CPU and on an emulated Haswell (AVX2, no AVX-512):
    identical bytes, because every matrix product and convolution runs on YNNPACK with
    consistent arithmetic (params.yaml's compiler_options) and XLA's own code is capped at
    AVX2. Measured: Eigen/oneDNN's convolution, the default, adds in another order on the
    two CPUs."""
    here = _train(set(sorted(os.sched_getaffinity(0))[:1]), **NO_CACHE)
    proc = subprocess.run(  # the same set-up: no compilation cache on either side
        ["qemu-x86_64", "-cpu", "Haswell-v4", sys.executable, "-c", SCRIPT,
         str(committed_tree() / "params.yaml"), str(ROOT / "tests")],
        capture_output=True, text=True, check=True, env=_environ(NO_CACHE), timeout=900)
    assert proc.stdout.strip() == here
