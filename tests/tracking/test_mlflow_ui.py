"""The MLflow UI as a researcher sees it: a real `mlflow server` over a store that real trainings and
evaluations filled, opened in headless Chromium (Debian's `chromium`, which `setup.sh --tests`
installs). The screenshot is kept in .test-artifacts/ (the run's summary names it)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline import config, paths, tracking
from pipeline.names import run_key
from pipeline.tracking import ui
from pipeline.tracking.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
from tests.conftest import ARTIFACTS, TINY, run_in, write_params
from tests.servers import mlflow_server

pytestmark = pytest.mark.slow

RUNS = (("base", 42), ("base", 43), ("large", 42))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--window-size=2400,900", "--virtual-time-budget=30000"]


@pytest.fixture(scope="module")
def filled_store(prepared_study, tmp_path_factory) -> Path:
    """A study whose store holds three real trainings (base with two seeds, large), each evaluated."""
    folder = tmp_path_factory.mktemp("ui") / "study"
    shutil.copytree(prepared_study, folder)
    write_params(folder, {**TINY, "variants": {"base": {"seeds": 2}}})
    for variant, seed in RUNS:
        assert run_in(folder, ["train", "--variant", variant, "--seed", str(seed)]) == 0
        assert run_in(folder, ["evaluate", "--variant", variant, "--seed", str(seed)]) == 0
    return folder


@pytest.fixture(scope="module")
def server(filled_store):
    """`mlflow server` on a free loopback port over the study's store: its address, the config, the URI."""
    cfg = config.load(filled_store / "params.yaml")
    tracking.configure(cfg.tracking, root=filled_store)
    uri, artifacts = tracking.resolved(cfg.tracking)
    with mlflow_server(uri, ["--default-artifact-root", artifacts], filled_store / "mlflow-server.log") as address:
        yield address, cfg, uri


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "no chromium: run `bash setup.sh --tests` (it installs Debian's chromium)"
    return found


def _browse(url: str, profile: Path, *output: str) -> str:
    """Chromium's rendering of `url` after its scripts ran: the DOM (`--dump-dom`) or nothing."""
    done = subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *output, url],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _text(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_the_study_opens_on_its_training_runs_with_scores_and_energy(server, tmp_path):
    address, cfg, uri = server
    with urllib.request.urlopen(f"{address}/api/2.0/mlflow/experiments/get-by-name?experiment_name="
                                f"{cfg.tracking.experiment}", timeout=10) as answer:
        experiment = json.loads(answer.read())["experiment"]
    tags = {t["key"]: t["value"] for t in experiment["tags"]}
    assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND  # what the REST answer carries

    url = ui.experiment_url(address, experiment["experiment_id"])
    page = _text(_browse(url, tmp_path / "profile", "--dump-dom"))
    assert "matching runs" in page and "Tool calls" not in page  # the runs table, not the GenAI overview
    header = page[page.index("Run Name"):]
    for key in (*ui.METRIC_COLUMNS, *ui.PARAM_COLUMNS):
        assert key in header, f"column {key} not shown"
    client = MlflowClient(uri)
    shown = [float(x) for x in re.findall(r"(?<= )-?\d+\.\d+(?:e[-+]?\d+)?(?= )", header)]
    for variant, seed in RUNS:
        name = run_key(variant, seed)
        assert page.count(f" {name} ") == 1, f"{name}: expected one row"  # its evaluation is nested, folded
        run = client.get_run(json.loads((Path(uri[len("sqlite:///"):]).parent / paths.train_metrics(name))
                                        .read_text())["mlflow_run_id"])
        for key in ("usdr_avg", "best_valid_usdr_avg", "energy_kwh_codecarbon", "energy_kwh_green_algorithms"):
            value = run.data.metrics[key]
            assert any(v == pytest.approx(value, rel=1e-9) for v in shown), f"{name}: {key} {value} not shown"
    assert "synthetic (2 ch, 44100 Hz)" in header  # the Datasets column
    assert header.count(" separator ") >= len(RUNS), "the Models column does not show the logged models"

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "mlflow-ui-runs.png"
    shot.unlink(missing_ok=True)
    _browse(url, tmp_path / "profile-shot", f"--screenshot={shot}")
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (2400, 900)
        colours = image.convert("L").getextrema()
        assert colours[1] - colours[0] > 100  # something was drawn
