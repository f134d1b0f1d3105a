"""Faults around DVC itself (issue 25), each with the real ``dvc`` in a copy of the repository:
a kill while a stage's outputs are renamed in, while DVC writes its cache or rewrites dvc.lock;
a cache whose disk fills after a stage succeeded; two ``dvc queue`` workers at once.

The kills are deterministic: a ``sitecustomize`` put on the processes' PYTHONPATH (``HOOK``)
holds the process at one chosen rename or write until the test SIGKILLs the whole process
group. Where the defence is DVC's own (its cache objects and run-cache entries are written to
a temp name, then renamed), the test says so and checks that the cache stays consistent and
that a plain retry repairs; jaxpipe's part (a stage's outputs staged, swapped in as a set,
its temps swept) is pinned by assertions that fail without it."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers import old_output_set

from jaxpipe.core.fileio import output_set
from jaxpipe.tools.workspace import GIT_ENV, dvc, git, make_workspace, ran_stages, set_params

ROOT = Path(__file__).parents[1]
SMALL = ROOT / "profiles" / "small.yaml"
# the root dvc.lock, not checks/dvc.lock (the environment check's, which DVC writes first)
ROOT_LOCK = r"(?<!checks)(^|/)dvc\.lock$"
TARGET = "evaluate@linreg_sgd"  # generate, prepare, train, evaluate: the cheapest chain (~8 s)
STAGES = ("train@linreg_sgd", "evaluate@linreg_sgd")
# the change the faulty runs make: 40,000 SGD steps write a 1 MB history (train: < 1 s)
NEW = {"train.linreg_sgd.steps": 40000}
OID = re.compile(r"[0-9a-f]{32}")
WAIT_S = 120

HOOK = '''"""Test hook (tests/test_dvc_faults.py): hold this process at one rename or write."""
import builtins, json, os, re, sys, time

_spec = os.environ.get("JAXPIPE_FAULTS_HOLD")
if _spec:
    _kind, _pattern, _nth, _marker, _program = json.loads(_spec)
    _count = [0]
    _open, _replace, _rename = builtins.open, os.replace, os.rename

    def _hold(kind, path):
        """The ``_nth`` call of ``_kind`` on a path matching ``_pattern``, in ``_program``:
        say so (the marker file holds this pid) and wait to be killed."""
        if kind != _kind or not sys.argv[0].endswith(_program):
            return
        if not re.search(_pattern, os.fsdecode(path)):
            return
        _count[0] += 1
        if _count[0] == _nth:
            with _open(_marker + ".part", "w") as out:
                out.write(str(os.getpid()))
            _rename(_marker + ".part", _marker)
            time.sleep(600)

    def replace(src, dst, *args, **kwargs):
        _hold("move", dst)
        return _replace(src, dst, *args, **kwargs)

    def rename(src, dst, *args, **kwargs):
        _hold("move", dst)
        return _rename(src, dst, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        writing = isinstance(file, (str, os.PathLike)) and "w" in mode
        if writing:
            _hold("write", file)  # before: the file is as it was
        handle = _open(file, mode, *args, **kwargs)
        if writing:
            _hold("opened", file)  # after: "w" has emptied it
        return handle

    os.replace, os.rename, builtins.open = replace, rename, open_
'''


@dataclass(frozen=True)
class Hold:
    """Where to hold a process: the ``nth`` ``kind`` ("move": os.replace/os.rename onto a
    path; "write": open for writing, before; "opened": just after) on a path matching
    ``pattern``, in the program whose argv[0] ends with ``program``."""

    kind: str
    pattern: str
    nth: int
    program: str


@dataclass(frozen=True)
class Base:
    """A workspace after ``dvc repro TARGET`` with dvc.lock committed (the old set), and the
    outputs and dvc.lock entries of a clean run with ``NEW`` (the new set)."""

    root: Path
    mirror: Path
    hook: Path
    old: dict[str, str | None]
    new: dict[str, str | None]
    new_lock: dict[str, str]

    def copy(self, dest: Path) -> Path:
        shutil.copytree(self.root, dest, symlinks=True)
        return dest


def lock_outs(ws: Path, text: str | None = None) -> dict[str, str]:
    """Each output of ``STAGES`` with the MD5 dvc.lock (or ``text``) records for it."""
    lock = yaml.safe_load(text if text is not None else (ws / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for name in STAGES for out in lock["stages"][name]["outs"]}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 - a checksum


def digest(path: Path) -> str | None:
    """MD5 of a file; of a folder, the MD5 of its files' paths and MD5s; None if absent."""
    if path.is_file():
        return md5(path)
    if not path.is_dir():
        return None
    listing = [(str(f.relative_to(path)), md5(f)) for f in sorted(path.rglob("*")) if f.is_file()]
    return hashlib.md5(json.dumps(listing).encode()).hexdigest()  # noqa: S324


def outputs(ws: Path, paths: list[str]) -> dict[str, str | None]:
    return {p: digest(ws / p) for p in paths}


def stage_outs(ws: Path, stage: str) -> list[str]:
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    return [out["path"] for out in lock["stages"][stage]["outs"]]


def assert_never_mixed(found: dict[str, str | None], old: dict, new: dict) -> None:
    """The outputs of one stage in place are whole (each the old or the new bytes) and all of
    one set: part of the old set or part of the new, never old and new side by side."""
    present = {p: h for p, h in found.items() if h is not None}
    torn = {p for p, h in present.items() if h not in (old[p], new[p])}
    assert not torn, f"outputs that are neither the old nor the new bytes: {sorted(torn)}"
    only_old = {p for p, h in present.items() if h == old[p] != new[p]}
    only_new = {p for p, h in present.items() if h == new[p] != old[p]}
    assert not (only_old and only_new), f"old {sorted(only_old)} beside new {sorted(only_new)}"


def cache_faults(ws: Path) -> tuple[list[str], list[str]]:
    """The cache's corrupt entries (an object whose bytes do not hash to its name; a ``.dir``
    object is named by the MD5 of its JSON listing plus ``.dir``; a run-cache entry whose
    record does not hash to its name, DVC's own SHA-256) and its strays: DVC's leftover
    temp files (``.<random>.tmp``), which are no object and which DVC never reads as one."""
    from dvc.stage.cache import _get_cache_hash
    from dvc.utils.serialize import parse_yaml

    cache = ws / ".dvc" / "cache"
    bad, stray = [], []
    for path in sorted((cache / "files" / "md5").rglob("*")):
        if path.is_dir():
            continue
        name = str(path.relative_to(cache))
        oid = path.parent.name + path.name.removesuffix(".dir")
        if path.parent.parent.name != "md5" or not OID.fullmatch(oid):
            stray.append(name)
        elif md5(path) != oid or (path.name.endswith(".dir") and
                                  not isinstance(json.loads(path.read_bytes()), list)):
            bad.append(name)
    for path in sorted((cache / "runs").glob("??/*/*")):
        name = str(path.relative_to(cache))
        if path.name.startswith("."):
            stray.append(name)
            continue
        try:
            record = dict(parse_yaml(path.read_text(), str(path)))
            whole = (_get_cache_hash(record) == path.name
                     and _get_cache_hash(record, key=True) == path.parent.name)
        except Exception:  # cut short: not YAML, or not a record
            whole = False
        if not whole:
            bad.append(name)
    return bad, stray


def assert_cache_consistent(ws: Path) -> list[str]:
    """No corrupt entry; every stray is a hidden temp file. Returns the strays."""
    bad, stray = cache_faults(ws)
    assert not bad, f"corrupt cache entries: {bad}"
    assert all(Path(s).name.startswith(".") and s.endswith(".tmp") for s in stray), stray
    return stray


def in_cache(ws: Path, oid: str) -> bool:
    """Whether the object (a ``.dir`` object: and each of its files) is in the cache."""
    path = ws / ".dvc" / "cache" / "files" / "md5" / oid[:2] / oid[2:]
    if not path.is_file():
        return False
    return not oid.endswith(".dir") or all(in_cache(ws, entry["md5"])
                                           for entry in json.loads(path.read_bytes()))


def jaxpipe_temps(ws: Path) -> list[str]:
    """Staging or set-aside temps of jaxpipe's writers left in the workspace."""
    return sorted(str(p.relative_to(ws)) for p in ws.rglob(".*.tmp")
                  if not {".dvc", ".git"} & set(p.relative_to(ws).parts))


def status(ws: Path, mirror: Path) -> dict:
    """What is out of date up to TARGET, but for the environment check (always changed)."""
    from jaxpipe.tools.workspace import changed

    return changed(dvc(ws, "status", "--json", "--with-deps", TARGET, mirror=mirror).stdout)


def run_env(ws: Path, mirror: Path, extra_path: Path | None = None) -> dict[str, str]:
    """As ``jaxpipe.tools.workspace.dvc`` runs dvc: the workspace's own library first."""
    paths = [str(extra_path)] * bool(extra_path) + [str(ws / "src")]
    paths += [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return {**os.environ, **GIT_ENV, "PYTHONPATH": os.pathsep.join(paths),
            "JAXPIPE_MIRROR": str(mirror.resolve())}


def run_held(ws: Path, base: Base, hold: Hold, command: list[str] | str) -> str:
    """Run ``command`` (a dvc command, or a shell line) in ``ws`` until ``hold`` is reached,
    then SIGKILL its whole process group; its output so far."""
    marker = ws.parent / f"{ws.name}.held"
    env = run_env(ws, base.mirror, base.hook)
    env["JAXPIPE_FAULTS_HOLD"] = json.dumps([hold.kind, hold.pattern, hold.nth, str(marker),
                                             hold.program])
    argv = ["bash", "-c", command] if isinstance(command, str) else [
        shutil.which("dvc") or "dvc", *command]
    log = ws.parent / f"{ws.name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=ws, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + WAIT_S
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        reached = marker.exists()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    assert reached, f"{hold} was never reached (exit {proc.returncode}):\n{log.read_text()}"
    return log.read_text()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Base:
    root = tmp_path_factory.mktemp("faults")
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    ws = make_workspace(ROOT, root / "base", mirror=mirror, profile=SMALL, rev="HEAD")
    dvc(ws, "repro", TARGET, mirror=mirror)
    git(ws, "add", "dvc.lock")
    git(ws, "commit", "-q", "-m", "results")  # as a team commits its dvc.lock
    paths = list(lock_outs(ws))
    clean = root / "clean"  # a clean run of NEW, in its own copy with its own cache
    shutil.copytree(ws, clean, symlinks=True)
    set_params(clean / "params.yaml", NEW)
    dvc(clean, "repro", TARGET, mirror=mirror)
    return Base(ws, mirror, hook, outputs(ws, paths), outputs(clean, paths), lock_outs(clean))


def assert_repaired(ws: Path, base: Base) -> list[str]:
    """A plain ``dvc repro`` completes, ``dvc status`` is clean, the outputs and dvc.lock are
    a clean run's, the cache is consistent and no jaxpipe temp is left. The stages it ran."""
    ran = ran_stages(dvc(ws, "repro", TARGET, mirror=base.mirror).stdout)
    assert status(ws, base.mirror) == {}
    assert outputs(ws, list(base.new)) == base.new
    assert lock_outs(ws) == base.new_lock
    assert_cache_consistent(ws)
    assert jaxpipe_temps(ws) == []
    return ran


# A stage's output set: old and new never side by side (jaxpipe.core.fileio._swap_all)


def _contents(model: Path, plots: Path) -> tuple[str | None, str | None]:
    roc = plots / "roc.csv"
    return (model.read_text() if model.is_file() else None,
            roc.read_text() if roc.is_file() else None)


def test_every_moment_of_an_output_swap_holds_old_or_new_outputs_never_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill can land after any rename: after each, the outputs in place are part of one
    set. (Renaming each new output straight onto its target shows the new model beside the
    old plots after the first.)"""
    model, plots = old_output_set(tmp_path, "old", "old")
    moments, real = [_contents(model, plots)], os.replace

    def replace(src, dst, *args, **kwargs):
        real(src, dst, *args, **kwargs)
        moments.append(_contents(model, plots))

    monkeypatch.setattr(os, "replace", replace)
    with output_set(model, plots) as (model_tmp, plots_tmp):
        model_tmp.write_text("new")
        plots_tmp.mkdir()
        (plots_tmp / "roc.csv").write_text("new")
    monkeypatch.undo()
    assert moments[0] == ("old", "old") and moments[-1] == ("new", "new")
    for moment in moments:
        assert set(moment) - {None} in ({"old"}, {"new"}, set()), moments
    assert not list(tmp_path.rglob(".*.tmp"))


@pytest.mark.parametrize("failing", ["set aside", "renamed in"])
def test_a_rename_that_fails_midway_puts_the_old_set_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    """A rename refused (a full disk's directory, a permission changed) while the old outputs
    are set aside or the new ones renamed in: the old set is put back whole, no temp left."""
    model, plots = old_output_set(tmp_path, "old", "old")
    real, refused = os.replace, []

    def replace(src, dst, *args, **kwargs):  # the second output's rename, after the first's
        if not refused and (Path(src) if failing == "set aside" else Path(dst)) == model:
            refused.append(dst)  # once: putting the old model back is allowed
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        with output_set(plots, model) as (plots_tmp, model_tmp):
            model_tmp.write_text("new")
            plots_tmp.mkdir()
            (plots_tmp / "roc.csv").write_text("new")
    monkeypatch.undo()
    assert _contents(model, plots) == ("old", "old")
    assert sorted(p.name for p in plots.iterdir()) == ["roc.csv"]
    assert not list(tmp_path.rglob(".*.tmp"))


# 1. A kill while the outputs are renamed in, while DVC writes its cache or its dvc.lock


@pytest.mark.e2e
def test_a_stage_killed_between_its_output_renames_leaves_no_mixed_set(
        base: Base, tmp_path: Path) -> None:
    """train@linreg_sgd run as dvc.lock records it, outside DVC (which would first delete the
    old outputs), killed right before its history is renamed in, its model already in place:
    the new model is never beside the old history (jaxpipe sets the old set aside first).
    Run again, it writes the whole new set and sweeps the killed run's temps."""
    ws = base.copy(tmp_path / "ws")
    set_params(ws / "params.yaml", NEW)
    cmd = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]["train@linreg_sgd"]["cmd"]
    train = stage_outs(ws, "train@linreg_sgd")
    history = next(p for p in train if p.endswith("history.csv"))
    run_held(ws, base, Hold("move", rf"(^|/){re.escape(history)}$", 1, "train.py"), cmd)
    found = outputs(ws, train)
    assert_never_mixed(found, base.old, base.new)
    assert found[history] is None and found != outputs(base.root, train)  # killed midway
    assert jaxpipe_temps(ws)  # the staged history, the old set set aside: swept next time
    env = {**run_env(ws, base.mirror), "JAXPIPE_LAUNCH": ""}
    proc = subprocess.run(["bash", "-c", cmd], cwd=ws, env=env, capture_output=True,
                          text=True, timeout=WAIT_S, check=False)
    assert proc.returncode == 0, proc.stderr
    assert outputs(ws, train) == {p: base.new[p] for p in train}
    assert jaxpipe_temps(ws) == []


KILLS = {  # where dvc repro is killed; what the plain retry then does with train@linreg_sgd
    # in the stage, its model renamed in, its history not yet
    "outputs renamed in": (Hold("move", r"(^|/)history\.csv$", 1, "train.py"), "reruns"),
    # in DVC's commit: the model's object in the cache, the history's written, not yet renamed
    "cache object written": (Hold("move", r"\.dvc/cache/files/md5/[0-9a-f]{2}/[0-9a-f]{30}$",
                                  2, "dvc"), "reruns"),
    # outputs and run-cache entry committed, dvc.lock not yet rewritten
    "dvc.lock not yet written": (Hold("write", ROOT_LOCK, 1, "dvc"), "accepts"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("moment", list(KILLS))
def test_dvc_repro_killed_midway_keeps_the_cache_whole_and_a_plain_retry_repairs(
        base: Base, tmp_path: Path, moment: str) -> None:
    """``dvc repro`` SIGKILLed (its whole process group) at ``moment``. The cache's
    consistency is DVC's own defence (objects and run-cache entries written to a temp name,
    then renamed; a run-cache entry whose objects are missing is not used); jaxpipe's are
    the outputs: each stage's in place are whole and of one set, and its temps are swept.
    Then: dvc.lock still records the old set, whose objects are all in the cache, and a
    plain ``dvc repro`` reruns (or accepts from the run cache) and ends as a clean run."""
    hold, retry = KILLS[moment]
    ws = base.copy(tmp_path / "ws")
    set_params(ws / "params.yaml", NEW)
    run_held(ws, base, hold, ["repro", TARGET])
    for stage in STAGES:
        assert_never_mixed(outputs(ws, stage_outs(ws, stage)), base.old, base.new)
    assert (ws / "dvc.lock").read_bytes() == (base.root / "dvc.lock").read_bytes()
    assert all(in_cache(ws, oid) for oid in lock_outs(ws).values())  # the old set: restorable
    assert_cache_consistent(ws)
    ran = assert_repaired(ws, base)
    assert ("train@linreg_sgd" in ran) == (retry == "reruns"), ran


@pytest.mark.e2e
def test_dvc_repro_killed_while_rewriting_dvc_lock_is_refused_loudly_then_repaired(
        base: Base, tmp_path: Path) -> None:
    """DVC rewrites dvc.lock in place (``open(path, "w+")`` in dvc/utils/serialize/_common.py,
    DVC 3.67), not by a temp and a rename: killed between emptying it and writing it, DVC
    leaves an empty dvc.lock, and every later dvc command stops on it. jaxpipe cannot make
    DVC's write atomic; what is true and safe: the refusal names dvc.lock, the cache and the
    stage's outputs are whole, and the committed dvc.lock (``git checkout dvc.lock``) plus a
    plain ``dvc repro`` repair it, taking the killed stage from the run cache."""
    ws = base.copy(tmp_path / "ws")
    set_params(ws / "params.yaml", NEW)
    run_held(ws, base, Hold("opened", ROOT_LOCK, 1, "dvc"), ["repro", TARGET])
    assert (ws / "dvc.lock").read_bytes() == b""
    train = stage_outs(base.root, "train@linreg_sgd")
    assert outputs(ws, train) == {p: base.new[p] for p in train}
    assert_cache_consistent(ws)
    proc = dvc(ws, "repro", TARGET, mirror=base.mirror, check=False)
    assert proc.returncode != 0
    assert "'./dvc.lock' validation failed" in proc.stderr + proc.stdout, proc.stderr
    git(ws, "checkout", "dvc.lock")
    assert assert_repaired(ws, base) == ["evaluate@linreg_sgd"]  # train: from the run cache


# 2. The cache's disk fills while DVC commits a stage's outputs


@contextmanager
def small_cache(ws: Path, how: str, free: int) -> Iterator[dict]:
    """Make the cache of ``ws`` too small for a big output; yield how to run dvc there.
    "tmpfs": the cache on its own tmpfs (a mount: root only), filled up to ``free`` bytes;
    a write past them fails with ENOSPC. "fsize": RLIMIT_FSIZE on dvc (anyone), so that a
    file DVC writes past ``free`` bytes fails with EFBIG; the stage's limit is lifted again
    through $JAXPIPE_LAUNCH, as the stage's own writes are not what is tested."""
    if how == "fsize":
        lift = ws.parent / "unlimited.py"
        lift.write_text("import os, resource, sys\nno = resource.RLIM_INFINITY\n"
                        "resource.setrlimit(resource.RLIMIT_FSIZE, (no, no))\n"
                        "os.execvp(sys.argv[1], sys.argv[1:])\n")

        def limit() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails, not the process
            resource.setrlimit(resource.RLIMIT_FSIZE, (free, resource.RLIM_INFINITY))

        yield {"preexec_fn": limit, "env": {"JAXPIPE_LAUNCH": f"{sys.executable} {lift}"}}
        return
    cache = ws / ".dvc" / "cache"
    saved = cache.with_name("cache.saved")
    cache.rename(saved)
    cache.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(cache)],
                           capture_output=True, text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"no tmpfs for the cache here (the fsize case stands in): "
                    f"{mount.stderr.strip()}")
    try:
        shutil.copytree(saved, cache, symlinks=True, dirs_exist_ok=True)
        ballast = cache / "ballast"
        fs = os.statvfs(cache)
        remaining = fs.f_bavail * fs.f_frsize - free
        with ballast.open("wb") as out:
            while remaining > 0:
                remaining -= out.write(b"\0" * min(remaining, 1 << 20))
        yield {"ballast": ballast}
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)


def run_dvc(ws: Path, mirror: Path, *args: str, preexec_fn=None,
            env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("dvc") or "dvc", *args], cwd=ws,
                          env={**run_env(ws, mirror), **(env or {})}, capture_output=True,
                          text=True, timeout=WAIT_S, preexec_fn=preexec_fn, check=False)


FULL = {"tmpfs": (64 << 10, "[Errno 28] No space left on device"),
        "fsize": (768 << 10, "[Errno 27] File too large")}  # DVC's own indexes must fit


@pytest.mark.e2e
@pytest.mark.parametrize("how", list(FULL))
def test_a_cache_that_fills_after_the_stage_succeeded_fails_and_a_retry_completes(
        base: Base, tmp_path: Path, how: str) -> None:
    """The stage writes its 1 MB history; DVC then copies it into a cache with no room
    left. DVC's defence (a temp in the cache, renamed only when whole): it exits non-zero
    with an ERROR line naming the errno (and, when the copy itself fails, the file and the
    cache temp), records nothing in dvc.lock, leaves no corrupt object (only its temp file,
    which DVC never reads as an object) and leaves the stage's outputs as the stage wrote
    them. With room again, a plain ``dvc repro`` reruns the stage and ends as a clean run.
    jaxpipe's part: the outputs in place are whole, and the rerun gives a clean run's bytes
    with no temp left. (Under RLIMIT_FSIZE, DVC's last line is a misleading "unable to remove
    <history> without a confirmation": it refuses to delete the output it could not cache.)"""
    free, error = FULL[how]
    ws = base.copy(tmp_path / "ws")
    set_params(ws / "params.yaml", NEW)
    train = stage_outs(ws, "train@linreg_sgd")
    with small_cache(ws, how, free) as run:
        proc = run_dvc(ws, base.mirror, "repro", TARGET, preexec_fn=run.get("preexec_fn"),
                       env=run.get("env"))
        said = (proc.stdout + proc.stderr).splitlines()
        errors = [line for line in said if line.startswith("ERROR")]
        print(f"\n{how}: dvc exited {proc.returncode}:", *errors, sep="\n  ")
        assert proc.returncode != 0 and errors, said
        assert any(error in line for line in errors), errors
        assert not any("Traceback" in line for line in said), said
        assert ran_stages(proc.stdout) == ["train@linreg_sgd"]  # it succeeded; evaluate: not
        assert outputs(ws, train) == {p: base.new[p] for p in train}
        assert (ws / "dvc.lock").read_bytes() == (base.root / "dvc.lock").read_bytes()
        assert all(in_cache(ws, oid) for oid in lock_outs(ws).values())
        assert_cache_consistent(ws)
        if "ballast" in run:
            run["ballast"].unlink()
        assert assert_repaired(ws, base) == list(STAGES)


# 3. Two queue workers at once

EXPERIMENTS = {"lr-0.005": 0.005, "lr-0.02": 0.02, "lr-0.03": 0.03}
QUEUE_S = 300


def queue_states(text: str) -> dict[str, list[str]]:
    """Each experiment's status word(s) in a ``dvc queue status`` table (one per row)."""
    states: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split()
        for name in EXPERIMENTS:
            if name in words:
                states.setdefault(name, []).append(next(
                    (w for w in words if w in ("Queued", "Running", "Success", "Failed")), "?"))
    return states


@pytest.mark.e2e
def test_two_queue_workers_give_each_experiment_exactly_its_serial_result(
        base: Base, tmp_path: Path) -> None:
    """Three experiments queued, ``dvc queue start -j 2``: two run at once, each in its own
    temporary copy, both committing into the one shared cache. DVC's defence: a worker's
    temp copy, and cache writes by temp and rename (two workers writing one object write the
    same bytes). Checked: each experiment ran once and its every output (model, history,
    metrics, details, plots) has the bytes of that experiment run alone (jaxpipe's part: the
    same bytes while two trainings share the CPUs); none lost nor doubled; the cache is
    consistent with no temp left; the workspace is untouched."""
    serial = base.copy(tmp_path / "serial")
    expected = {}
    for name, lr in EXPERIMENTS.items():
        set_params(serial / "params.yaml", {"train.linreg_sgd.lr": lr})
        dvc(serial, "repro", TARGET, mirror=base.mirror)
        expected[name] = lock_outs(serial)
    assert len({json.dumps(e, sort_keys=True) for e in expected.values()}) == len(EXPERIMENTS)
    ws = base.copy(tmp_path / "ws")
    for name, lr in EXPERIMENTS.items():
        dvc(ws, "exp", "run", "--queue", "-n", name, "-S", f"train.linreg_sgd.lr={lr}",
            TARGET, mirror=base.mirror)
    watched = [*base.old, "params.yaml", "dvc.lock"]
    before = outputs(ws, watched)
    # the workers hold on to the starter's output pipes, so run it with no pipes to wait on
    subprocess.run([shutil.which("dvc") or "dvc", "queue", "start", "-j", "2"], cwd=ws,
                   env=run_env(ws, base.mirror), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=60)
    most_at_once, states, deadline = 0, {}, time.monotonic() + QUEUE_S
    try:
        while time.monotonic() < deadline:
            states = queue_states(dvc(ws, "queue", "status", mirror=base.mirror).stdout)
            most_at_once = max(most_at_once, sum(s.count("Running") for s in states.values()))
            if len(states) == len(EXPERIMENTS) and all(
                    s[-1] in ("Success", "Failed") for s in states.values()):
                break
            time.sleep(0.2)
    finally:
        dvc(ws, "queue", "stop", mirror=base.mirror, check=False)
    logs = {n: dvc(ws, "queue", "logs", n, mirror=base.mirror, check=False).stdout
            for n, s in states.items() if s != ["Success"]}
    assert states == {name: ["Success"] for name in EXPERIMENTS}, (states, logs)
    assert most_at_once == 2
    refs = git(ws, "for-each-ref", "--format=%(refname)", "refs/exps").split()
    assert sorted(ref.rsplit("/", 1)[1] for ref in refs) == sorted(EXPERIMENTS)
    for ref in refs:
        results = lock_outs(ws, git(ws, "show", f"{ref}:dvc.lock"))
        assert results == expected[ref.rsplit("/", 1)[1]], ref
        assert all(in_cache(ws, oid) for oid in results.values())
    assert assert_cache_consistent(ws) == []
    assert outputs(ws, watched) == before
    assert status(ws, base.mirror) == {}
    assert not list((ws / ".dvc" / "tmp" / "exps").glob("tmp*"))  # the workers' copies: gone
