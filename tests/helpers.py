"""Test helpers: small real data files, a real HTTP server on 127.0.0.1, and the pieces
several test files share."""

from __future__ import annotations

import atexit
import functools
import hashlib
import http.server
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from jaxpipe.data.idx import write_idx
from jaxpipe.data.raw import MNIST_FILES
from jaxpipe.data.specs import DownloadConfig, FileSpec
from jaxpipe.tools.workspace import committed_copy

ROOT = Path(__file__).parents[1]


def committed(name: str) -> str:
    """File ``name`` of this repository as committed at HEAD: a test never reads the user's
    own models, params edits or experiments."""
    return (committed_tree() / name).read_text()


@functools.cache
def committed_tree() -> Path:
    """The whole repository as committed at HEAD, unpacked once per test process into a
    temporary folder (a git repository of its own, none of it committed, as DVC needs one):
    what a test reads of the project's dvc.yaml, params.yaml, records and code
    (``committed`` for one file)."""
    dest = Path(tempfile.mkdtemp(prefix="jaxpipe-head-"))
    atexit.register(shutil.rmtree, dest, ignore_errors=True)
    committed_copy(ROOT, dest)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def edit_yaml(path: Path, change: Callable[[Any], None]) -> None:
    """Apply ``change`` to ``path``'s YAML as data, in place (ruamel's round trip keeps the
    comments): a test's edit holds however a team has laid out its dvc.yaml or params.yaml,
    where a text replacement would silently match nothing."""
    from ruamel.yaml import YAML

    yaml = YAML()
    data = yaml.load(path)
    change(data)
    yaml.dump(data, path)


def download_deps(spec: Any) -> list:
    """The ``deps`` list of dvc.yaml's download stages (one template for every item)."""
    return spec["stages"]["download"]["do"]["deps"]


def unused(root: Path, name: str) -> str:
    """``name``, or ``name_2``, ``name_3``...: the first that is neither a model of ``root``'s
    params.yaml nor a family module there, so a team's own committed models (the docs'
    example names first) never collide with a test's."""
    import yaml

    taken = set(yaml.safe_load((root / "params.yaml").read_text())["train"])
    taken |= {p.stem for p in (root / "src/jaxpipe/models").glob("*.py")}
    return next(n for n in (name, *(f"{name}_{i}" for i in range(2, 100))) if n not in taken)


MOBILE_COLUMNS = [
    "battery_power", "blue", "clock_speed", "dual_sim", "fc", "four_g", "int_memory", "m_dep",
    "mobile_wt", "n_cores", "pc", "px_height", "px_width", "ram", "sc_h", "sc_w", "talk_time",
    "three_g", "touch_screen", "wifi", "price_range",
]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324


def mobile_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A mobile-price-shaped table that fits schemas/mobile_price.yaml, whose price_range
    depends on ram (learnable)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.integers(0, 20, size=(n, 20)), columns=MOBILE_COLUMNS[:-1])
    for flag in ("blue", "dual_sim", "four_g", "three_g", "touch_screen", "wifi"):
        frame[flag] = rng.integers(0, 2, size=n)
    frame["n_cores"] = rng.integers(1, 9, size=n)
    frame["clock_speed"] = rng.integers(5, 31, size=n) / 10
    frame["m_dep"] = rng.integers(1, 11, size=n) / 10
    frame["ram"] = rng.integers(256, 4000, size=n)
    frame["price_range"] = np.digitize(frame["ram"], [1200, 2100, 3000])
    return frame


def write_fake_mirror(root: Path, n_train: int = 120, n_test: int = 60) -> Path:
    """A local mirror in the official layout, with MD5SUMS, holding small real-format files."""
    (root / "mobile-price").mkdir(parents=True)
    mobile_frame().to_csv(root / "mobile-price" / "train.csv", index=False)
    mnist = root / "mnist"
    mnist.mkdir()
    rng = np.random.default_rng(1)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):  # a bright bar whose place encodes the label
            images[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 250
        write_idx(mnist / MNIST_FILES[split][0], images)
        write_idx(mnist / MNIST_FILES[split][1], labels)
    for folder in (root / "mobile-price", mnist):
        files = sorted(p for p in folder.iterdir() if p.name != "MD5SUMS")
        (folder / "MD5SUMS").write_text("".join(f"{md5(p)}  {p.name}\n" for p in files))
    return root


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves files of ``root`` at /good/, /corrupt/ (bytes flipped), /truncate/ (cut short)."""

    root: Path

    def do_GET(self) -> None:  # noqa: N802
        mode, _, name = self.path.strip("/").partition("/")
        path = self.root / name
        if mode in ("trickle", "endless"):
            self._hostile(mode)
            return
        if mode not in ("good", "corrupt", "truncate") or not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "corrupt":
            body = bytes(b ^ 0xFF for b in body[:16]) + body[16:]
        if mode == "truncate":
            body = body[: len(body) // 2]
        self.wfile.write(body)
        if mode == "truncate":
            self.close_connection = True

    def _hostile(self, mode: str) -> None:
        """``trickle``: a byte every 0.2 s; ``endless``: no length, 64 KiB blocks without end
        (each bounded: 5 s or 64 MiB, so a broken client cannot keep the test running)."""
        self.send_response(200)
        self.end_headers()
        started = time.monotonic()
        try:
            for _ in range(1024):
                if time.monotonic() - started > 5:
                    return
                self.wfile.write(b"x" if mode == "trickle" else b"x" * 65536)
                self.wfile.flush()
                if mode == "trickle":
                    time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler],
            wait_for_handlers: bool = True) -> Iterator[str]:
    """A threading HTTP server with ``handler`` on 127.0.0.1 at a free port; yield its base
    URL. ``wait_for_handlers=False``: closing does not wait for a handler that still sleeps."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.block_on_close = wait_for_handlers
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def http_server(root: Path) -> AbstractContextManager[str]:
    """Serve ``root`` on 127.0.0.1 at a free port; yield the base URL."""
    return serving(type("Handler", (_Handler,), {"root": root}))


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# Downloads (test_http.py, test_sources.py): file specs, and a server that answers oddly.
IMAGES = "train-images-idx3-ubyte.gz"  # the file name spec_of gives by default
LABELS = "t10k-labels-idx1-ubyte.gz"  # a file of the fake mirror (spec_for)
BODY = np.random.default_rng(0).integers(0, 256, 100 << 10, dtype=np.uint8).tobytes()  # 100 KiB


def spec_of(data: bytes, sized: bool = True, name: str = IMAGES) -> FileSpec:
    return FileSpec(name=name, md5=hashlib.md5(data).hexdigest(),  # noqa: S324
                    size=len(data) if sized else None)


def spec_for(mirror: Path) -> FileSpec:
    """The spec of LABELS as ``mirror`` holds it."""
    path = mirror / "mnist" / LABELS
    return FileSpec(name=LABELS, md5=md5(path), size=path.stat().st_size)


def download_config(urls: list[str], spec: FileSpec, **limits: float) -> DownloadConfig:
    """``spec`` as file ``f`` of the ``mnist`` mirror folder, from ``urls``; timeout_s 5 s."""
    return DownloadConfig(mirror_folder="mnist", files={"f": spec}, urls=urls,
                          **{"timeout_s": 5.0, **limits})


class OddHandler(http.server.BaseHTTPRequestHandler):
    """``/endless/``: 64 MiB with no length; ``/nolength/``: BODY with no Content-Length;
    ``/bogus/``: a Content-Length that is not a number; ``/silent/``: a length, 10 bytes, then
    silence (2 s); ``/chunked/``: BODY in 10 kB chunks, cut off after 7 of them;
    ``/gateway/``: what a proxy says when it cannot reach the internet (HTTP 504)."""

    protocol_version = "HTTP/1.1"
    sent: list[int] = []  # bytes each ``/endless/`` response got out before the client left
    done = threading.Event()

    def do_GET(self) -> None:  # noqa: N802
        mode = self.path.strip("/").split("/")[0]
        if mode == "endless":
            self._endless()
            return
        if mode == "gateway":
            self.send_error(504)
            return
        self.send_response(200)
        if mode == "nolength":
            self.send_header("Connection", "close")
        elif mode == "bogus":
            self.send_header("Content-Length", "lots")
            self.send_header("Connection", "close")
        elif mode == "silent":
            self.send_header("Content-Length", str(len(BODY)))
        elif mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if mode == "silent":
                self.wfile.write(BODY[:10])
                self.wfile.flush()
                time.sleep(2)
            elif mode == "chunked":
                for start in range(0, 70_000, 10_000):
                    self.wfile.write(b"%x\r\n" % 10_000 + BODY[start: start + 10_000] + b"\r\n")
                self.wfile.write(b"2710\r\n" + BODY[70_000: 70_100])  # a chunk cut short
            else:
                self.wfile.write(BODY)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _endless(self) -> None:
        """No length, 64 KiB blocks up to 64 MiB: counts what it got out."""
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        try:
            for _ in range(1024):
                self.wfile.write(b"x" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            OddHandler.sent.append(sent)
            OddHandler.done.set()
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def odd_server() -> AbstractContextManager[str]:
    """OddHandler's server; closing does not wait for a handler that still sends."""
    return serving(OddHandler, wait_for_handlers=False)


# Writers (test_fileio.py, test_artifacts.py, test_tables.py): the same content built in
# another order gives the same bytes.
MODEL_META = {"model": "m", "kind": "logreg", "config": {"lr": 0.1, "steps": 5, "l2": 0.0},
              "info": {"steps": 5, "converged": True},
              "inputs": {"features": ["a", "b"], "mean": [0.5, 1.5]}}


def reordered(value):
    """The same mapping with every dict's keys inserted in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    return value


def random_table(n: int = 50) -> pa.Table:
    """Two float columns and a 0/1 target ``y``, the same for the same ``n``."""
    rng = np.random.default_rng(0)
    return pa.table({"a": rng.normal(size=n), "b": rng.normal(size=n),
                     "y": pa.array(rng.integers(0, 2, n))})


def params_yaml(folder: Path, text: str) -> Path:
    """``text`` written as ``folder``/params.yaml."""
    path = folder / "params.yaml"
    path.write_text(text)
    return path


def inputs_for(x: np.ndarray, y: np.ndarray):
    """The ``Inputs`` prepare would record for model-ready ``x`` and targets ``y``: images
    (n, h, w, 1) of raw pixels, or feature columns f0, f1, ... already scaled; classes for
    integer labels."""
    from jaxpipe.data.inputs import Inputs

    x, y = np.asarray(x), np.asarray(y)
    classes = max(int(y.max()) + 1, 2) if y.dtype.kind in "iub" else None
    if x.ndim == 4:
        return Inputs.of_images(x.shape[1:3], classes or 10, 1.0)
    n = x.shape[1]
    return Inputs(tuple(f"f{i}" for i in range(n)), (0.0,) * n, (1.0,) * n, "y", "scaled",
                  classes)


def make_dataset(inputs=None, **splits: tuple[np.ndarray, np.ndarray]):
    """A prepared ``Dataset`` built in memory from ``name=(x, y)`` arrays (no files); its
    ``Inputs`` as given, or as ``inputs_for`` finds them from the training split."""
    from jaxpipe.data.tables import Dataset, Split

    built = {name: Split(np.asarray(x, np.float32), np.asarray(y), [])
             for name, (x, y) in splits.items()}
    return Dataset(Path("memory"), built, inputs or inputs_for(*splits["train"]))


def help_text(main, capsys, monkeypatch) -> str:
    """A command's ``--help``, on one line (whitespace collapsed), at a wide terminal."""
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["--help"])
    return " ".join(capsys.readouterr().out.split())


def model_outputs(root: Path) -> dict[str, bytes]:
    """Every model and metrics file of a workspace, by path."""
    files = [*root.glob("data/models/*.safetensors"), *root.glob("metrics/*.json")]
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(files)}


def assert_pulled_whole(mate: Path, original: Path, run) -> None:
    """A teammate's clone after ``dvc pull`` (``run(cwd, *cmd)`` runs a command there): its
    status is clean, ``dvc repro`` runs nothing, and every model and metrics file (one of
    each per model of dvc.yaml) is byte-identical to ``original``'s."""

    from jaxpipe.preflight import stage_items
    from jaxpipe.tools.workspace import changed, ran_stages

    assert changed(run(mate, "dvc", "status", "--json").stdout) == {}
    assert ran_stages(run(mate, "dvc", "repro").stdout) == []
    mine, theirs = model_outputs(mate), model_outputs(original)
    models = stage_items(original / "dvc.yaml")["train"]  # a model and metrics each
    assert mine == theirs and len(mine) == 2 * len(models)


def old_output_set(root: Path, model_text: str = "old model",
                   roc_text: str = "old roc") -> tuple[Path, Path]:
    """A stage's earlier outputs under ``root``: a model file and a plots folder (roc.csv)."""
    model, plots = root / "models" / "m.st", root / "plots" / "eval"
    model.parent.mkdir()
    model.write_text(model_text)
    plots.mkdir(parents=True)
    (plots / "roc.csv").write_text(roc_text)
    return model, plots


def fake_release(folder: Path, dist: str, version: str) -> Path:
    """A real ``.dist-info`` of ``dist`` at ``version``, to put ahead on the path: what
    importlib.metadata (and so pip) then reports as installed."""
    info = folder / f"{dist}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    return folder
