"""The run config: validated before any work, errors name the dotted field and the choices;
the manifest; the pure pieces of the loop (best mask per frame, Multi-Net product, table)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from popdistill.errors import UserError
from popdistill.pipeline.config import load_run_config, parse_run_config
from popdistill.pipeline.manifest import Manifest
from popdistill.pipeline.report import format_results, results_table
from popdistill.selection.rescore import best_per_frame
from popdistill.storage import RunPath
from popdistill.students.multinet import multinet_mask

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "out": "runs/x",
    "data": {"path": "data/train", "world": {"preset": "medium", "videos": 4, "frames": 12,
                                             "size": 64}},
    "eval": {"path": "data/eval", "format": "davis"},
    "teacher": {"chunk_frames": 12, "videopca": {"size": 64, "window": 12, "min_window": 4}},
    "students": {"names": ["lowres_tiny", "unet_tiny"]},
    "training": {"epochs": 2, "batch_size": 8},
    "evalseg": {"model": "evalseg_tiny", "epochs": 1},
}


BASE_CFG = parse_run_config(BASE)


def with_(path: str, value) -> dict:
    """BASE with the dotted ``path`` set to ``value``."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return data


def error(data: dict) -> str:
    with pytest.raises(UserError) as info:
        parse_run_config(data)
    return str(info.value)


def test_valid_config_builds_every_step_config():
    cfg = parse_run_config(BASE, out="runs/elsewhere")
    assert cfg.out == "runs/elsewhere" and cfg.run_name == "elsewhere"
    teacher = cfg.teacher_config(cfg.data, "runs/elsewhere/gen-1")
    assert (teacher.data, teacher.chunk_frames, teacher.select_top) == ("data/train", 12, 0.1)
    assert teacher.select_strata == 1
    four = parse_run_config(with_("selection.strata", 4))
    assert four.teacher_config(four.data, "o").select_strata == 4  # one field for every generation
    assert teacher.videopca.window == 12 and teacher.actors == cfg.resources.actors
    trains = cfg.train_configs("s/selected", "s/val", "runs/elsewhere/gen-1")
    assert [t.student for t in trains] == ["lowres_tiny", "unet_tiny"]
    assert all(t.epochs == 2 and t.store == "s/selected" and t.val_store == "s/val" for t in trains)
    assert all(t.use_gpu is None and t.cpus_per_worker == 0.9 for t in trains)  # gpu: auto
    es = cfg.evalseg_config("s/frames", ["a.pt", "b.pt"], "o")
    assert (es.model, es.epochs, es.students) == ("evalseg_tiny", 1, ["a.pt", "b.pt"])
    assert es.ensemble == cfg.selection.ensemble == "product"
    geo = parse_run_config(with_("selection.ensemble", "geomean"))
    # EvalSeg-Net learns the target the agreement scorer computes: one field sets both
    assert geo.evalseg_config("s/frames", ["a.pt"], "o").ensemble == "geomean"


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("colour", 1, "unknown field 'colour'; valid fields: data, eval,"),
        ("training.epochz", 3, "unknown field 'training.epochz'; valid fields: augment,"),
        ("teacher.videopca.kk", 3, "unknown field 'teacher.videopca.kk'"),
        ("data.fromat", "davis", "unknown field 'data.fromat'; valid fields: format, path,"),
        ("training.loss", "l1", "training.loss: 'l1' is not one of mse, bce"),
        ("resources.gpu", "maybe", "resources.gpu: 'maybe' is not one of auto, yes, no"),
        ("evaluation.box_mode", "biggest", "evaluation.box_mode: 'biggest' is not one of largest, all"),
        ("training.epochs", "three", "training.epochs: expected an integer, got 'three'"),
        ("generations", 2.5, "generations: expected an integer, got 2.5"),
        ("teacher.videopca.k", "3", "teacher.videopca.k: expected an integer"),
        ("selection.top", 1.5, "selection: top: 1.5 is not in (0, 1]"),
        ("selection.scorer", "votes", "selection.scorer: 'votes' is not one of evalseg, agreement"),
        ("selection.ensemble", "mean", "selection.ensemble: 'mean' is not one of product, geomean"),
        ("selection.labels", "soft", "selection.labels: 'soft' is not one of best, multinet, multinet-binary, multinet-product"),
        ("evalseg.ensemble", "geomean", "evalseg.ensemble: set by the pipeline"),
        ("selection.with_teacher", "sometimes", "selection.with_teacher: expected true or false"),
        ("selection.support", "yes please", "selection.support: expected true or false"),
        ("selection.keep_teacher", 1, "selection.keep_teacher: expected true or false"),
        ("selection.strata", 0, "selection: strata: 0 must be an integer >= 1"),
        ("selection.strata", "four", "selection.strata: expected an integer, got 'four'"),
        ("teacher.select_strata", 4, "teacher.select_strata: set by the pipeline"),
        ("students.names", ["lowres_tiny", "resnet"], "names[1]: 'resnet' is not one of denseunet,"),
        ("students.models", {"unet": {}}, "models.unet: not one of the students"),
        ("training.store", "x", "training.store: set by the pipeline"),
        ("data.world.preset", "extreme", "unknown world preset 'extreme'; valid presets: easy,"),
        ("generations", 0, "generations: must be >= 1"),
        ("later_data.fromat", "davis", "unknown field 'later_data.fromat'; valid fields: format,"),
        ("later_data.path", "", "later_data: path: the data set folder is required"),
        ("training.precision", "fp16", "training.precision: 'fp16' is not one of auto, fp32, bf16"),
        ("training.max_steps", 0, "training: max_steps: must be >= 1"),
        ("training.max_seconds", -1, "training: max_seconds: must be positive"),
        ("training.val_every", -1, "training: val_every: must be >= 0"),
        ("training.gpus_per_worker", 0.2, "training.gpus_per_worker: set by the pipeline"),
        ("resources.gpus_per_worker", 0, "resources: gpus_per_worker: must be positive"),
        ("evalseg.precision", "half", "evalseg.precision: 'half' is not one of auto, fp32, bf16"),
    ],
)
def test_a_wrong_field_fails_with_its_dotted_name(path, value, expected):
    assert expected in error(with_(path, value))


def test_later_generations_select_from_later_data_when_it_is_set():
    assert [BASE_CFG.candidates_data(k).path for k in (1, 2, 3)] == ["data/train"] * 3
    more = with_("later_data", {"path": "data/more", "world": {"preset": "medium", "videos": 8}})
    cfg = parse_run_config(more)
    assert [cfg.candidates_data(k).path for k in (1, 2, 3)] == ["data/train", "data/more", "data/more"]
    assert cfg.later_data.format == "davis" and cfg.later_data.world["videos"] == 8
    bad = with_("later_data", {"path": "data/more", "world": {"preset": "extreme"}})
    assert "later_data: world: unknown world preset 'extreme'; valid presets: easy," in error(bad)
    # the teacher's masks cover `data` only: they cannot be candidates for later_data's frames
    more["selection"] = {"with_teacher": True}
    assert "selection.with_teacher: generation 1's VideoPCA masks exist only for" in error(more)
    more["selection"] = {"keep_teacher": True}
    assert parse_run_config(more).selection.keep_teacher


def test_resources_and_precision_reach_every_step():
    cfg = parse_run_config(with_("resources", {"gpus_per_worker": 0.2, "gpu": "no"}))
    trains = cfg.train_configs("s", None, "o")
    assert all(t.gpus_per_worker == 0.2 and t.use_gpu is False for t in trains)
    assert all(t.precision == "auto" and t.max_steps is None for t in trains)
    assert cfg.evalseg_config("s", ["a.pt"], "o").gpu == "no"
    bf16 = parse_run_config(with_("training.precision", "bf16"))
    assert {t.precision for t in bf16.train_configs("s", None, "o")} == {"bf16"}


def test_set_overrides_fields_before_validation(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(BASE))
    cfg = load_run_config(path, overrides=["training.epochs=8", "students.names=[unet_tiny]",
                                           "training.max_seconds=30", "resources.gpus_per_worker=0.2",
                                           "selection.threshold=null"])
    assert cfg.students.names == ["unet_tiny"] and cfg.resources.gpus_per_worker == 0.2
    trains = cfg.train_configs("s", None, "o")
    assert [(t.epochs, t.max_seconds) for t in trains] == [(8, 30.0)]
    with pytest.raises(UserError, match="run.yaml: unknown field .training.epochz."):
        load_run_config(path, overrides=["training.epochz=8"])
    with pytest.raises(UserError, match="--set 'training.epochs': expected dotted.key=VALUE"):
        load_run_config(path, overrides=["training.epochs"])
    with pytest.raises(UserError, match="--set out.x: out is not a section"):
        load_run_config(path, overrides=["out.x=1"])


def test_missing_sections_and_file_errors_name_the_file(tmp_path):
    assert "eval: required" in error({k: v for k, v in BASE.items() if k != "eval"})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_("training.lr", "fast")))
    with pytest.raises(UserError, match=r"bad.yaml: training.lr: expected a number"):
        load_run_config(bad)
    with pytest.raises(FileNotFoundError):
        load_run_config(tmp_path / "missing.yaml")


def _shape(value):
    """The nesting of a config: mappings to their keys' shapes, leaves to None."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k != "models"}
    return None


def test_shipped_configs_load_and_the_cluster_one_differs_only_in_values():
    quick = yaml.safe_load((ROOT / "configs/quickstart.yaml").read_text())
    cluster = yaml.safe_load((ROOT / "configs/cluster_aws.yaml").read_text())
    q, c = load_run_config(ROOT / "configs/quickstart.yaml"), load_run_config(
        ROOT / "configs/cluster_aws.yaml")
    assert q.generations == c.generations == 2 and q.run_name == "quickstart"
    assert c.out.startswith("s3://") and c.tracking.uri.startswith("http://")
    assert _shape(quick) == _shape(cluster)  # the same sections and fields
    assert q.selection == c.selection and q.data.world["seed"] == c.data.world["seed"]


def test_manifest_runs_a_step_once_and_survives_reopening(tmp_path):
    root = RunPath.of(tmp_path)
    calls = []
    m = Manifest(root)
    m.bind_config({"out": "a", "data": 1})
    assert m.run("s1", lambda: calls.append(1) or {"x": 1.5}, log=lambda _: None) == {"x": 1.5}
    finished = m.steps["s1"]["finished"]
    again = Manifest(root)  # a resumed driver
    again.bind_config({"out": "b", "data": 1})  # `out` may change
    assert again.run("s1", lambda: calls.append(2), log=lambda _: None) == {"x": 1.5}
    assert calls == [1] and again.steps["s1"]["finished"] == finished
    assert json.loads((tmp_path / "manifest.json").read_text())["steps"]["s1"]["result"] == {"x": 1.5}
    with pytest.raises(UserError, match="section 'data' differs"):
        Manifest(root).bind_config({"out": "a", "data": 2})


def test_a_run_recorded_before_a_field_existed_resumes_with_its_default(tmp_path):
    """A run directory written by a version without ``selection.labels`` resumes under one that
    has it, at its default; set to anything else, it is another config."""
    from popdistill.pipeline.config import resolved, section_defaults

    now = resolved(BASE_CFG)
    older = copy.deepcopy(now)
    del older["selection"]["labels"]

    def recorded_by_the_older_version(name: str) -> RunPath:
        Manifest(root := RunPath.of(tmp_path / name)).bind_config(older)
        return root

    Manifest(recorded_by_the_older_version("a")).bind_config(now, section_defaults())  # resumes
    changed = resolved(parse_run_config(with_("selection.labels", "multinet-binary")))
    with pytest.raises(UserError, match="section 'selection' differs"):
        Manifest(recorded_by_the_older_version("b")).bind_config(changed, section_defaults())
    with pytest.raises(UserError, match="section 'selection' differs"):  # without the defaults
        Manifest(recorded_by_the_older_version("c")).bind_config(now)


def test_best_per_frame_takes_the_highest_score_first_on_ties():
    scores = np.array([[0.2, 0.9, 0.1], [0.5, 0.5, 0.4], [0.0, 0.1, 0.3]])
    best, value = best_per_frame(scores)
    assert best.tolist() == [1, 0, 2] and value.tolist() == [0.9, 0.5, 0.3]


def test_results_table_lists_baselines_then_each_generation():
    m = {"P": 0.9, "J": 0.25, "CorLoc": None, "frames": 10}
    baselines = {"results": {"centre prior": {**m, "J": 0.1}, "VideoPCA": m}}
    gens = [{"generation": 1, "results": {"Multi-Net": {**m, "P": 0.95}, "a": m}},
            {"generation": 2, "results": {"a": {**m, "J": 0.5}, "Multi-Net": m}}]
    rows = results_table(baselines, gens)
    assert [(r["method"], r["generation"]) for r in rows] == [
        ("centre prior", "-"), ("VideoPCA", "-"), ("a", 1), ("Multi-Net", 1), ("a", 2),
        ("Multi-Net", 2)]
    text = format_results(rows).splitlines()
    assert text[2].split() == ["centre", "prior", "-", "90.0", "10.0", "-", "10"]
    assert text[6].split() == ["a", "2", "90.0", "50.0", "-", "10", "+25.0", "beats"]
    assert text[4].split() == ["a", "1", "90.0", "25.0", "-", "10", "+0.0"]  # ties: no "beats"
    assert not math.isnan(rows[3]["P"])


def test_job_entry_accepts_the_config_flag_or_a_bare_file():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_job", ROOT / "jobs/run.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert job._argv(["--config", "c.yaml", "--out", "o"]) == ["run", "c.yaml", "--out", "o"]
    assert job._argv(["--out", "o", "--config", "c.yaml"]) == ["run", "c.yaml", "--out", "o"]
    assert job._argv(["c.yaml"]) == ["run", "c.yaml"]


def test_cli_run_reports_a_bad_config_without_a_traceback(tmp_path, capsys):
    from popdistill.cli import main

    bad = tmp_path / "bad.yaml"
    data = with_("students.names", ["unet_tiny", "unet_tiny"])
    bad.write_text(yaml.safe_dump({**data, "out": str(tmp_path / "run")}))
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "popdistill run: error:" in err and "names: duplicate names" in err
    assert not (tmp_path / "run").exists()  # failed before any work


def test_multinet_is_scored_at_the_threshold_to_the_power_of_its_members():
    # five students at 0.8 on the object: the product (0.33) fails 0.5, the score mask passes
    parts = [np.full((2, 2), 0.8, np.float32)] * 5
    assert float(multinet_mask(parts, (2, 2), "product").max()) < 0.5
    assert np.allclose(multinet_mask(parts, (2, 2), "geomean"), 0.8)
    # one dissenting student still vetoes: 0.8^4 * 0.01 -> 0.32 < 0.5
    vetoed = multinet_mask([*parts[:4], np.full((2, 2), 0.01, np.float32)], (2, 2), "geomean")
    assert float(vetoed.max()) < 0.5


def test_a_repeated_key_is_refused_with_its_dotted_name(tmp_path):
    text = yaml.safe_dump({**BASE, "out": str(tmp_path / "run")})
    path = tmp_path / "twice.yaml"
    path.write_text(text + "training:\n  epochs: 3\n")  # a second `training:` section
    with pytest.raises(UserError, match=r"twice.yaml: duplicate key 'training' \(lines \d+ and \d+\)"):
        load_run_config(path)
    assert "\neval:\n  format: davis\n" in text
    path.write_text(text.replace("\neval:\n", "\neval:\n  format: davis\n", 1))
    with pytest.raises(UserError, match="duplicate key 'eval.format'"):
        load_run_config(path)


def test_a_section_is_its_library_config_and_refuses_job_fields():
    from popdistill.train.config import TrainConfig

    cfg = parse_run_config(with_("training.epochs", 7))
    assert isinstance(cfg.training, TrainConfig) and cfg.training.epochs == 7
    assert cfg.training.store == "" and cfg.train_configs("s", None, "o")[0].store == "s"
    with pytest.raises(UserError, match="training.store: set by the pipeline, not in the config"):
        parse_run_config(with_("training.store", "elsewhere"))
    with pytest.raises(UserError, match="teacher.actors: set by the pipeline"):
        parse_run_config(with_("teacher.actors", 4))


def test_a_section_reads_back_its_own_to_dict():
    from popdistill.config import load, to_dict
    from popdistill.pipeline.config import RunConfig

    assert load(RunConfig, to_dict(BASE_CFG)) == BASE_CFG
