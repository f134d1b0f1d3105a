"""Typed, validated stage configs read from params.yaml.

Every stage reads one section of params.yaml into a dataclass. A wrong key, a missing key or
a value of the wrong type fails at start-up with a message that names the key. YAML is read
with the 1.2 semantics DVC uses (ruamel.yaml), so a value DVC writes, such as ``1e-05`` from
``dvc exp run -S``, reads back as the same number here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.representer import RoundTripRepresenter

from jaxpipe.core.errors import ConfigError

T = TypeVar("T")


MAX_YAML_VALUES = 1_000_000  # every value a document holds once its aliases are expanded


class YAMLTooLarge(YAMLError):
    """A document whose aliases expand to more values than any project file needs (the
    "billion laughs" bomb: nine aliases of nine aliases..., small on disk, endless to walk)."""

    def __str__(self) -> str:
        return f"its aliases expand to more than {MAX_YAML_VALUES:,} values (an alias bomb?)"


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """How many values ``node`` holds with every alias expanded (shared nodes counted once
    per use, each computed once)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = MAX_YAML_VALUES + 1  # a node that holds itself expands without end
    children = node.value if isinstance(node.value, list) else []
    total = 1
    for child in children:
        for part in child if isinstance(child, tuple) else (child,):
            total += _expanded_size(part, memo)
            if total > MAX_YAML_VALUES:
                break
    memo[id(node)] = total
    return total


def read_yaml(text: str) -> Any:
    """Plain Python values from YAML 1.2 text, as DVC reads params (``1e-5`` is a float).
    A document whose aliases expand past ``MAX_YAML_VALUES`` values is refused
    (``YAMLTooLarge``) before anything walks it."""
    yaml = YAML(typ="safe", pure=True)
    node = yaml.compose(text)
    if node is not None and _expanded_size(node, {}) > MAX_YAML_VALUES:
        raise YAMLTooLarge()
    return yaml.load(text)


def read_yaml_file(path: str | Path) -> Any:
    """``read_yaml`` of a file, every failure one ``ConfigError`` naming the file."""
    path = Path(path)
    try:
        return read_yaml(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None


def yaml_problem(exc: YAMLError) -> str:
    """What is wrong with a YAML file, for an error line: the kind of error, where and what
    (``ConstructorError at line 3: could not determine a constructor for the tag ...``)."""
    if isinstance(exc, YAMLTooLarge):
        return str(exc)
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or not problem:
        return exc.__class__.__name__
    return f"{exc.__class__.__name__} at line {mark.line + 1}: {' '.join(str(problem).split())}"


def load_params(path: str | Path, *keys: str) -> Any:
    """Return the value at ``keys`` (e.g. ``"train", "xor_mlp"``) of a params YAML file."""
    path = Path(path)
    try:
        data = read_yaml(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    where = str(path)
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            raise ConfigError(f"{where}: missing key '{key}'")
        data = data[key]
        where = f"{where}:{key}" if where == str(path) else f"{where}.{key}"
    return data


class _NullRepresenter(RoundTripRepresenter):
    """Writes ``null`` for None. A subclass of its own: ``add_representer`` on ruamel's class
    would change every writer in the process, DVC's ``dvc exp run -S`` writer included."""


_NullRepresenter.add_representer(
    type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))


def roundtrip_yaml() -> YAML:
    """A YAML reader/writer that keeps comments, layout and ``null``s (the files jaxpipe
    writes: params.local.yaml, environment.yaml; params.yaml goes through DVC's writer)."""
    rt = YAML()
    rt.Representer = _NullRepresenter
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)
    return rt


def parse(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and types; ``where`` names it."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (expected one of {sorted(fields)})")
    kwargs = {}
    for name, field in fields.items():
        if name not in data:
            no_default = field.default is dataclasses.MISSING
            if no_default and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}.{name}: missing key")
            continue
        kwargs[name] = _coerce(data[name], hints[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except ValueError as exc:  # raised by __post_init__ range checks
        raise ConfigError(f"{where}.{exc}") from None


def load_config(cls: type[T], params_path: str | Path, section: str, name: str) -> T:
    """Read ``section.name`` of a params file into dataclass ``cls``, errors naming the key."""
    return parse(cls, load_params(params_path, section, name), f"{params_path}:{section}.{name}")


def load_layered(cls: type[T], params_path: str | Path, local_path: str | Path | None,
                 section: str, name: str) -> T:
    """Like ``load_config``, with ``section.name`` of a local overrides file (when there is
    one) deep-merged over params.yaml's first; errors name both files."""
    raw = load_params(params_path, section, name)
    where = f"{params_path}:{section}.{name}"
    if local_path is not None and Path(local_path).is_file():
        local = load_params(local_path) or {}
        override = local.get(section, {}).get(name) if isinstance(local, Mapping) else None
        if not isinstance(local, Mapping) or not isinstance(override, Mapping | None):
            raise ConfigError(f"{local_path}:{section}.{name}: expected a mapping")
        if override:
            raw, where = merged(raw, override), f"{where} (+ {local_path})"
    return parse(cls, raw, where)


def merged(base: Any, override: Any) -> Any:
    """``override`` deep-merged over ``base``: mappings key by key, anything else replaces."""
    if not isinstance(base, Mapping) or not isinstance(override, Mapping):
        return override
    return {**base, **{k: merged(base.get(k), v) for k, v in override.items()}}


def check(ok: bool, key: str, message: str) -> None:
    """Raise a ValueError that ``parse`` turns into a ConfigError naming ``key``."""
    if not ok:
        raise ValueError(f"{key}: {message}")


SEED_MAX = 2**32 - 1  # NumPy's, scikit-learn's and JAX's seeds all take 32 bits
MAX_STEPS = 1_000_000  # gradient steps (or epochs x batches) one stage may run
MAX_ROWS = 10_000_000  # rows a generated table or a batch may have


def in_range(value: float | None, key: str, low: float, high: float) -> None:
    """Raise (as ``check``) unless ``low <= value <= high``; the message names the bounds,
    so a value that would exhaust memory or time fails at start-up, saying the limit."""
    ok = value is None or low <= value <= high
    check(ok, key, f"{value} is outside [{low:_}, {high:_}]")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{where}: {value!r} fits no allowed type")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {str(k): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, where)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    if hint is Any:
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
