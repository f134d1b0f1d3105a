"""Plots a person can read anywhere: an offline page template, and static SVG/PNG files.

``dvc plots show`` fills an HTML template with Vega-Lite specs. DVC's default template loads
vega, vega-lite and vega-embed from a CDN, so offline the page is blank. The template here
inlines them, bundled by vl-convert (which ships the libraries, pinned with the package);
``.dvc/config`` points ``plots.html_template`` at it. ``render_static`` draws the same specs
to files with vl-convert's own engine: no browser, no network.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import vl_convert as vlc

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import atomic_path

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>jaxpipe plots</title>
<!-- vega {vega}, vega-lite (latest bundled), vega-embed {embed}: inlined by vl-convert -->
<script>BUNDLE</script>
<style>table {{ border-spacing: 15px; }} body {{ font-family: sans-serif; }}
/* plots flow left to right in rows; each row's plots hang from its top, not its middle */
.vega-embed {{ vertical-align: top; margin: 0 24px 24px 0; }}</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def offline_template() -> str:
    """An HTML page template for ``dvc plots show`` with every library inlined."""
    head = PAGE.format(vega=vlc.get_vega_version(), embed=vlc.get_vega_embed_version())
    return head.replace("BUNDLE", vlc.javascript_bundle().replace("</script", "<\\/script"))


def write_template(path: Path) -> None:
    """Write the offline template atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(offline_template(), encoding="utf8")


def slug(title: str) -> str:
    """A file name for a plot title: ``ROC curve (xor)`` -> ``roc-curve-xor``."""
    return re.sub(r"[^A-Za-z0-9_]+", "-", title).strip("-").lower()


def render_static(plots: dict, out_dir: Path, fmt: str = "svg", scale: float = 1.0) -> list[Path]:
    """Render every plot of ``dvc plots show --json`` output to ``out_dir/<slug>.<fmt>``."""
    if fmt not in ("svg", "png"):
        raise JaxpipeError(f"format {fmt!r}: expected svg or png")
    written = []
    for title, entries in plots.get("data", plots).items():
        for i, entry in enumerate(e for e in entries if e.get("type") == "vega"):
            spec = entry["content"]
            spec.setdefault("title", title)
            name = slug(title) + (f"-{i}" if i else "")
            path = out_dir / f"{name}.{fmt}"
            with atomic_path(path) as tmp:
                if fmt == "svg":
                    tmp.write_text(vlc.vegalite_to_svg(spec), encoding="utf8")
                else:
                    tmp.write_bytes(vlc.vegalite_to_png(spec, scale=scale))
            written.append(path)
    if not written:
        raise JaxpipeError("no plots to render (run dvc repro first)")
    return written


def load_plots_json(text: str) -> dict:
    """Parse ``dvc plots show --json`` output, with an error naming what went wrong."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JaxpipeError(f"dvc plots show --json: not JSON ({exc.msg})") from None
