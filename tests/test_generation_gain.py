"""benchmarks/generation_gain.py: generation 2 against generation 1 over several runs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _report(folder: Path, seed: int, js: dict[int, list[float]], **training) -> Path:
    """A `popdistill run` directory with two students a, b; ``js[k]``: their held-out J in
    generation k (per-video J in ``gen-k/evaluation.json``: each student's J on both videos)."""
    table = [{"method": "centre prior", "generation": "-", "P": 0.8, "J": 0.1, "CorLoc": 0.1},
             {"method": "VideoPCA", "generation": "-", "P": 0.9, "J": 0.30, "CorLoc": 0.5}]
    for k, (a, b) in js.items():
        table += [{"method": n, "generation": k, "P": 0.9 + k / 100, "J": j, "CorLoc": 0.5 + k / 10}
                  for n, j in (("a", a), ("b", b))]
        table.append({"method": "Multi-Net", "generation": k, "P": 0.99, "J": 0.0, "CorLoc": 0.0})
        (folder / f"gen-{k}").mkdir(parents=True)
        (folder / f"gen-{k}" / "evaluation.json").write_text(json.dumps(
            {n: {"overall": {"J": j}, "videos": {"v0": {"J": j}, "v1": {"J": j}}}
             for n, j in (("a", a), ("b", b))}))
    config = {"out": str(folder), "generations": len(js), "training": {"seed": seed, **training},
              "resources": {"actors": seed + 1}}
    (folder / "report.json").write_text(json.dumps({"table": table, "config": config}))
    return folder


def _gain(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("generation_gain")


def test_paired_gains_over_runs(tmp_path, capsys, monkeypatch):
    gain = _gain(monkeypatch)
    runs = [_report(tmp_path / "s0", 0, {1: [0.40, 0.36], 2: [0.42, 0.38]}),
            _report(tmp_path / "s1", 1, {1: [0.40, 0.30], 2: [0.38, 0.36]})]
    assert gain.main([str(r) for r in runs] + ["--json", str(tmp_path / "g.json")]) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in out.splitlines()
            if line.startswith("| 2 - 1")}
    # mean J gains: +0.02 and +0.02; student a: +0.02 and -0.02; student b: +0.02 and +0.06
    assert rows["2 - 1, J: students' mean"][1:3] == ["2", "+0.0200"]
    assert rows["2 - 1, J: students' mean"][5].startswith("2 of 2")
    assert float(rows["2 - 1, J: a"][2]) == pytest.approx(0.0) and rows["2 - 1, J: a"][5].startswith("1 of 2")
    assert float(rows["2 - 1, J: b"][2]) == pytest.approx(0.04)
    assert float(rows["2 - 1, J: b"][3]) == pytest.approx(0.0283, abs=1e-4)  # sd of 0.02, 0.06
    assert float(rows["2 - 1, CorLoc: students' mean"][2]) == pytest.approx(0.1)
    # s1 generation 1's student b (0.30) does not beat the teacher (0.30); s0's do
    lines = [line for line in out.splitlines() if line.startswith(f"| {runs[1]} | 1 | 1 |")]
    assert len(lines) == 1 and "| no (teacher 0.300) |" in lines[0]
    assert "| yes (teacher 0.300) |" in next(line for line in out.splitlines() if line.startswith(f"| {runs[0]} | 0 | 1 |"))
    assert "differ" not in out  # seed, out and parallel do not count
    saved = json.loads((tmp_path / "g.json").read_text())
    assert saved["rows"][1]["generations"]["2"]["students"] == {"a": 0.38, "b": 0.36}
    # --bootstrap reads each student's J per held-out video (gen-k/evaluation.json): here the
    # same on both videos, so every draw gives each run's gain in the students' mean J
    assert gain.main([str(r) for r in runs] + ["--bootstrap", "50", "--json", str(tmp_path / "b.json")]) == 0
    b = json.loads((tmp_path / "b.json").read_text())["bootstrap"]
    assert [x for r in b["runs"] for x in (r["low"], r["high"])] == pytest.approx([0.02] * 4)
    assert b["videos"] == 2


def test_unlike_runs_are_named_and_bad_folders_refused(tmp_path, capsys, monkeypatch):
    gain = _gain(monkeypatch)
    s0 = _report(tmp_path / "s0", 0, {1: [0.4, 0.4], 2: [0.4, 0.4]}, epochs=8)
    s1 = _report(tmp_path / "s1", 1, {1: [0.4, 0.4], 2: [0.4, 0.4]}, epochs=4)
    assert gain.main([str(s0), str(s1)]) == 0
    assert "training.epochs = [8, 4]" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        gain.main([str(tmp_path / "missing")])
    assert "missing/report.json: missing" in capsys.readouterr().err
    one = _report(tmp_path / "one", 0, {1: [0.4, 0.4]})
    with pytest.raises(SystemExit):
        gain.main([str(one)])
    assert "generations >= 2" in capsys.readouterr().err


def test_bootstrap_resamples_videos_jointly(monkeypatch):
    """Each run's interval comes from resampling its videos; the pooled one resamples the same
    videos for every run, so two runs with opposite gains per video pool to zero in every draw."""
    import numpy as np

    gain = _gain(monkeypatch)
    gains = np.array([[0.1, -0.1, 0.3, 0.1], [-0.1, 0.1, -0.3, -0.1]])
    b = gain.bootstrap(gains, 500)
    assert b["runs"][0]["mean"] == pytest.approx(0.1) and b["runs"][1]["mean"] == pytest.approx(-0.1)
    assert -0.1 <= b["runs"][0]["low"] < 0.1 < b["runs"][0]["high"] <= 0.3
    assert b["pooled"]["low"] == pytest.approx(0.0) and b["pooled"]["high"] == pytest.approx(0.0)
    assert b["pooled"]["share_positive"] < 0.5 and (b["draws"], b["videos"]) == (500, 4)


def test_against_compares_the_last_generation_of_paired_runs(tmp_path, capsys, monkeypatch):
    """--against: run i's last generation minus base i's, paired; a pair that differs in
    generation 1 or in more than the option compared is named."""
    gain = _gain(monkeypatch)
    runs = [_report(tmp_path / "n0", 0, {1: [0.40, 0.36], 2: [0.43, 0.38]}, labels="binary"),
            _report(tmp_path / "n1", 1, {1: [0.40, 0.30], 2: [0.39, 0.33]}, labels="binary")]
    bases = [_report(tmp_path / "b0", 0, {1: [0.40, 0.36], 2: [0.42, 0.38]}, labels="best"),
             _report(tmp_path / "b1", 2, {1: [0.41, 0.30], 2: [0.38, 0.36]}, labels="best")]
    assert gain.main([str(r) for r in runs] + ["--against"] + [str(b) for b in bases]) == 0
    out = capsys.readouterr().out
    pairs = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in out.splitlines()
             if " - " in line.split(" | ")[0] and line.startswith(f"| {tmp_path}")}
    assert [float(x) for x in pairs[f"{runs[0]} - {bases[0]}"][2].split(" / ")] == pytest.approx([0.01, 0.0])
    assert float(pairs[f"{runs[1]} - {bases[1]}"][4]) == pytest.approx(-0.01)  # mean J 0.36 - 0.37
    over = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in out.splitlines()
            if line.startswith("| J: ") or line.startswith("| P: ")}
    # mean J: +0.005 and -0.01; student b: 0.0 and -0.03
    assert float(over["J: students' mean"][2]) == pytest.approx(-0.0025)
    assert over["J: students' mean"][5].startswith("1 of 2")
    assert float(over["J: b"][2]) == pytest.approx(-0.015) and over["J: b"][5].startswith("0 of 2")
    assert float(over["P: students' mean"][2]) == pytest.approx(0.0)
    assert f"{runs[0]} vs {bases[0]}: training.labels binary vs best" in out
    assert f"{runs[1]} vs {bases[1]}: training.labels binary vs best; training.seed 1 vs 2" in out
    assert f"{runs[1]} and {bases[1]} differ in generation 1 already" in out
    assert f"{runs[0]} and {bases[0]} differ" not in out
    older = _report(tmp_path / "old", 0, {1: [0.40, 0.36], 2: [0.42, 0.38]})  # without the field
    assert gain.main([str(runs[0]), "--against", str(older)]) == 0
    assert f"{runs[0]} vs {older}: training.labels binary vs None" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        gain.main([str(runs[0]), "--against", str(bases[0]), str(bases[1])])
