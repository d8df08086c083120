"""RUN_DIR/report.html: one self-contained page; Chromium opens it, decodes every image and
finds the table (skipped where Debian's chromium is not installed)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from popdistill.pipeline.html_report import write_report_html
from popdistill.pipeline.report import results_columns
from popdistill.tracking.tables import table_html

ROWS = [
    {"method": "centre prior", "generation": "-", "P": 0.5, "J": 0.1, "CorLoc": 0.0, "frames": 9},
    {"method": "VideoPCA", "generation": "-", "P": 0.9, "J": 0.4, "CorLoc": 0.5, "frames": 9},
    {"method": "unet <b>", "generation": 1, "P": 0.9, "J": 0.45, "CorLoc": 0.6, "frames": 9},
    {"method": "lowres", "generation": 1, "P": 0.9, "J": 0.3, "CorLoc": 0.4, "frames": 9},
]


def _page(tmp_path):
    pngs = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        path = tmp_path / f"fig{i}.png"
        Image.fromarray(np.full((20, 30, 3), colour, np.uint8)).save(path)
        pngs.append(path)
    table = table_html(ROWS, results_columns(ROWS), lambda r: r["generation"] != "-" and r["J"] > 0.4)
    report = {"run": "r1", "run_dir": str(tmp_path), "config": {"generations": 1, "students": {"names": ["unet"]}}}
    return write_report_html(tmp_path / "report.html", report, table, pngs[0],
                             [(1, [("grid", pngs[1]), ("labels", pngs[2]),
                                   ("missing", tmp_path / "none.png")])])


def test_the_page_is_self_contained_and_escapes_what_it_shows(tmp_path):
    text = _page(tmp_path).read_text()
    assert text.count("data:image/png;base64,") == 3  # the missing PNG is left out
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "unet &lt;b&gt;" in text and "<b>" not in text.replace("<body>", "")
    assert len(re.findall(r'<tr class="beats">', text)) == 1  # only unet beats VideoPCA's J
    assert "+5.0 beats" in text and "generations: 1" in text


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (Debian's chromium)")
@pytest.mark.timeout(120)
def test_chromium_decodes_every_image_and_finds_the_table(tmp_path):
    page = _page(tmp_path)
    probe = tmp_path / "probe.html"  # the page plus a script that writes what it found
    probe.write_text(page.read_text().replace("</body>", """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth === 30).length;
  document.title = `images ${ok}/${imgs.length} rows ${document.querySelectorAll('table tbody tr').length}`;
});</script></body>"""))
    out = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=100)
    title = re.search(r"<title>(.*?)</title>", out.stdout)
    assert title is not None, out.stderr[-2000:]
    assert title.group(1) == "images 3/3 rows 4"
