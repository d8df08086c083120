"""Pictures of the MLflow UI for docs and reports: headless Chromium driven over the DevTools
protocol (``aiohttp``, which MLflow already installs), so the run tree can be expanded and the
side panel closed before the screenshot; no browser-automation package is needed.

``popdistill ui RUN_DIR --screenshot FILE.png`` uses :func:`capture`: FILE.png shows the run
tree (pipeline -> generations -> students and EvalSeg-Net), FILE-masks.png a student run's mask
grid as the UI's artifact viewer shows it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

from popdistill.errors import UserError

__all__ = ["capture", "tree_url", "masks_url"]

# Click every not-yet-clicked expander in the run table's name column (one tree level a call).
EXPAND = """(() => {
  window.__expanded = window.__expanded || new Set();
  let clicked = 0;
  document.querySelectorAll('.ag-row').forEach(row => {
    const cell = row.querySelector('[col-id^="attributes."]');
    const button = cell && cell.querySelector('button');
    const key = cell && cell.innerText;
    if (button && !window.__expanded.has(key)) { window.__expanded.add(key); button.click(); clicked++; }
  });
  return clicked;
})()"""
CLOSE_PANEL = "(() => { const b = document.querySelector('button[aria-label=Close]'); if (b) b.click(); return !!b; })()"


def _db(run_dir: str | os.PathLike) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{Path(run_dir) / 'mlflow.db'}?mode=ro", uri=True)


def tree_url(run_dir: str | os.PathLike, base: str) -> str:
    """The runs page of the experiment holding the run directory's pipeline runs."""
    with _db(run_dir) as con:
        row = con.execute(
            "SELECT r.experiment_id FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE t.key = 'popdistill.kind' AND t.value = 'pipeline' AND r.lifecycle_stage = "
            "'active' ORDER BY r.start_time DESC LIMIT 1").fetchone()
    if row is None:
        raise UserError(f"{Path(run_dir) / 'mlflow.db'}: no pipeline run to show")
    return f"{base}/#/experiments/{row[0]}/runs"


def masks_url(run_dir: str | os.PathLike, base: str) -> str | None:
    """The artifact page of the latest student run's mask grid, if one was logged."""
    with _db(run_dir) as con:
        rows = con.execute(
            "SELECT r.run_uuid, r.experiment_id FROM runs r JOIN tags t ON t.run_uuid = "
            "r.run_uuid WHERE t.key = 'popdistill.kind' AND t.value = 'student' "
            "ORDER BY r.start_time DESC").fetchall()
    for run_id, exp in rows:
        grids = sorted((Path(run_dir) / "mlartifacts").glob(f"*/{run_id}/artifacts/masks/*.png"))
        grids += sorted((Path(run_dir) / "mlartifacts").glob(f"{run_id}/artifacts/masks/*.png"))
        if grids:
            path = urllib.parse.quote(f"masks/{grids[0].name}")
            return f"{base}/#/experiments/{exp}/runs/{run_id}/artifacts/{path}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _shoot(exe: str, pages: list[tuple[str, list[str], Path]], size: str) -> None:
    import aiohttp

    port, profile = _free_port(), tempfile.mkdtemp(prefix="popdistill-chromium-")
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--remote-debugging-port={port}", f"--window-size={size}", f"--user-data-dir={profile}",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as session:
            targets = None
            for _ in range(150):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/json") as r:
                        targets = await r.json()
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.2)
            page = next((t for t in targets or [] if t.get("type") == "page"), None)
            if page is None:
                raise UserError(f"{exe}: no page to drive on the DevTools port")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 1_000_000))

                async def call(method: str, **params) -> dict:
                    n = next(ids)
                    await ws.send_json({"id": n, "method": method, "params": params})
                    while True:
                        msg = await ws.receive_json()
                        if msg.get("id") == n:
                            return msg

                for url, scripts, png in pages:
                    await call("Page.navigate", url=url)
                    await asyncio.sleep(8)  # the UI's scripts fetch and render the runs
                    for js in scripts:
                        await call("Runtime.evaluate", expression=js)
                        await asyncio.sleep(2)
                    shot = await call("Page.captureScreenshot", format="png")
                    png.parent.mkdir(parents=True, exist_ok=True)
                    png.write_bytes(base64.b64decode(shot["result"]["data"]))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def capture(run_dir: str | os.PathLike, base: str, png: str | os.PathLike, browser: str = "chromium",
            size: str = "1600,900") -> list[Path]:
    """Screenshots of the UI served at ``base`` for ``run_dir``: the expanded run tree into
    ``png`` and, where a student logged a mask grid, that grid into ``<png stem>-masks.png``."""
    exe = shutil.which(browser)
    if exe is None:
        raise UserError(f"--browser {browser}: not found on PATH (install Chromium)")
    png = Path(png)
    pages = [(tree_url(run_dir, base), [EXPAND, EXPAND, EXPAND, CLOSE_PANEL], png)]
    grid = masks_url(run_dir, base)
    if grid:
        pages.append((grid, [CLOSE_PANEL], png.with_name(f"{png.stem}-masks.png")))
    asyncio.run(_shoot(exe, pages, size))
    return [p for _, _, p in pages]
