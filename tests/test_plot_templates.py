"""The project's plot templates (``.dvc/plots/``) as the real ``dvc plots show`` fills them
and ``jaxpipe plots`` draws them: counts in confusion matrices, errors on a scale of their
own, ROC with the chance line and each curve's AUC, per-class figures on an axis that shows
their differences, losses on a log scale."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import committed_tree
from ruamel.yaml import YAML

from jaxpipe.report import render_static

ROOT = Path(__file__).parents[1]
TEMPLATES = ROOT / ".dvc" / "plots"
DVC = [sys.executable, "-m", "dvc"]


def project_plots() -> list[tuple[str, dict]]:
    """(title, definition) of every plot in the project's dvc.yaml."""
    plots = YAML(typ="safe").load((committed_tree() / "dvc.yaml").read_text())["plots"]
    return [next(iter(entry.items())) for entry in plots]


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + "\n")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """SVG text per plot title, from a DVC repo that uses the project's templates on known
    data: a 10-class confusion matrix (a strong diagonal, a few errors), two ROC curves of
    known area (and a perfect one), per-class F1 between 0.985 and 0.995, a loss over three
    orders of size, a confusion matrix without errors, predictions against actual values."""
    repo = tmp_path_factory.mktemp("plots")
    subprocess.run([*DVC, "init", "--no-scm", "-q"], cwd=repo, check=True)
    shutil.copytree(TEMPLATES, repo / ".dvc" / "plots", dirs_exist_ok=True)
    rows = [(c, c) for c in range(10) for _ in range(100 + 10 * c)]
    rows += [(3, 5)] * 7 + [(4, 9)] + [(7, 1)] * 2
    write_csv(repo / "pred.csv", ["actual", "predicted"], rows)
    # a: (0,0) (0,.5) (.5,1) (1,1): area .875; b: the chance line, area .5
    write_csv(repo / "a" / "roc.csv", ["fpr", "tpr"], [(0, 0), (0, .5), (.5, 1), (1, 1)])
    write_csv(repo / "b" / "roc.csv", ["fpr", "tpr"], [(0, 0), (.5, .5), (1, 1)])
    # c: perfect, as XOR's: its FPR = 0 segment lies on a's from (0, 0) to (0, .5)
    write_csv(repo / "c" / "roc.csv", ["fpr", "tpr"], [(0, 0), (0, 1), (1, 1)])
    write_csv(repo / "perfect.csv", ["actual", "predicted"], [(0, 0), (1, 1), (1, 1), (0, 0)])
    write_csv(repo / "fit.csv", ["actual", "predicted"], [(1.0, 1.5), (2.0, 1.8), (4.0, 4.4)])
    write_csv(repo / "per_class.csv", ["class", "f1"],
              [(c, round(0.985 + c / 1000, 4)) for c in range(10)])
    write_csv(repo / "history.csv", ["step", "train_loss"],
              [(s, round(10 * 0.5 ** s, 6)) for s in range(12)])
    dvc_yaml = {"plots": [
        {"Confusion": {"template": "confusion_counts", "x": "actual",
                       "y": {"pred.csv": "predicted"}}},
        {"Perfect": {"template": "confusion_counts", "x": "actual",
                     "y": {"perfect.csv": "predicted"}}},
        {"ROC": {"template": "roc", "x": "fpr",
                 "y": {"a/roc.csv": "tpr", "b/roc.csv": "tpr", "c/roc.csv": "tpr"}}},
        {"Fit": {"template": "scatter_diagonal", "x": "actual", "y": {"fit.csv": "predicted"}}},
        {"F1": {"template": "dots_horizontal", "x": "f1", "y": {"per_class.csv": "class"}}},
        {"Loss": {"template": "lines_log", "x": "step", "y": {"history.csv": "train_loss"}}}]}
    (repo / "dvc.yaml").write_text(json.dumps(dvc_yaml))
    shown = subprocess.run([*DVC, "plots", "show", "--json"], cwd=repo, check=True,
                           capture_output=True, text=True).stdout
    written = render_static(json.loads(shown), repo / "svg")
    return {p.stem: p.read_text(encoding="utf8") for p in written}


def texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_every_plot_of_the_project_names_a_template_that_exists() -> None:
    builtin = {"linear", "simple", "scatter", "smooth", "confusion", "confusion_normalized",
               "bar_horizontal", "bar_horizontal_sorted", "scatter_jitter"}
    own = {p.stem for p in TEMPLATES.glob("*.json")}
    for title, plot in project_plots():
        assert plot.get("template", "linear") in own | builtin, title


def test_every_plot_of_the_project_uses_its_own_template_whose_legends_say_revision() -> None:
    """DVC's built-in templates title the revision legend `rev`; the project's say
    `revision` (or name no revision at all)."""
    own = {p.stem: p.read_text() for p in TEMPLATES.glob("*.json")}
    for title, plot in project_plots():
        assert plot.get("template") in own, title
    for name, text in own.items():
        for channel, encoding in _encodings(json.loads(text)):
            if encoding.get("field") == "rev" and channel not in ("tooltip", "column", "row"):
                assert encoding.get("title") == "revision" or encoding.get("legend", 1) is None, (
                    name, channel)


def _encodings(node: object) -> list[tuple[str, dict]]:
    """(channel, definition) of every encoding in a Vega-Lite spec, at any depth."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("encoding", "facet") and isinstance(value, dict):
                found += [(c, d) for c, d in value.items() if isinstance(d, dict)]
            found += _encodings(value)
    elif isinstance(node, list):
        for value in node:
            found += _encodings(value)
    return found


def test_every_confusion_matrix_of_the_project_prints_its_counts() -> None:
    for title, plot in project_plots():
        if "confusion" in plot.get("template", ""):
            assert plot["template"] == "confusion_counts", title


def test_every_loss_of_the_project_is_drawn_on_a_log_scale() -> None:
    for title, plot in project_plots():
        fields = [f for v in plot["y"].values() for f in ([v] if isinstance(v, str) else v)]
        if any("loss" in f for f in fields):
            assert plot["template"] == "lines_log", title


def test_a_confusion_matrix_shows_every_count_and_colours_errors_alone(
        drawn: dict[str, str]) -> None:
    svg = drawn["confusion"]
    counts = texts(svg)
    for c in range(10):  # the diagonal, 100 to 190 (three less where 3 was taken for 5...)
        assert str(100 + 10 * c) in counts
    assert {"7", "1", "2"} <= set(counts)  # the errors
    assert counts.count("0") >= 100 - 10 - 3  # every empty cell says 0
    assert svg.count('fill="#ffffff"') >= 100 - 10 - 3  # an empty cell is white
    cells = [tuple(map(int, rgb)) for rgb in re.findall(r'fill="rgb\((\d+), (\d+), (\d+)\)"', svg)]
    greys = [c for c in cells if c[0] == c[1] == c[2]]
    reds = sorted((c for c in cells if c[0] > c[1] + 40), key=lambda c: c[1])
    assert len(greys) == 10 and len(reds) == 3, cells  # the diagonal; three error counts
    assert reds[0][1] < 60 and reds[-1][1] > 120  # 7 errors dark red, 1 error light


def test_roc_draws_the_chance_line_and_names_each_curves_area(drawn: dict[str, str]) -> None:
    legend = texts(drawn["roc"])
    assert "a  (AUC 0.875)" in legend and "b  (AUC 0.500)" in legend
    assert 'class="mark-rule role-mark' in drawn["roc"]


def test_per_class_figures_get_an_axis_that_spans_them(drawn: dict[str, str]) -> None:
    ticks = [float(t) for t in texts(drawn["f1"]) if re.fullmatch(r"0\.\d+", t)]
    axis = [t for t in ticks if len(str(t)) <= 5]  # the axis, not the 4-decimal labels
    assert min(axis) >= 0.98 and max(axis) <= 1.0, axis
    assert "0.9940" in texts(drawn["f1"]) and "0.9850" in texts(drawn["f1"])


def test_a_loss_spanning_orders_of_size_gets_a_log_axis(drawn: dict[str, str]) -> None:
    labels = set(texts(drawn["loss"]))
    assert {"0.01", "0.1", "1", "10"} <= labels, labels


def test_a_confusion_matrix_without_errors_has_no_error_legend(drawn: dict[str, str]) -> None:
    """Every cell prints its count, so the colours need no legend: none for the errors (a
    gradient over no errors once showed a lone pink "0" beside white zero cells)."""
    for name in ("perfect", "confusion"):
        svg = drawn[name]
        assert "errors" not in texts(svg) and "<linearGradient" not in svg, name
        assert 'class="mark-group role-legend' not in svg, name
    assert texts(drawn["perfect"]).count("0") == 2 + 2  # two axes' labels, two empty cells
    assert drawn["perfect"].count('fill="#ffffff"') >= 2  # the two empty error cells: white


def _lines(svg: str) -> dict[str, list[tuple[float, float]]]:
    """Each drawn line's points (in the plot's pixels), by the model in its aria label."""
    found = {}
    for label, d in re.findall(r'aria-label="(\w+)  \(AUC[^"]*"[^>]*'
                               r'aria-roledescription="line mark" d="([^"]+)"', svg):
        found[label] = [tuple(map(float, p.split(","))) for p in re.findall(r"[-\d.]+,[-\d.]+",
                                                                          d)]
    return found


def test_roc_curves_that_coincide_are_drawn_apart_and_off_the_axes(
        drawn: dict[str, str]) -> None:
    """a and c both rise along FPR = 0 from TPR 0 to 0.5: their segments are drawn side by
    side (not one multicoloured line), and neither on the y axis (x = 0 of the plot)."""
    lines = _lines(drawn["roc"])
    assert set(lines) == {"a", "b", "c"}, lines
    a_x, c_x = lines["a"][0][0], lines["c"][0][0]
    assert lines["a"][1][0] == a_x and lines["c"][1][0] == c_x  # the vertical segments
    assert abs(a_x - c_x) >= 2, (a_x, c_x)
    assert min(a_x, c_x, lines["b"][0][0]) >= 4  # the axis line is at 0
    tops = {m: pts[-1][1] for m, pts in lines.items()}  # all end at TPR 1: apart, too
    assert min(abs(p - q) for p, q in [(tops["a"], tops["b"]), (tops["b"], tops["c"]),
                                       (tops["a"], tops["c"])]) >= 2, tops
    labels = re.findall(r'aria-label="(c  \(AUC 1.000\)[^"]*)"', drawn["roc"])
    assert "c  (AUC 1.000): FPR 0.000, TPR 0.000" in labels, labels  # the values, undodged


def test_predicted_against_actual_draws_the_diagonal_and_a_revision_legend(
        drawn: dict[str, str]) -> None:
    labels = texts(drawn["fit"])
    assert "revision" in labels and "rev" not in labels
    assert 'class="mark-rule role-mark' in drawn["fit"]  # predicted = actual
