"""``jaxpipe.core.config``: typed configs and params files: a wrong key, type or value fails
with a message naming the key (and the file and section it came from); YAML is read
safely."""

from pathlib import Path

import pytest
from helpers import committed, committed_tree, params_yaml

from jaxpipe.core.config import load_config, load_params, parse, read_yaml
from jaxpipe.core.errors import ConfigError
from jaxpipe.data.prepare import PrepareConfig
from jaxpipe.data.specs import DownloadConfig

ROOT = Path(__file__).parents[1]


def test_repo_params_parse() -> None:
    for name in ("mobile_binary", "mnist", "linear"):
        parse(PrepareConfig, load_params(committed_tree() / "params.yaml", "prepare", name), name)
    for name in ("mobile_price", "mnist"):
        parse(DownloadConfig, load_params(committed_tree() / "params.yaml", "download", name), name)


@pytest.mark.parametrize(("data", "message"), [
    ({"kind": "table", "tset_size": 0.2}, r"p\.tset_size: unknown key"),
    ({"kind": "tabel"}, r"p\.kind: 'tabel' is not one of"),
    ({"kind": "table", "test_size": "big"}, r"p\.test_size: expected float"),
    ({"kind": "table", "test_size": 1.5}, r"p\.test_size: must be in \[0, 1\)"),
    ({"kind": "table", "classes": [0, "one"]}, r"p\.classes\[1\]: expected int"),
    ({"test_size": 0.2}, r"p\.kind: missing key"),
    ({"kind": "table", "standardize": 1}, r"p\.standardize: expected bool"),
])
def test_bad_values_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(PrepareConfig, data, "p")


def test_nested_dataclass_errors_name_full_path() -> None:
    data = {"mirror_folder": "m", "urls": ["http://x/"], "files": {"a": {"name": "f", "md5": "z"}}}
    with pytest.raises(ConfigError, match=r"d\.files\.a\.md5: 'z' is not a 32-digit"):
        parse(DownloadConfig, data, "d")


def test_load_params_names_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("prepare:\n  a: {kind: table}\n")
    with pytest.raises(ConfigError, match=r"params\.yaml:prepare: missing key 'b'"):
        load_params(path, "prepare", "b")
    path.write_text("prepare: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path, "prepare")


def test_values_are_coerced_to_their_declared_types_or_named() -> None:
    from jaxpipe.models import cnn

    cfg = parse(PrepareConfig, {"kind": "table", "test_size": 0, "test_on_train": True}, "p")
    assert cfg.test_size == 0.0 and type(cfg.test_size) is float
    cnn_cfg = parse(cnn.Config, {"lr": 1, "devices": "all", "memory_budget_mb": None,
                                 "compiler_options": {"a": True, "b": 2}}, "t")
    assert type(cnn_cfg.lr) is float and cnn_cfg.compiler_options == {"a": True, "b": 2}
    for data, line in [
        ({"compiler_options": [1]}, "t.compiler_options: expected a mapping, got list"),
        ({"compiler_options": {"a": 1.5}}, "t.compiler_options.a: 1.5 fits no allowed type"),
        ({"devices": "most"}, "t.devices: 'most' fits no allowed type"),
        ({"lr": True}, "t.lr: expected float, got True"),
        ({"epochs": 2, "seed": 1, "epoch": 3},
         "t.epoch: unknown key (expected one of ['batch_size', 'compiler_options', 'devices', "
         "'epochs', 'eval_batch_size', 'lr', 'max_loss_growth', 'max_train_images', "
         "'memory_budget_mb', 'seed'])"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse(cnn.Config, data, "t")
        assert str(err.value) == line


def _leaves(node: object, path: tuple = ()) -> list[tuple[tuple, object]]:
    """Every scalar of a params tree with its path (list items by index)."""
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*path, i))]
    return [(path, node)]


def test_params_yaml_is_written_as_dvc_writes_it(tmp_path: Path) -> None:
    """`dvc exp run -S key=value` rewrites params.yaml with DVC's own writer
    (``dvc.utils.hydra.apply_overrides``, called here as DVC calls it): the file is already
    in that style, so setting any one scalar changes exactly one line."""
    from dvc.utils.hydra import apply_overrides

    original = committed("params.yaml")
    copy = tmp_path / "params.yaml"
    leaves = [(path, value) for path, value in _leaves(read_yaml(original))
              if all(isinstance(k, str) for k in path)]  # -S addresses keys, not list items
    assert len(leaves) > 50
    for path, value in leaves:
        copy.write_text(original)
        apply_overrides(copy, [f"{'.'.join(path)}={8 if value == 7 else 7}"])
        new = copy.read_text().splitlines()
        assert len(new) == len(original.splitlines()), path
        changed = [(a, b) for a, b in zip(original.splitlines(), new, strict=True) if a != b]
        assert len(changed) == 1, (path, changed)


def alias_bomb(levels: int = 9, key: str = "lol") -> str:
    """The "billion laughs": nine aliases of nine aliases..., 1 KB on disk, 9**9 values."""
    lines = [f'a0: &a0 ["{key}", "{key}", "{key}", "{key}", "{key}", "{key}", "{key}", '
             f'"{key}", "{key}"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_anything_walks_it(tmp_path: Path) -> None:
    import resource
    import time

    from jaxpipe.core.config import YAMLTooLarge

    params = tmp_path / "params.yaml"
    params.write_text(alias_bomb() + "train:\n  m:\n    steps: *a8\n")
    started, peak = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(YAMLTooLarge):
        read_yaml(params.read_text())
    with pytest.raises(ConfigError) as caught:
        load_params(params, "train", "m")
    assert str(caught.value) == (f"{params}: not valid YAML (its aliases expand to more than "
                                 "1,000,000 values (an alias bomb?))")
    assert time.perf_counter() - started < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000  # KB


def test_aliases_a_project_uses_are_read_as_before(tmp_path: Path) -> None:
    """dvc.yaml shares its model list between train and evaluate through an alias."""
    stages = read_yaml((committed_tree() / "dvc.yaml").read_text())["stages"]
    assert stages["evaluate"]["foreach"] == stages["train"]["foreach"]
    small = alias_bomb(levels=6)  # 9**6 = 531,441 values: big, but under the cap
    assert len(read_yaml(small)["a5"]) == 9


def test_a_schema_file_with_a_bomb_is_named(tmp_path: Path) -> None:
    from jaxpipe.core.errors import JaxpipeError
    from jaxpipe.data.schema import load_schema

    schema = tmp_path / "x.yaml"
    schema.write_text(alias_bomb() + "columns: *a8\n")
    with pytest.raises(JaxpipeError, match=r"x\.yaml: not valid YAML \(its aliases expand"):
        load_schema(schema)


def test_an_unsafe_tag_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from jaxpipe.core.config import read_yaml_file

    params = tmp_path / "params.yaml"
    params.write_text(committed("params.yaml")
                      + 'x: !!python/object/apply:os.system ["touch hacked"]\n')
    lines = len(params.read_text().splitlines())
    with pytest.raises(ConfigError) as caught:
        read_yaml_file(params)
    assert str(caught.value) == (
        f"{params}: not valid YAML (ConstructorError at line {lines}: could not determine a "
        "constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system')")
    proc = subprocess.run([sys.executable, "-m", "jaxpipe.tools.mirror", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and not (tmp_path / "hacked").exists()
    assert proc.stderr.strip().splitlines() == [f"error: {caught.value}".replace(
        str(params), "params.yaml")]


def test_load_config_reads_the_section_and_names_file_section_and_key(tmp_path: Path) -> None:
    path = params_yaml(tmp_path, "prepare:\n  d:\n    kind: table\n    seed: 7\n"
                             "  bad:\n    kind: table\n    test_size: 2\n")
    cfg = load_config(PrepareConfig, path, "prepare", "d")
    assert cfg == PrepareConfig(kind="table", seed=7)
    with pytest.raises(ConfigError) as err:
        load_config(PrepareConfig, path, "prepare", "bad")
    assert str(err.value).startswith(f"{path}:prepare.bad.test_size: ")


def test_a_missing_params_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_params(tmp_path / "nope.yaml", "train")
    assert str(err.value) == f"{tmp_path / 'nope.yaml'}: params file not found"


TRICKY_SCALARS = """\
bool_1_1: yes
off_1_1: off
float: 1e-5
exp: 1.0e+3
octal_1_2: 0o17
octal_1_1: 017
underscored: 1_000
sexagesimal: 1:20
half: .5
none: ~
quoted: "1.0"
infinite: .inf
nested: [a, {b: 1e3}]
"""


@pytest.mark.parametrize("text", [TRICKY_SCALARS, *(committed(name) for name in
                                                     ("params.yaml", "environment.yaml"))])
def test_dvc_reads_params_as_jaxpipe_does_and_with_libyaml(text: str) -> None:
    """DVC parses params.yaml, environment.yaml and dvc.lock once per stage on every
    `dvc repro`: with ruamel's libyaml parser (ruamel.yaml.clib, a dependency since ruamel
    0.19 stopped pulling it in) a no-op run takes 1.2 s instead of 2.1. Its values must still
    be YAML 1.2's, the ones jaxpipe's own pure-Python reader gives."""
    from dvc.utils.serialize import parse_yaml
    from ruamel.yaml import YAML
    from ruamel.yaml.cyaml import CParser

    assert YAML(typ="safe").Parser is CParser
    assert parse_yaml(text, "params.yaml") == read_yaml(text)
