"""dvc.yaml cannot go stale: each stage depends on every project file its command runs or reads,
and on every params section its code reads. Both are derived from the code, not listed by hand."""
from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from pipeline import sources
from pipeline.cli import STAGES
from pipeline import config
from pipeline.config import study_file
from pipeline.config.schema import RECIPE_SECTIONS, Config
from pipeline.names import run_key, stage_name, stage_parts
from pipeline.training.resume import RESULT_SECTIONS
from tests.conftest import REPO

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
SECTIONS = {f.name for f in dataclasses.fields(Config)} - {"variant", "params_file"}
MACHINE = {"runtime"}  # how fast and where: never a stage's params
BOOKKEEPING = {"energy", "tracking"}  # what a run records about itself; the report's output shows them


def _stage(name: str) -> dict:
    stage = DVC[name]
    return stage.get("do", stage)


def _command(stage: dict) -> str:
    match = re.fullmatch(r"sepcost (\w+)( .*)?", stage["cmd"])
    assert match, stage["cmd"]
    return match.group(1)


def _data_files(path: Path) -> set[Path]:
    """Files beside a module that it names in a string (e.g. `Path(__file__).with_name("tdp.csv")`)."""
    beside = {p.name: p for p in path.parent.iterdir() if p.is_file() and p.suffix != ".py"}
    tree = ast.parse(path.read_text())
    return {beside[n.value] for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in beside}


def _files_run(command: str) -> set[str]:
    """The project files a command runs: its modules, the CLI's, and the data files they read."""
    modules = set(sources.closure(STAGES[command])) | set(sources.closure("pipeline.cli"))
    files = set()
    for module in modules:
        path = sources.module_file(module)
        files |= {path, *_data_files(path)}
    return {str(p.relative_to(REPO)) for p in files}


def _declared_sections(stage: dict) -> set[str]:
    """The config sections a stage's params cover: `study.<section>` of study.json, and a run's
    recipe (`runs.${key}`, or every run's with `runs`), which is its seed and variant sections."""
    declared = set()
    for entry in stage.get("params", []):
        assert isinstance(entry, dict) and list(entry) == [str(study_file.STUDY_FILE)], \
            f"params must come from {study_file.STUDY_FILE}, got {entry}"
        for key in entry[str(study_file.STUDY_FILE)]:
            root, _, rest = key.partition(".")
            if root == "study":
                declared.add(rest.split(".")[0])
            elif root == "runs":
                declared |= {"seed", "variants", *RECIPE_SECTIONS}
            else:
                raise AssertionError(f"unknown params key {key}")
    return declared


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", list(DVC))
def test_deps_cover_every_file_the_command_runs(name):
    stage = _stage(name)
    deps = [str(d) for d in stage["deps"]]
    missing = sorted(f for f in _files_run(_command(stage)) if not _covered(f, deps))
    assert not missing, f"dvc.yaml: stages.{name}.deps: add {', '.join(missing)}"
    for dep in deps:
        if not dep.startswith(("data/", "models/", "metrics", "plots/", "reports/")):
            assert (REPO / dep).exists(), f"dvc.yaml: stages.{name}.deps: {dep} does not exist"


def _sections_read(module: str) -> set[str]:
    """Config sections a module's code reads: `cfg.<section>`, or `<name>.<section>` where the
    name is an argument annotated as a `Config`."""
    tree = ast.parse(sources.module_file(module).read_text())
    names = {"cfg"} | {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)
                       and isinstance(a.annotation, ast.Name) and a.annotation.id == "Config"}
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id in names and node.attr in SECTIONS}


@pytest.mark.parametrize("name", list(DVC))
def test_params_cover_every_section_the_code_reads(name):
    stage = _stage(name)
    command = _command(stage)
    declared = _declared_sections(stage)
    # config validates every section and tracking records every section in the run; what decides
    # a stage's output is read elsewhere
    modules = [m for m in sources.closure(STAGES[command])
               if not m.startswith(("pipeline.config", "pipeline.tracking"))]
    read = set().union(*(_sections_read(m) for m in modules)) - MACHINE - {"variants"}
    if command != "report":
        read -= BOOKKEEPING
    assert read <= declared, f"dvc.yaml: stages.{name}.params: add {', '.join(sorted(read - declared))}"
    assert not declared & MACHINE, f"dvc.yaml: stages.{name}.params: machine knobs are no params"
    if "foreach" in DVC[name]:
        assert DVC[name]["foreach"] == "${runs}"
        assert "runs.${key}" in stage["params"][0][str(study_file.STUDY_FILE)], \
            f"dvc.yaml: stages.{name}.params: add runs.${{key}}"


def test_training_params_are_what_decides_its_result():
    assert _declared_sections(_stage("train")) - {"variants"} == set(RESULT_SECTIONS)


def test_the_committed_study_file_is_current(monkeypatch):
    monkeypatch.chdir(REPO)  # the file names its params file relative to the repository
    cfg = config.load("params.yaml")
    written = json.loads((REPO / study_file.STUDY_FILE).read_text())
    assert written["source"] == "params.yaml"
    fresh = json.loads(json.dumps(study_file.resolved(cfg)))
    assert written == fresh, "study.json is out of date with params.yaml: run `sepcost resolve`"
    assert list(written["runs"]) == [run_key(v, s) for v, s in config.runs(cfg)]
    assert "runtime" not in written["study"]


def test_a_stage_refuses_a_stale_study_file(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main
    from tests.conftest import error_line

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    assert main(["resolve"]) == 0
    config.load("params.yaml")  # current: no error
    with open("params.yaml", "a") as f:
        f.write("seed: 7\n")
    assert main(["prepare"]) == 2
    assert "study.json: out of date with params.yaml" in error_line(capsys)
    assert main(["resolve"]) == 0 and json.loads(open("study.json").read())["study"]["seed"] == 7


def test_the_section_scan_sees_reads_in_helpers():
    # the sampler reads the seed and the recipe: a helper's read counts for the stage that imports it
    assert {"seed", "train", "runtime"} <= _sections_read("pipeline.data.sampler")
    assert Path(sources.module_file("pipeline.data.sampler")).is_file()


def test_stage_names_are_dvc_s_own():
    # DVC names a foreach stage `kind@key`: the names MLflow's tags and `dvc commit` use are DVC's
    cfg = config.load(REPO / "params.yaml")
    foreach = {kind for kind, stage in DVC.items() if "foreach" in stage}
    assert foreach == {"train", "evaluate"}
    for variant, seed in config.runs(cfg):
        for kind in foreach:
            name = stage_name(kind, run_key(variant, seed))
            assert name == f"{kind}@{variant}-seed{seed}" and stage_parts(name) == (kind, run_key(variant, seed))
    assert all(stage_parts(stage_name(kind)) == (kind, "") for kind in DVC if kind not in foreach)
