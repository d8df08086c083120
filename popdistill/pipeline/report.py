"""What a finished run reports: the results table (text, HTML, Markdown, MLflow), report.json
and report.html (:mod:`popdistill.pipeline.html_report`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from popdistill.pipeline.config import RunConfig, resolved
from popdistill.pipeline.run_dir import CENTRE, MULTINET, VIDEOPCA
from popdistill.pipeline.steps import Baselines, Generation
from popdistill.storage import RunPath

__all__ = ["results_table", "results_columns", "format_results", "write_report"]


def results_table(baselines: dict, generations: list[dict]) -> list[dict[str, Any]]:
    """Rows: centre prior, VideoPCA, then every generation's students and its Multi-Net last."""

    def row(method: str, gen: Any, m: dict) -> dict[str, Any]:
        return {"method": method, "generation": gen, "P": m.get("P"), "J": m.get("J"),
                "CorLoc": m.get("CorLoc"), "frames": m.get("frames")}

    rows = [row(CENTRE, "-", baselines["results"][CENTRE]),
            row(VIDEOPCA, "-", baselines["results"][VIDEOPCA])]
    for g in generations:
        names = [n for n in g["results"] if n != MULTINET] + [MULTINET] * (MULTINET in g["results"])
        rows += [row(name, g["generation"], g["results"][name]) for name in names]
    return rows


def results_columns(rows: list[dict[str, Any]]) -> list:
    """The results table's columns (text and HTML): P / J / CorLoc in percent; the last is
    each generation row's J against VideoPCA's."""
    from popdistill.tracking.tables import Column, number

    return [
        Column("method", 22, lambda r: r["method"], "<"),
        Column("gen", 3, lambda r: str(r["generation"])),
        Column("P%", 6, number("P", 100)),
        Column("J%", 6, number("J", 100)),
        Column("CorLoc%", 8, number("CorLoc", 100)),
        Column("frames", 7, lambda r: str(r["frames"] or 0)),
        Column("vs VideoPCA", 12, _versus_teacher(rows)),
    ]


def format_results(rows: list[dict[str, Any]]) -> str:
    """The table as text (:func:`results_columns`)."""
    from popdistill.tracking.tables import text_table

    return text_table(rows, results_columns(rows))


def _versus_teacher(rows: list[dict[str, Any]]) -> Callable[[dict[str, Any]], str]:
    """A cell function: a row's J minus VideoPCA's, in points, with ``beats`` where it is
    higher (the thesis's question: do the students beat their teacher?)."""
    teacher = next((r["J"] for r in rows if r["method"] == VIDEOPCA), None)

    def cell(r: dict[str, Any]) -> str:
        if r["generation"] == "-" or teacher is None or r["J"] is None:
            return ""
        diff = 100 * (r["J"] - teacher)
        return f"{diff:+.1f}" + (" beats" if diff > 0 else "")

    return cell


def write_report(root: RunPath, cfg: RunConfig, step_seconds: dict[str, float], parent: Any,
                 baselines: Baselines, generations: list[Generation], data: dict) -> dict[str, Any]:
    """The finished run's report: ``report.json``, ``results.md``, the MLflow parent run's
    table, figure and metrics (``parent``), and for a local run directory ``report.html``."""
    import dataclasses

    from popdistill.tracking.figures import generation_figure

    rows = results_table({"results": baselines.results},
                         [{"generation": g.generation, "results": g.results} for g in generations])
    series: dict[str, dict[int, float]] = {}
    for g in generations:
        for name, m in g.results.items():
            if m.get("J") is not None:
                series.setdefault(name, {})[g.generation] = m["J"]
        series.setdefault(VIDEOPCA, {})[g.generation] = baselines.results[VIDEOPCA]["J"]
    report = {"run": cfg.run_name, "run_dir": root.uri, "table": rows, "data": data,
              "generations": [{"generation": g.generation,
                               "selection": dataclasses.asdict(g.selection), "results": g.results}
                              for g in generations],
              "step_seconds": step_seconds, "config": resolved(cfg)}
    for i, g in enumerate(generations):
        if g.evalseg is not None:  # the EvalSeg-Net that selected the next generation's labels
            report["generations"][i]["evalseg"] = {"checkpoint": g.evalseg.checkpoint,
                                                   "pairs": g.evalseg.pairs,
                                                   "target_mean": g.evalseg.target_mean}
    (root / "report.json").write_json(report)
    from popdistill.tracking.tables import table_markdown

    (root / "results.md").write_bytes(table_markdown(rows).encode())
    parent.log_table(rows, "results")
    parent.log_dict(report, "report.json")
    figure = generation_figure(series) if series else None
    if figure is not None:
        parent.log_figure(figure, "J_by_generation.png")
    for g in generations:
        js = [m["J"] for n, m in g.results.items() if n != MULTINET and m.get("J") is not None]
        if js:
            parent.log_metrics({"students/mean_J": sum(js) / len(js)}, step=g.generation)
    if root.is_local:
        report["report_html"] = str(_report_html(Path(root.path), cfg, report, rows, figure,
                                                 generations))
    return report


def _report_html(root: Path, cfg: RunConfig, report: dict, rows: list[dict], figure: Any,
                 generations: list[Generation]) -> Path:
    """RUN_DIR/report.html (:mod:`popdistill.pipeline.html_report`); ``figure``: J by
    generation (None: none)."""
    from popdistill.pipeline.html_report import write_report_html
    from popdistill.tracking.tables import table_html

    curve = None
    if figure is not None:
        curve = root / "J_by_generation.png"
        figure.savefig(curve)
    teacher = next((r["J"] for r in rows if r["method"] == VIDEOPCA), None)
    table = table_html(rows, results_columns(rows), lambda r: r["generation"] != "-"
                       and teacher is not None and (r["J"] or 0) > teacher)
    figures = []
    for g in generations:
        gen = root / f"gen-{g.generation}"
        labels = (gen / "teacher" / "contact_sheet.png" if g.generation == 1
                  else gen / "selection" / "contact_sheet.png")
        figures.append((g.generation, [
            ("Held-out frames: the image, its ground truth (outlined), VideoPCA, every student "
             "and the Multi-Net", gen / "grids" / "all.png"),
            (f"The pseudo-labels generation {g.generation} trained on: selected (top) and "
             "rejected frames, each beside its ground truth", labels),
        ]))
    return write_report_html(root / "report.html", report, table, curve, figures,
                             note=f"{len(generations)} generation(s), "
                                  f"{len(cfg.students.names)} students.")
