"""``jaxpipe`` itself (the package's ``__init__``): the XLA flags importing it pins, and where
JAX's compilation cache lives."""

import os
import platform
from pathlib import Path

import pytest

import jaxpipe


def test_jaxpipe_caps_the_isa_and_keeps_the_other_xla_flags(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX512 --xla_foo=1 "
                       "--xla_cpu_enable_platform_dependent_math=true")
    jaxpipe._pin_cpu_numerics()
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert os.environ["XLA_FLAGS"] == (
            f"--xla_foo=1 --xla_cpu_max_isa={jaxpipe.XLA_ISA} "
            "--xla_cpu_enable_platform_dependent_math=false")  # consistent YNNPACK sums


def test_the_compilation_cache_lives_under_the_home_cache_by_default(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("jax.config.update", lambda *args: None)  # leave this process's JAX be
    jaxpipe._compilation_cache()
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / ".cache" / "jaxpipe" / "jax")
