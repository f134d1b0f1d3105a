"""``jaxpipe.report`` in-process: the offline page template, file names from plot titles, and
static SVG/PNG files drawn from ``dvc plots show --json`` output."""

from __future__ import annotations

import copy
import json
import locale
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape as html_unescape
from pathlib import Path

import pytest
import vl_convert as vlc

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.report import load_plots_json, render_static, slug, write_template


def spec(points: int = 3, **extra: object) -> dict:
    """A small Vega-Lite line chart, as dvc puts in an entry's ``content``."""
    values = [{"step": i, "loss": 1.0 / (i + 1)} for i in range(points)]
    return {"$schema": "https://vega.github.io/schema/vega-lite/v5.json",
            "data": {"values": values}, "mark": "line", "width": 200, "height": 100,
            "encoding": {"x": {"field": "step", "type": "quantitative"},
                         "y": {"field": "loss", "type": "quantitative"}}, **extra}


def vega(content: dict) -> dict:
    return {"type": "vega", "revisions": ["workspace"], "content": content}


@contextmanager
def ascii_locale() -> Iterator[None]:
    """A locale whose text encoding is ASCII (as on a machine set up without UTF-8)."""
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        assert locale.getencoding() == "ANSI_X3.4-1968"
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize(("title", "name"), [
    ("ROC curve (xor)", "roc-curve-xor"), ("Loss / epoch", "loss-epoch"),
    ("data/metrics/train_loss.csv", "data-metrics-train_loss-csv"),
    ("  --Mixed CASE__x--  ", "mixed-case__x"), ("x0", "x0"), ("XOR loss X", "xor-loss-x")])
def test_a_plot_title_becomes_a_lower_case_file_name(title: str, name: str) -> None:
    assert slug(title) == name


def test_the_offline_template_inlines_every_library(tmp_path: Path) -> None:
    path = tmp_path / "plots" / "template.html"
    with ascii_locale():  # the bundle is not ASCII: the page is UTF-8 whatever the locale
        write_template(path)
    page = path.read_text(encoding="utf8")
    assert [p.name for p in path.parent.iterdir()] == ["template.html"]  # no temp file left
    head, script_and_rest = page.split("<script>", 1)
    assert head == ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
                    "<title>jaxpipe plots</title>\n"
                    f"<!-- vega {vlc.get_vega_version()}, vega-lite (latest bundled), "
                    f"vega-embed {vlc.get_vega_embed_version()}: inlined by vl-convert -->\n")
    script, rest = script_and_rest.split("</script>")  # exactly one closing tag
    assert script == vlc.javascript_bundle().replace("</script", "<\\/script")
    assert len(script) > 100_000 and "BUNDLE" not in page
    assert rest.startswith("\n<style>table { border-spacing: 15px; } body { font-family: "
                           "sans-serif; }\n")
    assert rest.endswith("</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n")


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="needs a headless Chromium (apt-get install "
                                             "chromium)")
def test_plots_of_one_row_hang_from_its_top_in_a_browser(tmp_path: Path) -> None:
    """The page `dvc plots show` writes with the offline template, laid out by Chromium: a
    short plot beside a tall one starts at the tall one's top, not at its middle."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=repo, check=True)
    write_template(repo / "page.html")
    subprocess.run([sys.executable, "-m", "dvc", "config", "plots.html_template",
                    "../page.html"], cwd=repo, check=True)
    (repo / "tall.csv").write_text("x,y\n0,0\n1,1\n")
    (repo / "short.csv").write_text("x,y\n0,0\n1,1\n")
    size = {"tall": 400, "short": 60}
    (repo / "dvc.yaml").write_text(json.dumps({"plots": [
        {name: {"x": "x", "y": {f"{name}.csv": "y"}, "template": "simple"}}
        for name in size]}))
    subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "-q"], cwd=repo, check=True)
    page = repo / "dvc_plots" / "index.html"
    html = page.read_text(encoding="utf8")
    for name, height in size.items():  # the simple template's height, set per plot
        at = html.index(f'<div id = "{name}">')
        html = html[:at] + re.sub(r'"height": \d+', f'"height": {height}', html[at:], count=1)
    probe = ("<script>setTimeout(() => { document.title = JSON.stringify(Array.from("
             "document.querySelectorAll('.vega-embed'), e => [e.id, "
             "Math.round(e.getBoundingClientRect().top), Math.round(e.getBoundingClientRect()"
             ".left)])); }, 2000);</script></body>")
    head, _, tail = html.rpartition("</body>")  # the page's own (the bundle holds one too)
    page.write_text(head + probe + tail, encoding="utf8")
    shown = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                            "--window-size=1400,1000", "--virtual-time-budget=5000",
                            "--dump-dom", page.as_uri()], capture_output=True, text=True,
                           timeout=120, check=True).stdout
    boxes = json.loads(html_unescape(re.search(r"<title>(.*?)</title>", shown).group(1)))
    (tall, tall_top, tall_left), (short, short_top, short_left) = boxes
    assert (tall, short) == ("tall", "short") and short_left > tall_left  # one row
    assert short_top == tall_top, boxes


def test_every_vega_plot_is_drawn_to_an_svg_named_by_its_title(tmp_path: Path) -> None:
    titled = spec(title="Own title")
    plots = {"data": {
        "ROC curve (xor)": [{"type": "image", "url": "x.png"}, vega(spec()), vega(spec(4))],
        "metrics/loss.csv": [vega(titled)]}}
    expected = copy.deepcopy(plots)
    out = tmp_path / "static"
    written = render_static(plots, out)
    assert written == [out / "roc-curve-xor.svg", out / "roc-curve-xor-1.svg",
                       out / "metrics-loss-csv.svg"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    first = written[0].read_text(encoding="utf8")
    assert first == vlc.vegalite_to_svg({**spec(), "title": "ROC curve (xor)"})
    assert first.startswith("<svg") and ">ROC curve (xor)</text>" in first
    assert written[1].read_text() == vlc.vegalite_to_svg({**spec(4), "title": "ROC curve (xor)"})
    third = written[2].read_text()
    assert ">Own title</text>" in third and "metrics/loss.csv" not in third  # its own title kept
    assert plots["data"]["ROC curve (xor)"][0] == expected["data"]["ROC curve (xor)"][0]


def test_plots_without_the_data_wrapper_are_drawn_too(tmp_path: Path) -> None:
    written = render_static({"Loss": [vega(spec())]}, tmp_path)
    assert written == [tmp_path / "loss.svg"]
    assert ">Loss</text>" in written[0].read_text()


def test_svg_files_are_utf8_whatever_the_locale(tmp_path: Path) -> None:
    with ascii_locale():
        (path,) = render_static({"Loss – µ": [vega(spec())]}, tmp_path)
    assert path == tmp_path / "loss.svg"
    assert ">Loss – µ</text>" in path.read_text(encoding="utf8")


def test_png_files_are_drawn_at_the_asked_scale(tmp_path: Path) -> None:
    plots = {"data": {"Loss": [vega(spec())]}}
    (one,) = render_static(copy.deepcopy(plots), tmp_path / "one", "png")
    (two,) = render_static(copy.deepcopy(plots), tmp_path / "two", fmt="png", scale=2.0)
    assert one == tmp_path / "one" / "loss.png" and two.name == "loss.png"
    width, height = png_size(one.read_bytes())
    assert png_size(two.read_bytes()) == (2 * width, 2 * height)
    assert one.read_bytes() == vlc.vegalite_to_png({**spec(), "title": "Loss"}, scale=1.0)


def test_an_unknown_format_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(JaxpipeError) as caught:
        render_static({"data": {"Loss": [vega(spec())]}}, tmp_path / "out", "pdf")
    assert str(caught.value) == "format 'pdf': expected svg or png"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("plots", [{}, {"data": {}}, {"data": {"Loss": []}},
                                   {"data": {"Confusion": [{"type": "image", "url": "c.png"}]}}])
def test_no_vega_plot_at_all_says_to_run_the_pipeline(tmp_path: Path, plots: dict) -> None:
    with pytest.raises(JaxpipeError) as caught:
        render_static(plots, tmp_path)
    assert str(caught.value) == "no plots to render (run dvc repro first)"
    assert list(tmp_path.iterdir()) == []


def test_dvc_output_is_parsed_or_named_as_not_json() -> None:
    plots = {"data": {"Loss": [vega(spec())]}}
    assert load_plots_json(json.dumps(plots)) == plots
    with pytest.raises(JaxpipeError) as caught:
        load_plots_json("{\"data\": ")
    assert str(caught.value) == "dvc plots show --json: not JSON (Expecting value)"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(JaxpipeError) as caught:
        load_plots_json("ERROR: unexpected error")
    assert str(caught.value) == "dvc plots show --json: not JSON (Expecting value)"
    with pytest.raises(JaxpipeError) as caught:
        load_plots_json("{'a': 1}")
    assert str(caught.value) == ("dvc plots show --json: not JSON (Expecting property name "
                                 "enclosed in double quotes)")
