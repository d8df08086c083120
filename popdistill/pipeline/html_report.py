"""``RUN_DIR/report.html``: one self-contained page (no network; images inlined as data URIs)
to look at a finished run: the results table (rows whose J beats VideoPCA's highlighted), J by
generation, for each generation the held-out mask grid (image, ground truth, VideoPCA, every
student, the Multi-Net) and the selected / rejected pseudo-labels it trained on, and the
config. Written by :func:`popdistill.pipeline.loop.run_pipeline` for local run directories.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["write_report_html", "Figure"]

Figure = tuple[str, Path]  # (caption, PNG file)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #eee; }
th { text-align: right; } th:first-child { text-align: left; }
td.l { text-align: left; } td.r { text-align: right; }
tr.beats td { background: #e6f4e6; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #ddd; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _figures(figures: Sequence[Figure]) -> str:
    return "".join(f"<figure>{_img(png)}<figcaption>{html.escape(caption)}</figcaption></figure>"
                   for caption, png in figures if png is not None and Path(png).is_file())


def write_report_html(path: str | Path, report: dict[str, Any], table_html: str,
                      curve: Path | None, generations: Sequence[tuple[int, Sequence[Figure]]],
                      note: str = "") -> Path:
    """Write the page to ``path``: ``report`` (report.json's content) gives the run's name and
    config; ``table_html`` the results table; ``curve`` the J-by-generation PNG;
    ``generations``: per generation, its figures (grid, selection sheet). Missing PNGs are
    left out."""
    path = Path(path)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>popdistill run {html.escape(str(report.get('run', '')))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>popdistill run <code>{html.escape(str(report.get('run', '')))}</code></h1>",
        f"<p>Run directory: <code>{html.escape(str(report.get('run_dir', '')))}</code>. {html.escape(note)}</p>",
        "<h2 id='table'>Held-out results</h2>", table_html,
        "<p>P, J and CorLoc in percent over the held-out videos; green rows beat the VideoPCA "
        "teacher on J.</p>",
    ]
    if curve is not None and Path(curve).is_file():
        parts += ["<h2 id='curve'>J by generation</h2>", _figures([("J of every student, the "
                                                                   "Multi-Net and VideoPCA", curve)])]
    for k, figures in generations:
        parts += [f"<h2 id='gen-{k}'>Generation {k}</h2>", _figures(figures)]
    config = yaml.safe_dump(report.get("config", {}), sort_keys=False, default_flow_style=None)
    parts += ["<h2 id='config'>Config</h2>", f"<pre>{html.escape(config)}</pre>", "</body></html>"]
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
