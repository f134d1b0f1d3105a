"""``jaxpipe new``: add a model or a model family without touching what exists.

``new model NAME --like EXISTING`` adds a model of EXISTING's family on EXISTING's data: its
``train``/``evaluate`` sections in params.yaml (EXISTING's values, to edit), its item in
dvc.yaml's ``train`` foreach (which ``evaluate`` shares), its metrics file, its plots (added
to the plots that compare models, copied for those of one model), its artifact, and its
software in environment.yaml (the same code, so the same packages). No existing stage's
definition, params or code changes, so ``dvc status`` shows the new stages only.

``new family NAME`` writes ``src/jaxpipe/models/NAME.py`` (``kind: NAME`` finds it by its
name) implementing the whole model contract as a worked example, and its test.

Both refuse, in one line, a name that is not a lower-case identifier or already exists, and
check every new text (parsed back, compared with what was meant) before writing any; each
file is then replaced whole (temp file, rename).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jaxpipe.core.config import read_yaml, roundtrip_yaml
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import atomic_path

NAME = re.compile(r"[a-z][a-z0-9_]*")


def _check_name(name: str, what: str) -> None:
    if not NAME.fullmatch(name) or not name.isidentifier():
        raise JaxpipeError(f"{what} {name!r}: expected a lower-case identifier "
                           "(a-z, digits, _; a letter first)")


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """The index after the block that starts at line ``start`` (its own indent ``indent``)."""
    end = start + 1
    while end < len(lines):
        text = lines[end]
        if text.strip() and not text.lstrip().startswith("#") and \
                len(text) - len(text.lstrip()) <= indent:
            break
        end += 1
    while end > start + 1 and not lines[end - 1].strip():  # blank lines belong to what follows
        end -= 1
    return end


def _dashed(name: str) -> str:
    return name.replace("_", "-")


def _rename(text: str, old: str, new: str) -> str:
    """``old`` replaced by ``new`` where it is a whole name: a path part or a title's word."""
    text = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(old)}(?![A-Za-z0-9_])", new, text)
    return re.sub(rf"(?<![A-Za-z0-9_-]){re.escape(_dashed(old))}(?![A-Za-z0-9_-])",
                  _dashed(new), text)


def _dvc_yaml(text: str, name: str, like: str, desc: str, code: str | None = None
              ) -> tuple[str, Callable[[dict], None]]:
    """dvc.yaml with ``name`` added beside ``like`` (its artifact described by ``desc``),
    and the change as a function on the parsed file (to check the text against)."""
    lines = text.splitlines(keepends=True)
    doc = roundtrip_yaml().load(text)
    items = doc["stages"]["train"]["foreach"]
    line, col = items.lc.key(like)
    end = _block_end(lines, line, col)
    added = [_rename(lines[line], like, name) if i == 0 else lines[line + i]
             for i in range(end - line)]
    if code is not None:  # another family: its module is the item's code
        added = [re.sub(r"(^\s*code:\s*)\S+", rf"\g<1>{code}", t) for t in added]
    inserts: list[tuple[int, list[str]]] = [(end, added)]
    metrics_file, plots_dir = f"metrics/{like}.json", f"plots/{like}/"
    for i, item in enumerate(doc.get("metrics") or []):
        if item == metrics_file:
            at = doc["metrics"].lc.item(i)[0]
            inserts.append((at + 1, [lines[at].replace(metrics_file, f"metrics/{name}.json")]))
    for i, entry in enumerate(doc.get("plots") or []):
        title, plot = next(iter(entry.items()))
        ys = plot.get("y") if isinstance(plot, dict) else None
        if not isinstance(ys, dict) or not any(plots_dir in str(k) for k in ys):
            continue
        if all(plots_dir in str(k) for k in ys):  # a plot of this model alone: a copy for it
            at, col = doc["plots"].lc.item(i)
            stop = _block_end(lines, at, col - 2)
            inserts.append((stop, [_rename(t, like, name) for t in lines[at:stop]]))
        else:  # a plot that compares models: one more series
            for key in [k for k in ys if plots_dir in str(k)]:
                at = ys.lc.key(key)[0]
                inserts.append((at + 1, [_rename(lines[at], like, name)]))
    for key, art in (doc.get("artifacts") or {}).items():
        if isinstance(art, dict) and art.get("path") == f"data/models/{like}.safetensors":
            at, col = doc["artifacts"].lc.key(key)
            stop = _block_end(lines, at, col)
            copied = [_rename(t, like, name) for t in lines[at:stop]]
            copied = [re.sub(r"(desc: ).*$", lambda m: m[1] + desc, t.rstrip("\n")) + "\n"
                      for t in copied]
            inserts.append((stop, copied))
    for at, new in sorted(inserts, key=lambda x: x[0], reverse=True):
        lines[at:at] = new

    def meant(parsed: dict) -> None:
        items = parsed["stages"]["train"]["foreach"]
        items[name] = copy.deepcopy(items[like])
        if code is not None:
            items[name]["code"] = code
        if metrics_file in (parsed.get("metrics") or []):
            parsed["metrics"].insert(parsed["metrics"].index(metrics_file) + 1,
                                     f"metrics/{name}.json")
        plots = parsed.get("plots") or []
        for entry in list(plots):
            title, plot = next(iter(entry.items()))
            ys = plot.get("y") if isinstance(plot, dict) else None
            if not isinstance(ys, dict) or not any(plots_dir in k for k in ys):
                continue
            if all(plots_dir in k for k in ys):
                twin = read_yaml(_rename(repr_yaml({title: plot}), like, name))
                plots.insert(plots.index(entry) + 1, twin)
            else:
                for key in [k for k in ys if plots_dir in k]:
                    ys[key.replace(plots_dir, f"plots/{name}/")] = ys[key]
        for art in list((parsed.get("artifacts") or {}).values()):
            if isinstance(art, dict) and art.get("path") == f"data/models/{like}.safetensors":
                parsed["artifacts"][_dashed(name)] = {
                    **art, "path": f"data/models/{name}.safetensors",
                    "desc": desc}

    return "".join(lines), meant


def repr_yaml(data: Any) -> str:
    import io

    out = io.StringIO()
    roundtrip_yaml().dump(data, out)
    return out.getvalue()


def _checked(path: Path, old: str, new: str, meant: Callable[[dict], None]) -> str:
    expected = read_yaml(old)
    meant(expected)
    if read_yaml(new) != expected:
        raise JaxpipeError(f"{path}: could not add the new entries without changing others "
                           "(an unusual layout?); nothing was written")
    return new


def describe(name: str, kind: str, data: str | None) -> str:
    """The new artifact's ``desc``: its family and data, and where its values live (never
    numbers copied from another model's description: they would go stale)."""
    on = f" on {data}" if data else ""
    return f"A {kind} model{on} (its values in params.yaml train.{name}; describe it here)"


def next_steps(root: Path, name: str) -> str:
    """What to do after ``jaxpipe new model``, and what ``dvc status`` shows meanwhile."""
    values = list((read_yaml((root / "params.yaml").read_text())["train"] or {})[name])
    shown = ", ".join(values[:6]) + (", ..." if len(values) > 6 else "")
    return (f"next: edit params.yaml train.{name} ({shown}) and its artifact's desc in "
            f"dvc.yaml, then `dvc repro` runs train@{name} and evaluate@{name} only; until "
            "then `dvc status` lists those two stages as 'modified: stages/train.py, src/...': "
            "they have never run, no code changed")


def new_model(root: Path, name: str, like: str, kind: str | None = None) -> list[Path]:
    """Add model ``name`` as a copy of ``like`` (of family ``kind`` instead, with its
    defaults, if given); return the files changed."""
    _check_name(name, "model")
    params_path, dvc_path, env_path = (root / "params.yaml", root / "dvc.yaml",
                                       root / "environment.yaml")
    params_text, dvc_text = params_path.read_text(), dvc_path.read_text()
    params, pipeline = read_yaml(params_text), read_yaml(dvc_text)
    models = (pipeline.get("stages", {}).get("train", {}) or {}).get("foreach") or {}
    if like not in models or like not in (params.get("train") or {}):
        raise JaxpipeError(f"--like {like!r}: no such model (dvc.yaml's train stages: "
                           f"{sorted(models)})")
    taken = set(models) | set(params.get("train") or {}) | set(params.get("evaluate") or {})
    taken |= set(pipeline.get("artifacts") or {})
    if name in taken or _dashed(name) in taken:
        raise JaxpipeError(f"model {name!r}: already exists (params.yaml or dvc.yaml)")
    if (root / "data" / "models" / f"{name}.safetensors").exists():
        raise JaxpipeError(f"model {name!r}: data/models/{name}.safetensors already exists")

    code = None
    like_kind = params["train"][like].get("kind")
    if kind is not None and kind != like_kind:
        code = _family_code(root, kind, like, like_kind)
    desc = describe(name, kind or like_kind, models[like].get("data"))
    new_dvc, meant_dvc = _dvc_yaml(dvc_text, name, like, desc, code)
    writes = {dvc_path: _checked(dvc_path, dvc_text, new_dvc, meant_dvc)}
    writes[params_path] = _with_sections(params_text, name, like, ("train", "evaluate"))
    if code is not None:
        writes[params_path] = _with_defaults(writes[params_path], name, kind)
    if env_path.exists() and code is None:
        writes[env_path] = _with_sections(env_path.read_text(), name, like,
                                          ("train", "evaluate"))
    for path, text in writes.items():  # every text checked before any file is replaced
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    if code is not None and env_path.exists():  # other code, other packages: found from it
        from jaxpipe.analysis.env import record

        record(root)
        writes[env_path] = ""
    return list(writes)


def _family_code(root: Path, kind: str, like: str, like_kind: str) -> str:
    """The path of family ``kind``'s code, after checking it can stand in for ``like``'s."""
    from jaxpipe import models

    models.module_name(kind)  # one line naming the families there are
    module, other = models.load(kind), models.load(like_kind)
    if module.TASK != other.TASK:
        raise JaxpipeError(f"--kind {kind}: a {module.TASK} model, but {like}'s data and "
                           f"evaluation are for a {other.TASK} one")
    path = Path(module.__file__ or "")
    path = path.parent if path.name == "__init__.py" else path
    return path.resolve().relative_to((root / "src").resolve().parent).as_posix()


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", text) else json.dumps(text)


def _with_defaults(text: str, name: str, kind: str) -> str:
    """params.yaml with ``train.<name>`` replaced by ``kind`` and its family's defaults."""
    import dataclasses

    from jaxpipe import models

    lines = text.splitlines(keepends=True)
    entries = roundtrip_yaml().load(text)["train"]
    at, col = entries.lc.key(name)
    stop = _block_end(lines, at, col)
    pad = " " * (col + 2)
    block = [f"{' ' * col}{name}:  # kind {kind}, with its defaults: change what differs\n",
             f"{pad}kind: {kind}\n"]
    for field in dataclasses.fields(models.load(kind).Config):
        default = field.default
        if default is dataclasses.MISSING or isinstance(default, dict | list):
            continue
        block.append(f"{pad}{field.name}: {_yaml_scalar(default)}".rstrip() + "\n")
    lines[at:stop] = block
    result = "".join(lines)
    parsed = read_yaml(result)["train"][name]
    if parsed.get("kind") != kind:
        raise JaxpipeError(f"could not write train.{name}; nothing was written")
    return result


def _with_sections(text: str, name: str, like: str, sections: tuple[str, ...]) -> str:
    """``text`` (params.yaml or environment.yaml) with ``<section>.<name>`` a copy of
    ``<section>.<like>``, line for line, right after it (the key line's comment replaced)."""
    lines = text.splitlines(keepends=True)
    doc = roundtrip_yaml().load(text)
    expected = read_yaml(text)
    inserts = []
    for section in sections:
        entries = doc.get(section)
        if entries is None or like not in entries:
            continue
        at, col = entries.lc.key(like)
        stop = _block_end(lines, at, col)
        head = _rename(lines[at], like, name).rstrip("\n")
        if re.match(r"^\s*[A-Za-z0-9_]+:\s+#", head):  # a comment about the original
            head = re.sub(r"\s+#.*$", f"  # a copy of {like}: change what differs", head)
        inserts.append((stop, [head + "\n", *lines[at + 1:stop]]))
        expected[section][name] = copy.deepcopy(expected[section][like])
    for at, new in sorted(inserts, key=lambda x: x[0], reverse=True):
        lines[at:at] = new
    result = "".join(lines)
    if read_yaml(result) != expected:
        raise JaxpipeError("could not add the new sections; nothing was written")
    return result


FAMILY = '''"""{title}: a model family of jaxpipe (written by `jaxpipe new family {name}`).

A worked example of the whole contract, to change into your own model: binary logistic
regression trained by full-batch Optax Adam. ``kind: {name}`` in params.yaml
``train.<model>`` selects this module; `jaxpipe new model MY_MODEL --like EXISTING --kind
{name}` wires a model of it into dvc.yaml. The contract (``jaxpipe.models``):

- ``Config``: params.yaml ``train.<model>`` less ``kind``, checked when read; it subclasses
  ``TrainConfig``, which holds and checks ``seed``, ``lr`` and ``max_loss_growth``;
- ``TASK``: "binary", "multiclass" or "regression" (chooses the metrics and the loss guard);
- ``fit(cfg, data) -> Fit``: parameters, a per-step ``train_loss`` history, facts;
- ``predict(cfg, params, x)``: P(class 1) (binary), class probabilities (multiclass) or values;
- ``init(cfg, n_features)``: the initial parameters; a model file is checked against the
  shapes it gives (a family whose shapes need more than the feature count defines
  ``template(cfg, inputs)`` instead, ``inputs`` being the data's ``data.inputs.Inputs``);
- ``metrics(cfg, params, info)``: what this family adds to its task's metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpipe.core.config import MAX_STEPS, in_range
from jaxpipe.data.tables import Dataset
from jaxpipe.models import Fit, Task, TrainConfig

Params = dict[str, jax.Array]
TASK: Task = "binary"


@dataclass(frozen=True)
class Config(TrainConfig):
    """params.yaml ``train.<model>`` for kind ``{name}``; every key has a default."""

    steps: int = 200
    lr: float = 0.05  # redeclared: only its default changes (TrainConfig checks it)

    def __post_init__(self) -> None:
        super().__post_init__()  # seed, lr and max_loss_growth, shared by every family
        in_range(self.steps, "steps", 1, MAX_STEPS)


def init(cfg: Config, n_features: int) -> Params:
    """Small normal weights from ``key(seed)``: every random draw from a seed in params."""
    w = 0.01 * jax.random.normal(jax.random.key(cfg.seed), (n_features,))
    return {{"w": w, "b": jnp.zeros((), jnp.float32)}}


def _loss(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    z = x @ params["w"] + params["b"]
    return jnp.mean(jax.nn.softplus(z) - y * z)  # binary cross-entropy, stable


def fit(cfg: Config, data: Dataset) -> Fit:
    """Full-batch Adam, one compiled ``lax.scan`` over the steps; the loss after each."""
    train = data.split("train")
    x, y = jnp.asarray(train.x), jnp.asarray(train.y, jnp.float32)
    tx = optax.adam(cfg.lr)
    params = init(cfg, x.shape[1])

    def step(state: tuple, _: None) -> tuple[tuple, jax.Array]:
        params, opt = state
        loss, grads = jax.value_and_grad(_loss)(params, x, y)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), opt), loss

    (params, _), losses = jax.jit(lambda s: jax.lax.scan(step, s, None, length=cfg.steps))(
        (params, tx.init(params)))
    return Fit(params, {{"train_loss": losses}}, {{"steps": cfg.steps}})


def predict(cfg: Config, params: Params, x: np.ndarray) -> np.ndarray:
    """P(class 1) for each row of model-ready (scaled) features."""
    return np.asarray(jax.nn.sigmoid(jnp.asarray(x) @ params["w"] + params["b"]))


def metrics(cfg: Config, params: Params, info: dict) -> dict:
    """Figures of this family beyond its task's (they go to metrics/details/)."""
    return {{"weight_norm": round(float(jnp.linalg.norm(params["w"])), 6)}}
'''

FAMILY_TEST = '''"""The {name} model family (from `jaxpipe new family {name}`): the contract."""

import jax
import numpy as np
import pytest

from jaxpipe.core.config import parse
from jaxpipe.core.errors import ConfigError
from jaxpipe.data.inputs import Inputs
from jaxpipe.models import load, template, {name}
from jaxpipe.train import TrainConfig, train


INPUTS = Inputs(("a", "b", "c"), (0.0,) * 3, (1.0,) * 3, "y", "scaled", classes=2)


def separable(n: int = 200, seed: int = 0):
    from helpers import make_dataset

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).astype(np.int64)
    return make_dataset(INPUTS, train=(x, y), test=(x, y))


def test_kind_{name}_finds_this_module() -> None:
    assert load("{name}") is {name}


def test_it_learns_a_separable_set_and_predicts_probabilities() -> None:
    data = separable()
    fit = train(TrainConfig("{name}", {name}.Config()), data)
    assert fit.history["train_loss"][-1] < 0.5 * fit.history["train_loss"][0]
    p = {name}.predict({name}.Config(), fit.params, data.split("test").x)
    assert p.shape == (200,) and ((p >= 0) & (p <= 1)).all()
    assert ((p > 0.5) == (data.split("test").y == 1)).mean() > 0.9


def test_the_same_seed_gives_the_same_bytes() -> None:
    a = {name}.fit({name}.Config(steps=20), separable())
    b = {name}.fit({name}.Config(steps=20), separable())
    pairs = zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True)
    assert all(np.asarray(p).tobytes() == np.asarray(q).tobytes() for p, q in pairs)


def test_a_model_file_is_checked_against_the_shapes_fit_returns() -> None:
    cfg = {name}.Config(steps=5)
    fit = {name}.fit(cfg, separable())
    shapes = template({name}, cfg, INPUTS)
    assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(np.shape, fit.params)


@pytest.mark.parametrize(("key", "value"), [("lr", 0.0), ("steps", 0), ("seed", -1)])
def test_a_bad_value_is_named(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"^train\\.m\\.{{key}}: "):
        parse({name}.Config, {{key: value}}, "train.m")
'''


def new_family(root: Path, name: str) -> list[Path]:
    """Write the family module ``name`` and its test; return them."""
    _check_name(name, "family")
    module = root / "src" / "jaxpipe" / "models" / f"{name}.py"
    package = module.with_suffix("")
    test = root / "tests" / f"test_family_{name}.py"
    for path in (module, package, test):
        if path.exists():
            raise JaxpipeError(f"family {name!r}: {path.relative_to(root)} already exists")
    title = name.replace("_", " ").capitalize()
    texts = {module: FAMILY.format(name=name, title=title),
             test: FAMILY_TEST.format(name=name)}
    for path, text in texts.items():
        compile(text, str(path), "exec")  # a template that is not Python is our bug: refuse
    for path, text in texts.items():
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return list(texts)
