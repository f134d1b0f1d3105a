"""The docs a newcomer walks: every shell block of README.md and docs/*.md is run by a test
or by CI, as the comment above it says, and the claim is checked here so it cannot go stale.

A shell block is preceded by one of:

- ``<!-- run by: tests/test_x.py::test_name -->`` (several, comma-separated): the test exists
  and its source names the doc file and the heading the block is under (it reads the block);
- ``<!-- run by: CI (.ci/steps.sh install, .ci/run) -->``: each command of the block is in
  those CI scripts (a step of ``.ci/steps.sh``, or a whole file);
- ``<!-- not run: why -->``: only for the few blocks listed in ``NOT_RUN`` (a cluster, a GPU,
  measurements of many minutes).

The tests below run the blocks, as written, in copies of the repository; a placeholder
(``/path/to/mirror``, ``<repo-url>``) is replaced by what the test started in its place.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import http_server, unused
from test_remote import BUCKET, REGION, aws_env
from test_remote import s3 as moto_s3  # noqa: F401 - a fixture: moto's S3 server
from test_ssh_remote import (  # noqa: F401 - keys and server: fixtures, OpenSSH's sshd
    SFTP,
    SSHD,
    keys,
    server,
    ssh_env,
)

from jaxpipe.core.config import read_yaml, roundtrip_yaml
from jaxpipe.preflight import stage_names
from jaxpipe.tools.workspace import (
    GIT_ENV,
    committed_copy,
    git,
    make_workspace,
    ran_stages,
    set_params,
)

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = {"bash", "sh", "shell", "console", "zsh"}
MARKER = re.compile(r"<!--\s*(run by|not run):\s*(.*?)\s*-->")
CI_FILES = (".ci/run", ".ci/steps.sh")
# Commands the README gives in a reader's spelling, and how CI spells the same (.ci/run
# makes a virtual environment of its own name, with whichever python3.11 it finds).
CI_SPELLING = {"python3.11 -m venv .venv": '"$PY" -m venv --clear .venv-ci',
               ". .venv/bin/activate": ". .venv-ci/bin/activate"}
# The blocks no test runs, and why: (doc, heading) -> how many blocks there.
NOT_RUN = {
    ("docs/DISTRIBUTED.md", "## Several processes and hosts"): 2,   # Slurm
    ("docs/DISTRIBUTED.md", "## GPU"): 1,                          # an NVIDIA GPU
    ("docs/DISTRIBUTED.md", "### Throughput here: 1, 2 and 4 forced CPU devices"): 1,
    ("docs/performance.md", "# Performance"): 1,                   # benchmarks, minutes
    ("docs/testing.md", "## Mutation testing"): 2,                 # mutmut, minutes to hours
}
ASSIGNMENTS = r"""^(?:[A-Z_][A-Z0-9_]*=(?:"[^"]*"|'[^']*'|\S+)\s+)+"""
SMALL_CNN = {"train.cnn_mnist.max_train_images": 256}  # a CNN run in seconds, for the commands


@dataclass(frozen=True)
class Block:
    """A fenced block of a doc: where it is, under which heading, and what it says."""

    doc: str  # path relative to the repository, e.g. docs/sharing.md
    line: int  # of the opening fence, 1-based
    heading: str  # the nearest heading above it, as written (``## Run experiments``)
    lang: str
    marker: tuple[str, str] | None  # ("run by" | "not run", the rest)
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order."""
    lines = path.read_text().splitlines()
    found, heading, i = [], "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            lang, start = line[3:].strip(), i
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            mark = MARKER.fullmatch(above.strip())
            found.append(Block(str(path.relative_to(ROOT)), start + 1, heading, lang,
                               mark.groups() if mark else None, "\n".join(lines[i + 1:end])))
            i = end + 1
            continue
        if line.startswith("#"):
            heading = line.strip()
        i += 1
    return found


def shell_blocks() -> list[Block]:
    return [b for path in DOCS for b in blocks(path) if b.lang in SHELLS]


def section(doc: str, heading: str, lang: str | None = None) -> list[Block]:
    """The blocks under ``heading`` (exactly as written) in ``doc``, optionally of one lang."""
    found = [b for b in blocks(ROOT / doc) if b.heading == heading
             and (lang is None or b.lang == lang or (lang == "bash" and b.lang in SHELLS))]
    assert found, f"no block under {heading!r} in {doc}"
    return found


def commands(text: str) -> list[str]:
    """A block's commands: lines without comments, ``\\``-continued lines joined, and each
    ``&&`` part on its own; leading ``VAR=value`` assignments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            part = re.sub(ASSIGNMENTS, "", part.strip())
            if part:
                out.append(part)
    return out


# -- the claims ---------------------------------------------------------------------------

def _test_source(ref: str) -> str:
    """The source of the test ``tests/test_x.py::test_name`` (fails if there is none)."""
    file, _, name = ref.partition("::")
    path = ROOT / file
    assert path.is_file(), f"{ref}: no file {file}"
    source = path.read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(source, node) or ""
    raise AssertionError(f"{ref}: no test {name} in {file}")


def _ci_text(entry: str) -> str:
    """A CI entry's text: a whole script (``.ci/run``) or one step of ``.ci/steps.sh``."""
    file, _, step = entry.partition(" ")
    assert file in CI_FILES, f"{entry}: CI runs {' and '.join(CI_FILES)}"
    text = (ROOT / file).read_text()
    if step:
        match = re.search(rf"^  {re.escape(step)}\)(.*?)^    ;;", text, re.S | re.M)
        assert match, f"{entry}: no step {step!r} in {file}"
        text = match.group(1)
    return text


def _normal(text: str) -> str:
    return " ".join(text.replace("--quiet ", "").split())


@pytest.mark.parametrize("block", shell_blocks(), ids=lambda b: b.where)
def test_every_shell_block_says_what_runs_it_and_that_is_so(block: Block) -> None:
    assert block.marker, (f"{block.where}: say what runs this block in a comment above it "
                          "(<!-- run by: tests/...::test_... --> or <!-- run by: CI (...) -->)")
    kind, rest = block.marker
    if kind == "not run":
        assert rest and (block.doc, block.heading) in NOT_RUN, (
            f"{block.where}: a block no test runs must be one of NOT_RUN in {__file__}")
        return
    if rest.startswith("CI"):
        entries = [e.strip() for e in rest.removeprefix("CI").strip(" ()").split(",")]
        ci = " ".join(_normal(_ci_text(e)) for e in entries)
        for command in commands(block.text):
            spelled = CI_SPELLING.get(command, command)
            assert _normal(spelled) in ci, f"{block.where}: {command!r} is not in {entries}"
        return
    for ref in (r.strip() for r in rest.split(",")):
        source = _test_source(ref)
        assert block.doc in source and block.heading in source, (
            f"{block.where}: {ref} does not read this block ({block.doc}, {block.heading!r})")


def test_the_blocks_no_test_runs_are_only_those_listed() -> None:
    counts: dict[tuple[str, str], int] = {}
    for block in shell_blocks():
        if block.marker and block.marker[0] == "not run":
            counts[block.doc, block.heading] = counts.get((block.doc, block.heading), 0) + 1
    assert counts == NOT_RUN


def test_every_block_names_its_language() -> None:
    bare = [b.where for path in DOCS for b in blocks(path) if not b.lang]
    assert bare == [], "a block of output or a diagram is ```text"


def test_the_readme_is_short_and_leads_to_every_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    for page in DOCS[1:]:
        assert f"](docs/{page.name})" in readme, f"README.md does not link {page.name}"
    quick = section("README.md", "## Quick start", "bash")[0]
    assert commands(quick.text)[-2:] == ["dvc repro", "pytest"]  # CI's test step runs `pytest`
    assert "pip install -c constraints.txt -e '.[dev]'" in commands(quick.text)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_every_link_within_the_repository_leads_somewhere() -> None:
    for path in DOCS:
        text = path.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            assert dest.exists(), f"{path.name}: link to {target}: no such file"
            if anchor:
                headings = [ln for ln in dest.read_text().splitlines() if ln.startswith("#")]
                assert anchor in {_slug(h) for h in headings}, f"{path.name}: {target}"


def _repository_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / f for f in out.splitlines() if (ROOT / f).is_file()]


def test_nothing_points_outside_the_repository() -> None:
    """Only the test and CI set-up that use a local mirror beside the checkout name it."""
    allowed = {"tests/conftest.py", ".ci/run", ".ci/steps.sh", "tests/test_docs.py"}
    pointing = []
    for path in _repository_files():
        rel = str(path.relative_to(ROOT))
        if rel in allowed:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if "../shared" in text or "SEEDS" in text:
            pointing.append(rel)
    assert pointing == []


# -- running the blocks -------------------------------------------------------------------

def _env(ws: Path | None = None, base: Mapping[str, str] | None = None, **extra: str
         ) -> dict[str, str]:
    """An environment for a doc's commands: this Python's tools first on PATH, the
    workspace's own copy of the library, no mirror unless given, 120 columns."""
    env = {k: v for k, v in (base or os.environ).items()
           if k not in ("JAXPIPE_MIRROR", "GITHUB_STEP_SUMMARY", "PYTHONPATH")}
    env.update(GIT_ENV, COLUMNS="120",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if ws is not None:
        env["PYTHONPATH"] = str(ws / "src")
    env.update(extra)
    return env


def run_block(text: str, cwd: Path, env: Mapping[str, str],
              subs: Mapping[str, str] | None = None, timeout: float = 900
              ) -> subprocess.CompletedProcess:
    """Run a block as bash would, placeholders replaced; fail with its output's tail."""
    for placeholder, value in (subs or {}).items():
        text = text.replace(placeholder, value)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=cwd, env=dict(env),
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"in {cwd}:\n{text}\nexit {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")
    return proc


def copy_of(pipeline, dest: Path) -> Path:
    """A copy of the reproduced pipeline, its results not yet committed (a first run's)."""
    shutil.copytree(pipeline.root, dest, symlinks=True)
    if git(dest, "ls-files", "dvc.lock").strip():
        git(dest, "rm", "-q", "--cached", "dvc.lock")
        git(dest, "commit", "-q", "-m", "no results committed yet")
    return dest


def with_origin(ws: Path, bare: Path) -> Path:
    """``ws`` pushing to a new bare repository ``bare``, as the team's git remote."""
    git(bare.parent, "init", "-q", "--bare", "-b", "main", str(bare))
    git(ws, "remote", "add", "origin", str(bare))
    git(ws, "push", "-q", "-u", "origin", "main")
    return bare


def _deep_merge(into: dict, new: Mapping) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), Mapping):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def apply_yaml(block: Block, ws: Path, subs: Mapping[str, str]) -> None:
    """A YAML block headed ``# <file>``: merged into that file, or written as it if new."""
    text = block.text
    for placeholder, value in subs.items():
        text = text.replace(placeholder, value)
    target = ws / text.splitlines()[0].lstrip("# ").split()[0]
    if not target.exists():
        target.write_text(text)
        return
    yaml = roundtrip_yaml()
    doc = yaml.load(target.read_text())
    _deep_merge(doc, yaml.load(text))
    with target.open("w") as handle:
        yaml.dump(doc, handle)


def walk(doc: str, headings: list[str], ws: Path, env: Mapping[str, str],
         subs: Mapping[str, str]) -> str:
    """Do what the sections say, in order: merge their YAML, run their shell blocks.
    Returns the shell blocks' output."""
    out = []
    for heading in headings:
        for block in section(doc, heading):
            if block.lang == "yaml":
                apply_yaml(block, ws, subs)
            elif block.lang in SHELLS:
                out.append(run_block(block.text, ws, env, subs).stdout)
    return "\n".join(out)


def test_every_width_figure_is_dated_or_checked_by_a_test() -> None:
    """A terminal width quoted in the docs (`N columns`, `N characters`) goes stale as the
    pipeline grows: its paragraph says when it was measured (a date) or which test checks
    it."""
    for doc in DOCS:
        for paragraph in doc.read_text().split("\n\n"):
            for figure in re.findall(r"\b\d[\d,]* (?:columns|characters)\b", paragraph):
                assert re.search(r"\b20\d\d-\d\d-\d\d\b", paragraph) or (
                    "tests/test_" in paragraph), (doc.name, figure)


def test_check_and_env_commands(tmp_path: Path) -> None:
    """In a copy of what the two commands read: code, stages, params, schemas, records."""
    ws = committed_copy(ROOT, tmp_path / "ws", "src", "stages", "schemas", ".dvc", "dvc.yaml",
                        "params.yaml", "params.local.yaml", "environment.yaml")
    git(ws, "init", "-q")
    env = _env(ws)
    checks = "# Bad inputs: checked before use, one line, nothing lost"
    run_block(section("docs/checks.md", checks, "bash")[0].text, ws, env)
    shown = run_block(section("docs/reproducibility.md", "## The software a stage runs on",
                              "bash")[0].text, ws, env)
    stages = len(stage_names(ws / "dvc.yaml"))
    summary = f"{stages} stages: all as recorded in environment.yaml"
    assert shown.stdout.splitlines()[0] == f"{summary} (-v: each stage's software)"
    assert shown.stdout.splitlines()[1] == summary  # -v: the same line, then each stage
    assert "train@cnn_mnist: as recorded" in shown.stdout.splitlines()[2:]


@pytest.mark.e2e
def test_offline_from_a_local_mirror(pipeline, tmp_path: Path) -> None:
    """From a clone's committed params.local.yaml (no overrides): the mirror's checksums
    adopted, `dvc repro` served by the mirror (nothing left to run: the pipeline ran from
    it), then the overrides seen by git and undone."""
    ws = copy_of(pipeline, tmp_path / "ws")
    committed = git(ROOT, "show", "HEAD:params.local.yaml")  # not a mirror's local edits
    (ws / "params.local.yaml").write_text(committed)
    git(ws, "commit", "-q", "-m", "params.local.yaml as committed", "--", "params.local.yaml")
    subs = {"/path/to/mirror": str(pipeline.mirror.resolve())}
    ran = run_block(section("README.md", "## Offline from a local mirror", "bash")[0].text,
                    ws, _env(ws), subs)
    assert ran_stages(ran.stdout) == []
    overrides = read_yaml((ws / "params.local.yaml").read_text()) or {}
    status = run_block(section("docs/offline.md", "# Offline: a local mirror", "bash")[0].text,
                       ws, _env(ws))
    if overrides:  # the mirror differs from the official files, as a subset does
        assert "params.local.yaml" in status.stdout
    assert (ws / "params.local.yaml").read_text() == committed


@pytest.mark.e2e
def test_metrics_and_plots_commands(pipeline, tmp_path: Path) -> None:
    ws = copy_of(pipeline, tmp_path / "ws")
    shown = run_block(section("docs/results.md", "## Metrics and plots", "bash")[0].text, ws,
                      _env(ws))
    assert "metrics/cnn_mnist.json" in shown.stdout and "steps_to_converge" in shown.stdout
    timings = shown.stdout[shown.stdout.index('{\n  "epoch_end_seconds"'):]
    timings = timings[:timings.index("\n}\n") + 3]  # the file as cat shows it: a line a key
    assert json.loads(timings)["phases"]["train steps"] > 0
    assert max(len(line) for line in timings.splitlines()) <= 80
    assert (ws / "dvc_plots/index.html").stat().st_size > 0
    assert len(list((ws / "dvc_plots/static").glob("*.png"))) >= 10


@pytest.mark.e2e
def test_predict_commands(pipeline, tmp_path: Path) -> None:
    """The two predictions, on rows of the raw table and on MNIST test images as PNGs."""
    from PIL import Image

    from jaxpipe.data.idx import read_idx

    ws = copy_of(pipeline, tmp_path / "ws")
    raw = pd.read_csv(ws / "data/raw/mobile_price/train.csv")
    raw.drop(columns="price_range").head(5).to_csv(ws / "phones.csv", index=False)
    images = read_idx(ws / "data/raw/mnist/t10k-images-idx3-ubyte.gz")[:3]
    Image.fromarray(images[0]).save(ws / "seven.png")
    (ws / "digits").mkdir()
    for i, image in enumerate(images[1:]):
        Image.fromarray(image).save(ws / "digits" / f"{i}.png")
    out = run_block(section("docs/results.md", "## Predictions on new data", "bash")[0].text,
                    ws, _env(ws)).stdout.splitlines()
    phones = pd.read_csv(ws / "predictions.csv")
    assert len(phones) == 5 and {"predicted", "p_0", "p_3"} <= set(phones.columns)
    assert phones["input"].tolist() == [f"phones.csv:{i}" for i in range(1, 6)]
    digits = pd.read_csv(ws / "digits.csv")
    assert len(digits) == 3 and set(digits["predicted"]) <= set(range(10))
    assert out[0].split()[:2] == ["input", "predicted"]  # the table, then the piped CSV
    assert out[1].split()[:2] == ["seven.png", str(digits["predicted"][0])]
    assert out[2:] == (ws / "predictions.csv").read_text().splitlines()[:3]
    assert not (ws / "-").exists()


@pytest.mark.e2e
def test_add_a_model_commands(pipeline, tmp_path: Path) -> None:
    ws = copy_of(pipeline, tmp_path / "ws")
    text = section("docs/add-a-model.md", "## The commands", "bash")[0].text
    # the page's names, unless the project has committed models of those names
    model, mate, family = (unused(ws, n) for n in ("logreg_strong", "ridge_mobile", "ridge"))
    text = text.replace("test_family_ridge", f"test_family_{family}")
    for name, new in (("logreg_strong", model), ("ridge_mobile", mate), ("ridge", family)):
        text = re.sub(rf"(?<!\w){name}(?!\w)", new, text)
    out = run_block(text, ws, _env(ws)).stdout
    assert sorted(ran_stages(out)) == [f"evaluate@{model}", f"evaluate@{mate}",
                                       f"train@{model}", f"train@{mate}"]
    assert json.loads((ws / f"metrics/{mate}.json").read_text())["accuracy"] > 0.8


def _table_fitting(schema: dict, rows: int = 200) -> pd.DataFrame:
    """A table that fits a schema's columns: declared values, or numbers in range."""
    rng = np.random.default_rng(0)
    columns = {}
    for name, col in schema["columns"].items():
        if "values" in col:
            columns[name] = rng.choice(col["values"], size=rows)
        else:
            low = col.get("min", 0)
            high = col.get("max", low + 10)
            values = rng.uniform(low, high, size=rows)
            columns[name] = np.floor(values).astype(int) if col["type"] == "int" else values
    return pd.DataFrame(columns)


def _wine_csv(dest: Path) -> Path:
    """A table that fits the page's schema (docs/add-a-dataset.md, "### 2. Its schema")."""
    schema = read_yaml(section("docs/add-a-dataset.md", "### 2. Its schema", "yaml")[0].text)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _table_fitting(schema).to_csv(dest, index=False)
    return dest


@pytest.mark.e2e
def test_a_dataset_from_a_url(tmp_path: Path) -> None:
    """The page's steps, in a fresh copy, with the CSV served on 127.0.0.1: download,
    prepare, then a model trained and evaluated on it, and nothing else run."""
    ws = make_workspace(ROOT, tmp_path / "ws", rev="HEAD")
    csv = _wine_csv(tmp_path / "served" / "wine.csv")
    md5 = hashlib.md5(csv.read_bytes()).hexdigest()  # noqa: S324 - as the page's md5sum
    with http_server(csv.parent) as url:
        subs = {"https://data.example.com/wine/": f"{url}/good/", "<md5 of wine.csv>": md5}
        out = walk("docs/add-a-dataset.md", [
            "### 1a. The raw file from a URL", "### 2. Its schema", "### 3. How to prepare it",
            "### 4. Record, check, run", "### 5. A model on it"], ws, _env(ws), subs)
    assert md5 in out
    assert sorted(ran_stages(out)) == ["download@wine", "evaluate@wine_logreg",
                                       "prepare@wine", "train@wine_logreg"]
    assert (ws / "data/raw/wine/wine.csv").read_bytes() == csv.read_bytes()
    assert "accuracy" in json.loads((ws / "metrics/wine_logreg.json").read_text())


@pytest.mark.e2e
def test_a_dataset_from_a_local_file(tmp_path: Path) -> None:
    ws = make_workspace(ROOT, tmp_path / "ws", rev="HEAD")
    csv = _wine_csv(tmp_path / "mine" / "wine.csv")
    out = walk("docs/add-a-dataset.md", [
        "### 1b. The raw file from a local file", "### 2. Its schema", "### 3. How to prepare it",
        "### 4. Record, check, run"], ws, _env(ws), {"/path/to/wine.csv": str(csv)})
    assert ran_stages(out) == ["prepare@wine"]
    assert {"train.parquet", "test.parquet"} <= {p.name for p in
                                                 (ws / "data/prepared/wine").iterdir()}
    assert git(ws, "ls-files", "inputs").split() == ["inputs/wine.csv"]


@pytest.mark.e2e
def test_watching_a_run_live(pipeline, tmp_path: Path) -> None:
    ws = copy_of(pipeline, tmp_path / "ws")
    set_params(ws / "params.yaml", SMALL_CNN)
    env = {k: v for k, v in _env(ws).items() if k != "DVC_STUDIO_TOKEN"}
    run_block(section("docs/experiments.md", "## Watching a run live: VS Code and DVC Studio",
                      "bash")[0].text, ws, env)
    assert json.loads((ws / "dvclive/cnn_mnist/metrics.json").read_text())
    assert (ws / "dvclive/cnn_mnist/plots/metrics/val_loss.tsv").is_file()


@pytest.mark.e2e
def test_upgrade_commands(pipeline, tmp_path: Path) -> None:
    """Recording an installation that is the recorded one: nothing re-runs, and the commit
    holds the new constraints."""
    ws = copy_of(pipeline, tmp_path / "ws")
    out = run_block(section("docs/reproducibility.md", "## Upgrading a package", "bash")[1].text,
                    ws, _env(ws)).stdout
    assert ran_stages(out) == []
    assert git(ws, "log", "-1", "--format=%s").strip() == "Upgrade ..."
    assert "constraints.txt" in git(ws, "show", "--stat", "HEAD")
    assert re.search(r"^jax==", (ws / "constraints.txt").read_text(), re.M)


def _pulled(mate: Path, original: Path) -> None:
    for name in ("data/models/cnn_mnist.safetensors", "metrics/logreg_mobile.json"):
        assert (mate / name).read_bytes() == (original / name).read_bytes(), name


@pytest.mark.e2e
def test_sharing_through_s3(pipeline, moto_s3, tmp_path: Path) -> None:  # noqa: F811
    """The page's S3 remote, model versions, experiments across the team and the local CI
    report, against moto's S3 server on 127.0.0.1 and a bare git repository."""
    doc = "docs/sharing.md"
    ws = copy_of(pipeline, tmp_path / "ws")
    bare = with_origin(ws, tmp_path / "team.git")
    keys_ = {"<access-key-id>": moto_s3.key, "<secret-access-key>": moto_s3.secret}
    subs = {"s3://bucket/jaxpipe": f"s3://{BUCKET}/docs", "https://s3.example.com": moto_s3.url,
            "<repo-url>": str(bare), **keys_}
    env = _env(ws, aws_env(), AWS_DEFAULT_REGION=REGION)
    setup, teammate = section(doc, "## Set up an S3 remote", "bash")
    run_block(setup.text, ws, env, subs)
    assert moto_s3.key not in git(bare, "show", "main:.dvc/config")

    (tmp_path / "mate").mkdir()
    pulled = run_block(teammate.text, tmp_path / "mate", _env(None, env), subs)
    mate = tmp_path / "mate" / "jaxpipe"
    assert ran_stages(pulled.stdout) == []
    _pulled(mate, ws)

    register, get = section(doc, "## Model versions", "bash")
    shown = run_block(register.text, ws, env, subs)
    assert "v1.0.0" in shown.stdout
    (tmp_path / "get").mkdir()
    creds = _env(None, env, AWS_ACCESS_KEY_ID=moto_s3.key, AWS_SECRET_ACCESS_KEY=moto_s3.secret)
    run_block(get.text, tmp_path / "get", creds, subs)
    assert ((tmp_path / "get/cnn_mnist.safetensors").read_bytes()
            == (ws / "data/models/cnn_mnist.safetensors").read_bytes())

    mine, theirs = section(doc, "## Experiments across the team", "bash")
    run_block(mine.text, ws, env, subs)
    mate_env = _env(mate, env)
    shown = run_block(theirs.text, mate, mate_env, subs)
    assert "strong-l2" in shown.stdout
    assert "l2: 0.5" in (mate / "params.yaml").read_text()

    run_block(section(doc, "## The CI report", "bash")[0].text, mate, mate_env, subs)
    summary = (mate / "ci-report/summary.md").read_text()
    assert "train.logreg_mobile.l2" in summary and "metrics/logreg_mobile.json" in summary


@pytest.mark.e2e
@pytest.mark.skipif(not (SSHD.exists() and SFTP.exists() and shutil.which("ssh-keygen")),
                    reason="OpenSSH server not installed (apt-get install openssh-server)")
def test_sharing_through_ssh(pipeline, server, keys, tmp_path: Path) -> None:  # noqa: F811
    """The page's SSH remote, against OpenSSH's sshd on 127.0.0.1; then a teammate's clone
    pulls everything, as the page says."""
    ws = copy_of(pipeline, tmp_path / "ws")
    bare = with_origin(ws, tmp_path / "team.git")
    store = tmp_path / "store"
    store.mkdir()
    subs = {"ssh://alice@store.example.com:22/srv/dvc/jaxpipe": server.url(store),
            "~/.ssh/id_ed25519": str(keys.user)}
    env = _env(ws, ssh_env(keys))
    run_block(section("docs/sharing.md", "## Set up an SSH remote", "bash")[0].text, ws, env,
              subs)
    assert str(keys.user) not in git(bare, "show", "main:.dvc/config")
    mate = tmp_path / "mate"
    git(tmp_path, "clone", "-q", str(bare), str(mate))
    run_block(f"dvc remote modify --local team keyfile {keys.user}\ndvc pull", mate,
              _env(mate, env))
    _pulled(mate, ws)


@pytest.mark.e2e
def test_devices_and_processes_commands(pipeline, tmp_path: Path) -> None:
    """Every device and process command of the page that needs no cluster or GPU, in the
    page's order, on a small CNN run: a mesh over every device, over 4 forced CPU devices,
    one process driving 2 through the launcher, then two processes (directly and as the
    stage's launch prefix)."""
    doc = "docs/DISTRIBUTED.md"
    ws = copy_of(pipeline, tmp_path / "ws")
    set_params(ws / "params.yaml", SMALL_CNN)
    env = _env(ws)
    ran = []
    for heading in ("## Devices on one machine", "## Several processes and hosts"):
        for block in section(doc, heading, "bash"):
            if block.marker and block.marker[0] == "run by":
                ran.append(run_block(block.text, ws, env).stdout)
    assert len(ran) == 4
    assert "devices: 2" in (ws / "params.yaml").read_text()
    assert (ws / "data/models/cnn_mnist.safetensors").stat().st_size > 0


@pytest.mark.e2e
def test_experiment_fan_out_commands(pipeline, tmp_path: Path) -> None:
    ws = copy_of(pipeline, tmp_path / "ws")
    set_params(ws / "params.yaml", SMALL_CNN)
    git(ws, "commit", "-q", "-am", "a small CNN")
    env = _env(ws)
    run_block(section("docs/DISTRIBUTED.md", "## Experiment fan-out", "bash")[0].text, ws, env)
    deadline = time.monotonic() + 900
    status = ""
    while time.monotonic() < deadline:  # the queue runs in the background
        status = run_block("dvc queue status", ws, env).stdout
        if not re.search(r"Queued|Running", status):
            break
        time.sleep(2)
    assert re.search(r"lr-5e-4\s.*Success", status) and re.search(r"lr-2e-3\s.*Success", status)
