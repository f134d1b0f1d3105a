"""jaxpipe: a reproducible DVC pipeline of small JAX models.

Importing the package pins what XLA's CPU results depend on, before JAX starts its backend,
so the same inputs give the same bytes on any x86-64 machine with AVX2:

- the intra-op thread count (``PJRT_NPROC``): XLA splits some reductions (Eigen's
  convolution weight gradient, a dot that contracts the batch) by the size of its thread
  pool, which otherwise follows the number of cores;
- the instruction-set cap (``--xla_cpu_max_isa=AVX2`` in ``XLA_FLAGS``): an AVX-512 machine
  runs XLA's AVX2 kernels;
- ``--xla_cpu_enable_platform_dependent_math=false``: XLA asks YNNPACK, which runs most
  matrix products, for results identical on every CPU (docs/reproducibility.md, "Across CPU
  models").

It also turns on JAX's persistent compilation cache in a user-level folder
(``$XDG_CACHE_HOME/jaxpipe/jax``, else ``~/.cache/jaxpipe/jax``; never a DVC output), so a
stage run again skips XLA compilation. The cache key covers the program, the compiler flags
and the backend, so a cached executable is the one compilation would give: results do not
change. ``JAX_COMPILATION_CACHE_DIR`` chooses another folder; ``JAXPIPE_COMPILATION_CACHE=0``
turns it off.
"""

import os as _os
import platform as _platform
import sys as _sys

__version__ = "0.1.0"

XLA_THREADS = 2
XLA_ISA = "AVX2"
# YNNPACK's consistent arithmetic: the same sums on every CPU one build runs on
# (docs/reproducibility.md)
XLA_PINS = {"--xla_cpu_enable_platform_dependent_math": "false"}


def _pin_cpu_numerics() -> None:
    _os.environ["PJRT_NPROC"] = str(XLA_THREADS)
    if _platform.machine().lower() in ("x86_64", "amd64"):
        pinned = {"--xla_cpu_max_isa": XLA_ISA, **XLA_PINS}
        flags = [f for f in _os.environ.get("XLA_FLAGS", "").split()
                 if f.split("=")[0] not in pinned]
        _os.environ["XLA_FLAGS"] = " ".join([*flags, *(f"{k}={v}" for k, v in pinned.items())])
    # JAX is looked up, never imported: a stage that does not use JAX must not load it
    xla_bridge = _sys.modules.get("jax._src.xla_bridge")
    if xla_bridge is not None:  # too late if a computation already started the backend
        if xla_bridge.backends_are_initialized():
            import logging

            logging.getLogger(__name__).warning(
                "JAX started before jaxpipe was imported: its CPU thread count and ISA cap "
                "are not pinned, so results may differ from other machines")


def _compilation_cache() -> None:
    if _os.environ.get("JAXPIPE_COMPILATION_CACHE", "1") == "0":
        return
    base = _os.environ.get("XDG_CACHE_HOME") or _os.path.join(_os.path.expanduser("~"), ".cache")
    _os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _os.path.join(base, "jaxpipe", "jax"))
    # every program, however quick to compile: the small models compile in well under 1 s
    _os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    jax = _sys.modules.get("jax")
    if jax is not None:  # JAX read its settings from the environment when imported
        jax.config.update("jax_compilation_cache_dir", _os.environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(_os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


_pin_cpu_numerics()
_compilation_cache()
