"""A team on a real S3 server (moto, on 127.0.0.1, credentials checked): push, clone and
pull, a wrong key, model versions through GTO tags, experiments shared through git."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests
import yaml
from botocore.exceptions import ClientError
from helpers import assert_pulled_whole

from jaxpipe.tools.workspace import GIT_ENV, git, ran_stages

ROOT = Path(__file__).parents[1]
BUCKET, PREFIX, REGION = "jaxpipe", "store", "us-east-1"
ALLOW_S3 = {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@dataclass(frozen=True)
class S3:
    """A running S3 server: its URL and the only access key it accepts."""

    url: str
    key: str
    secret: str

    def client(self, key: str | None = None, secret: str | None = None):
        return boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=key or self.key,
                            aws_secret_access_key=secret or self.secret)

    def objects(self, sub: str) -> dict[str, int]:
        """Size of each object under ``PREFIX/sub``, by key relative to it."""
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=f"{PREFIX}/{sub}")
        start = len(f"{PREFIX}/{sub}")
        return {o["Key"][start:]: o["Size"] for page in pages for o in page.get("Contents", [])}

    def usage(self, sub: str) -> tuple[int, int]:
        """Objects and bytes stored under ``PREFIX/sub``."""
        sizes = self.objects(sub).values()
        return len(sizes), sum(sizes)


def aws_env(key: str | None = None, secret: str | None = None) -> dict[str, str]:
    """This process's environment with no AWS settings but ``key``/``secret`` (if given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(GIT_ENV, AWS_EC2_METADATA_DISABLED="true")
    if key and secret:
        env.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
    return env


def run(cwd: Path, *cmd: str, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``cmd`` (dvc, gto) in ``cwd`` with a bounded time; fail with its output's tail."""
    exe = shutil.which(cmd[0]) or cmd[0]
    proc = subprocess.run([exe, *cmd[1:]], cwd=cwd, env=env or aws_env(), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def _wait_until_up(url: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            requests.get(f"{url}/moto-api/", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"the S3 server at {url} did not start within {seconds} s")


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """moto's S3 server on 127.0.0.1: one bucket, one IAM user; unsigned or wrongly signed
    requests are refused (moto checks keys once ``reset-auth`` sets the free count to 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    log = (tmp_path_factory.mktemp("s3") / "moto.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             url.rsplit(":", 1)[1]], stdout=log, stderr=subprocess.STDOUT,
                            env=aws_env())
    try:
        _wait_until_up(url, proc)
        boot = dict(endpoint_url=url, region_name=REGION, aws_access_key_id="boot",
                    aws_secret_access_key="boot")
        iam = boto3.client("iam", **boot)
        iam.create_user(UserName="ci")
        iam.put_user_policy(UserName="ci", PolicyName="s3", PolicyDocument=json.dumps(ALLOW_S3))
        key = iam.create_access_key(UserName="ci")["AccessKey"]
        boto3.client("s3", **boot).create_bucket(Bucket=BUCKET)
        requests.post(f"{url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        yield S3(url, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass(frozen=True)
class Team:
    """A bare git repo (the team's), the clone that pushed to it, and the push's figures."""

    bare: Path
    origin: Path
    push_seconds: float


def set_credentials(repo: Path, key: str, secret: str) -> None:
    """Credentials as a user sets them: ``.dvc/config.local``, never ``.dvc/config``."""
    run(repo, "dvc", "remote", "modify", "--local", "team", "access_key_id", key)
    run(repo, "dvc", "remote", "modify", "--local", "team", "secret_access_key", secret)


def clone(team: Team, dest: Path, s3: S3 | None) -> Path:
    """A teammate's clone of the team repo, with the right credentials when ``s3`` is given."""
    git(dest.parent, "clone", "-q", str(team.bare), str(dest))
    if s3 is not None:
        set_credentials(dest, s3.key, s3.secret)
    return dest


@pytest.fixture(scope="session")
def team(pipeline, s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Team:
    """The pipeline's results committed in a clone (the pipeline workspace itself is only
    read: its cache serves as this clone's), pushed to git and to S3 with the run cache."""
    base = tmp_path_factory.mktemp("team")
    bare, origin = base / "team.git", base / "origin"
    git(base, "init", "-q", "--bare", "-b", "main", str(bare))
    git(base, "clone", "-q", str(pipeline.root), str(origin))
    shutil.copy2(pipeline.root / "dvc.lock", origin / "dvc.lock")
    run(origin, "dvc", "cache", "dir", "--local", str(pipeline.root / ".dvc" / "cache"))
    run(origin, "dvc", "remote", "add", "-d", "-f", "team", f"s3://{BUCKET}/{PREFIX}")
    run(origin, "dvc", "remote", "modify", "team", "endpointurl", s3.url)
    run(origin, "dvc", "remote", "modify", "team", "region", REGION)
    run(origin, "dvc", "remote", "modify", "team", "verify", "true")  # as docs/sharing.md
    set_credentials(origin, s3.key, s3.secret)
    git(origin, "add", "dvc.lock", ".dvc/config")
    git(origin, "commit", "-q", "-m", "Pipeline results, team remote")
    git(origin, "remote", "set-url", "origin", str(bare))
    git(origin, "push", "-q", "origin", "main")
    start = time.perf_counter()
    run(origin, "dvc", "push", "--run-cache")
    return Team(bare, origin, time.perf_counter() - start)


def exp_metrics(shown: list) -> dict[str, dict]:
    """``dvc exp show --json``: each named experiment's logreg_mobile metrics."""
    found = {}
    for exp in (e for commit in shown for e in (commit.get("experiments") or [])):
        for rev in exp["revs"]:
            file = rev["data"]["metrics"].get("metrics/logreg_mobile.json") or {}
            if "data" in file:
                found[rev.get("name")] = file["data"]
    return found


def test_the_server_refuses_unknown_and_wrong_keys(s3: S3) -> None:
    assert s3.client().head_bucket(Bucket=BUCKET)
    for key, secret, code in (("AKIANOBODY", "x", "InvalidAccessKeyId"),
                              (s3.key, "wrong", "SignatureDoesNotMatch")):
        with pytest.raises(ClientError, match=code):
            s3.client(key, secret).list_objects_v2(Bucket=BUCKET)


@pytest.mark.e2e
def test_push_sends_every_output_and_the_run_cache(team: Team, s3: S3) -> None:
    lock = yaml.safe_load((team.origin / "dvc.lock").read_text())
    hashes = {out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}
    stored = set(s3.objects("files/md5/"))
    assert len(hashes) > 30 and {f"{h[:2]}/{h[2:]}" for h in hashes} <= stored
    files, size = s3.usage("files/md5/")
    runs, _ = s3.usage("runs/")
    assert runs >= len([s for s in lock["stages"].values() if s.get("outs")])  # not the check
    print(f"\ndvc push --run-cache: {files} objects, {size / 1e6:.1f} MB (+{runs} run-cache"
          f" entries) in {team.push_seconds:.1f} s")


@pytest.mark.e2e
def test_credentials_live_only_in_config_local(team: Team, s3: S3) -> None:
    shared = git(team.bare, "show", "main:.dvc/config")
    assert s3.url in shared and "s3://" in shared
    assert s3.secret not in shared and "secret_access_key" not in shared
    assert "access_key_id" not in shared and s3.key not in shared
    local = (team.origin / ".dvc" / "config.local").read_text()
    assert s3.key in local and s3.secret in local
    assert git(team.origin, "check-ignore", ".dvc/config.local").strip() == ".dvc/config.local"


@pytest.mark.e2e
def test_clone_and_pull_from_s3_restores_everything(team: Team, s3: S3, pipeline,
                                                     tmp_path: Path) -> None:
    mate = clone(team, tmp_path / "mate", s3)
    start = time.perf_counter()
    run(mate, "dvc", "pull")
    seconds = time.perf_counter() - start
    assert_pulled_whole(mate, pipeline.root, run)
    size = sum(f.stat().st_size for f in (mate / "data").rglob("*") if f.is_file())
    print(f"\ndvc pull: data/ {size / 1e6:.1f} MB (+ metrics, plots) in {seconds:.1f} s")


@pytest.mark.e2e
@pytest.mark.parametrize("key", ["right", "AKIANOBODY"])
def test_wrong_credentials_fail_with_a_clear_message(team: Team, s3: S3, tmp_path: Path,
                                                     key: str) -> None:
    mate = clone(team, tmp_path / "mate", None)
    set_credentials(mate, s3.key if key == "right" else key, "not-the-secret")
    out = run(mate, "dvc", "pull", check=False, timeout=300)
    assert out.returncode != 0
    assert "failed to connect to s3 (jaxpipe/store/files/md5) - Forbidden" in out.stderr
    assert "An error occurred (403)" in out.stderr
    assert not (mate / "data/models/cnn_mnist.safetensors").exists()


@pytest.mark.e2e
def test_a_registered_model_version_is_fetched_through_s3(team: Team, s3: S3, pipeline,
                                                         tmp_path: Path) -> None:
    run(team.origin, "gto", "register", "cnn-mnist", "HEAD", "--version", "v1.0.0", "--push")
    assert git(team.bare, "cat-file", "-t", "cnn-mnist@v1.0.0").strip() == "tag"  # annotated
    out = tmp_path / "fetched.safetensors"
    run(tmp_path, "dvc", "artifacts", "get", str(team.bare), "cnn-mnist", "--rev", "v1.0.0",
        "-o", str(out), env=aws_env(s3.key, s3.secret))
    model = "data/models/cnn_mnist.safetensors"
    assert out.read_bytes() == (pipeline.root / model).read_bytes()


@pytest.fixture(scope="module")
def experiment(team: Team, s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Alice's clone after one experiment, pushed to the git remote and to S3."""
    alice = clone(team, tmp_path_factory.mktemp("alice") / "repo", s3)
    run(alice, "dvc", "pull")
    ran = run(alice, "dvc", "exp", "run", "-n", "strong-l2", "-S", "train.logreg_mobile.l2=0.5")
    assert set(ran_stages(ran.stdout)) == {"train@logreg_mobile", "evaluate@logreg_mobile"}
    run(alice, "dvc", "exp", "push", "origin", "strong-l2")
    return alice


@pytest.mark.e2e
def test_experiments_travel_through_git_and_s3(team: Team, s3: S3, experiment: Path,
                                               tmp_path: Path) -> None:
    alice, bob = experiment, clone(team, tmp_path / "bob", s3)
    run(bob, "dvc", "pull")
    run(bob, "dvc", "exp", "pull", "origin", "strong-l2")
    shown = exp_metrics(json.loads(run(bob, "dvc", "exp", "show", "--json").stdout))
    metrics = "metrics/logreg_mobile.json"
    assert shown["strong-l2"] == json.loads((alice / metrics).read_text())
    before = (bob / metrics).read_bytes()
    run(bob, "dvc", "exp", "apply", "strong-l2")
    for name in (metrics, "data/models/logreg_mobile.safetensors", "params.yaml"):
        assert (bob / name).read_bytes() == (alice / name).read_bytes(), name
    assert (bob / metrics).read_bytes() != before  # the experiment really changed the model


@pytest.mark.e2e
def test_ci_report_step_diffs_metrics_and_params(experiment: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    env = {**aws_env(), "JAXPIPE_WORKSPACE": str(experiment), "GITHUB_STEP_SUMMARY": str(summary),
           "REPORT_DIR": str(tmp_path / "report")}
    run(ROOT, str(ROOT / ".ci" / "steps.sh"), "report", "HEAD", env=env)
    text = summary.read_text()
    metrics, params = text.split("## Params")[0], text.split("## Params")[1].split("## Plots")[0]
    changed = {row.split("|")[1].strip() for row in metrics.splitlines()
               if row.startswith("| metrics/")}
    assert changed == {"metrics/logreg_mobile.json"}  # the experiment's model, nothing else
    assert "train.logreg_mobile.l2" in params and "0.5" in params
    assert (tmp_path / "report" / "plots-diff" / "index.html").stat().st_size > 0


def test_ci_workflow_is_valid_and_runs_only_the_local_steps() -> None:
    workflow = ROOT / ".github" / "workflows" / "ci.yml"
    run(ROOT, "check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(workflow))
    steps = (ROOT / ".ci" / "steps.sh").read_text()
    runs = [line.split("run:", 1)[1].split() for line in workflow.read_text().splitlines()
            if line.strip().startswith("run:")]
    assert runs and all(cmd[0] == ".ci/steps.sh" and f"\n  {cmd[1]})" in steps for cmd in runs)
    local = (ROOT / ".ci" / "run").read_text()
    for step in ("install", "lint", "test", "repro"):
        assert [".ci/steps.sh", step] in runs and f".ci/steps.sh {step}" in local
