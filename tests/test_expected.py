"""The committed record of every output's hash and the CPU it came from (checks/outputs.yaml,
jaxpipe.tools.expected), and jaxpipe-repro-check comparing its first run with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_repro import FakeDvc, project

from jaxpipe.tools import expected, repro
from jaxpipe.tools.expected import compare, cpu, describe, read, write
from jaxpipe.tools.repro import Record
from jaxpipe.tools.workspace import make_workspace

ROOT = Path(__file__).parents[1]
CPUINFO = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold\n"
           "flags\t\t: fpu sse4_2 avx avx2 fma\n\nprocessor\t: 1\nmodel name\t: other\n")
OTHER = {"model": "AMD EPYC 7B13", "flags": ["avx2", "avx512f"]}
STAGES = {"download@d": ["data/raw/d"], "train@a": ["models/a.st", "plots/a.csv"],
          "report": []}
HASHES = {"data/raw/d": "0" * 32 + ".dir", "models/a.st": "1" * 32, "plots/a.csv": "2" * 32}


def recorded(tmp_path: Path, hashes: dict = HASHES, machine: dict = OTHER) -> dict:
    path = tmp_path / "checks" / "outputs.yaml"
    write(path, hashes, STAGES, "profiles/small.yaml", machine)
    return read(path)


def test_the_cpu_is_its_model_and_the_flags_its_kernels_are_chosen_by() -> None:
    assert cpu(CPUINFO) == {"model": "Intel(R) Xeon(R) Gold", "flags": ["avx2"]}
    assert describe(cpu(CPUINFO)) == "Intel(R) Xeon(R) Gold (avx2)"
    here = cpu()
    assert here["model"] and set(here["flags"]) <= set(expected.FLAGS)


def test_a_record_keeps_the_downloaded_data_apart(tmp_path: Path) -> None:
    record = recorded(tmp_path)
    assert record["cpu"] == OTHER and record["profile"] == "profiles/small.yaml"
    assert record["data"] == {"data/raw/d": HASHES["data/raw/d"]}
    assert record["outputs"] == {"models/a.st": "1" * 32, "plots/a.csv": "2" * 32}


def test_the_same_outputs_pass_with_the_recorded_cpu_named(tmp_path: Path) -> None:
    assert compare(recorded(tmp_path), HASHES, "profiles/small.yaml", cpu(CPUINFO)) == (
        None, "2/2 outputs as recorded on AMD EPYC 7B13 (avx2, avx512f)")


def test_a_mismatch_is_one_line_naming_the_output_and_both_cpus(tmp_path: Path) -> None:
    ours = {**HASHES, "models/a.st": "9" * 32, "plots/a.csv": "8" * 32}
    problem, detail = compare(recorded(tmp_path), ours, "profiles/small.yaml", cpu(CPUINFO))
    assert problem == (
        f"models/a.st and 1 more differ from checks/outputs.yaml: {'9' * 32} on Intel(R) "
        f"Xeon(R) Gold (avx2) here, {'1' * 32} on AMD EPYC 7B13 (avx2, avx512f) in the record "
        "(after a deliberate change: `jaxpipe-repro-check --record`)")
    assert detail == "0/2 outputs as recorded on AMD EPYC 7B13 (avx2, avx512f)"


def test_only_outputs_both_have_are_compared(tmp_path: Path) -> None:
    """A team's new model is not in the record; a removed one is not in the run."""
    ours = {"data/raw/d": HASHES["data/raw/d"], "models/a.st": "1" * 32, "models/new.st": "3"}
    assert compare(recorded(tmp_path), ours, "profiles/small.yaml", OTHER)[0] is None


@pytest.mark.parametrize("change, says", [
    ({"profile": "profiles/other.yaml"}, "not compared: profile profiles/other.yaml"),
    ({"data/raw/d": "7" * 32 + ".dir"}, "not compared: data/raw/d is other data"),
])
def test_another_profile_or_other_data_is_not_compared(tmp_path: Path, change: dict,
                                                       says: str) -> None:
    profile = change.pop("profile", "profiles/small.yaml")
    ours = {**HASHES, "models/a.st": "9" * 32, **change}
    problem, detail = compare(recorded(tmp_path), ours, profile, OTHER)
    assert problem is None and detail.startswith(says)


def test_the_committed_record_names_outputs_of_the_committed_pipeline(tmp_path: Path) -> None:
    """Read as DVC reads the committed project; the record's CPU is named in full."""
    from dvc.repo import Repo

    ws = make_workspace(ROOT, tmp_path / "ws", rev="HEAD")
    record = read(ws / expected.RECORD)
    with Repo(str(ws)) as dvc_repo:
        outs = {str(o.def_path) for s in dvc_repo.index.stages for o in s.outs}
    assert len(record["outputs"]) > 30 and set(record["outputs"]) | set(record["data"]) <= outs
    assert record["profile"] == "profiles/small.yaml" and (ws / record["profile"]).is_file()
    assert record["cpu"]["model"] and set(record["cpu"]["flags"]) <= set(expected.FLAGS)


def run(ws: Path, record: Record, monkeypatch: pytest.MonkeyPatch, fake: FakeDvc | None = None
        ) -> list[repro.Step]:
    monkeypatch.setattr(repro, "dvc", fake or FakeDvc(status="{}"))
    return repro.check(ws, None, "a", "lr", 0.5, None, record)


def first_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The hashes the stand-in dvc writes on its first run of ``project``."""
    fake = FakeDvc(status="{}")
    run(project(tmp_path / "first"), Record(None, None, "p", OTHER), monkeypatch, fake)
    return fake.locks[0]


def test_the_check_compares_its_first_run_with_the_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "first").mkdir()
    hashes = first_run(tmp_path, monkeypatch)
    record = {"cpu": OTHER, "profile": "p", "data": {},
              "outputs": {**hashes, "models/b.st": "f" * 32}}
    ws = project(tmp_path)
    steps = run(ws, Record(record, None, "p", cpu(CPUINFO)), monkeypatch)
    assert [s.name for s in steps][:2] == ["repro", "outputs as checks/outputs.yaml records"]
    assert not steps[1].ok and steps[1].problems == [
        f"models/b.st differs from checks/outputs.yaml: {hashes['models/b.st']} on Intel(R) "
        f"Xeon(R) Gold (avx2) here, {'f' * 32} on AMD EPYC 7B13 (avx2, avx512f) in the record "
        "(after a deliberate change: `jaxpipe-repro-check --record`)"]
    assert all(s.ok for s in steps[2:])


def test_record_writes_the_first_run_only_when_every_check_passes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "first").mkdir()
    hashes = first_run(tmp_path, monkeypatch)
    target = tmp_path / "rec" / "outputs.yaml"
    steps = run(project(tmp_path), Record(None, target, "p", OTHER), monkeypatch)
    assert all(s.ok for s in steps) and read(target)["outputs"] == hashes
    target.unlink()
    (tmp_path / "noisy").mkdir()
    run(project(tmp_path / "noisy"), Record(None, target, "p", OTHER), monkeypatch,
        FakeDvc(status="{}", noisy=("models/a.st",)))
    assert not target.exists()
