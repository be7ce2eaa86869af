"""A training stopped by a signal mid-epoch resumes and ends with the weights of one never stopped;
data-parallel ranks (real torchrun, gloo) train as one process at the same global batch."""
import copy
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline import config, paths
from pipeline.checkpoint import load_models, load_state
from pipeline.data.manifest import load_manifest
from pipeline.data.sampler import training_store
from pipeline.specs import separator_specs
from pipeline.training.distributed import World
from pipeline.training.loop import STEPS_S, Stopper, _uses_dropout, train_steps
from pipeline.training.preemption import StopSignals
from pipeline.training.slot import make_slot
from tests.conftest import ARTIFACTS, REPO, TINY, write_params

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _study(prepared_study, folder, overrides):
    shutil.copytree(prepared_study, folder)
    write_params(folder, overrides)
    assert subprocess.run([sys.executable, "-m", "pipeline.cli", "resolve"], cwd=folder, env=ENV).returncode == 0
    return folder


def _train(folder, variant, *extra):
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "train", "--variant", variant, *extra], cwd=folder,
                          env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def _runs(folder):
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    found = client.get_experiment_by_name(config.load(folder / "params.yaml").tracking.experiment)
    runs = client.search_runs([found.experiment_id], run_view_type=3, order_by=["attributes.start_time ASC"])
    return [r for r in runs if r.data.tags.get("dvc.stage", "").startswith("train@")]


def _weights(folder, run):
    """Every model's weights and optimiser state at the end of the training."""
    state = load_state(folder / paths.model_dir(run) / "last.pt")
    assert state["complete"]
    return [(s["model"], s["optimizer"]["state"]) for s in state["slots"]]


def _stop_in_the_second_epoch(folder, variant, extra, last, signum=signal.SIGTERM, to_all=False):
    """`train` in `folder`, sent `signum` once its second epoch made a step, half a model's step
    later: where a signal lands on average (the training stops after the step it is in); to the
    command, or as SLURM signals a job, to every one of its processes (torchrun's agent and ranks).
    Returns the process, the signal's time and the stderr read so far."""
    env = {**ENV, "TQDM_MININTERVAL": "0"}  # the progress bar tells each step
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "train", "--variant", variant, *extra],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    bar = b""
    made_a_step = re.compile(rb"epoch 2/\d+: *\d+%\|[^|]*\| *[1-9]")
    deadline = time.monotonic() + 300
    while not made_a_step.search(bar[-400:]):
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk and time.monotonic() < deadline, (proc.poll(), bar[-3000:])
        bar += chunk
    while (state := load_state(last)) is None:  # the first epoch's, written in the background
        assert time.monotonic() < deadline, f"{last}: not written by the second epoch"
        time.sleep(0.05)
    # how long a model's step takes
    row = state["history"][0]
    per_epoch = config.resolve(config.load(folder / "params.yaml"), variant).train.steps_per_epoch(state["world_size"])
    time.sleep(sum(row[k] for k in row if k.startswith(STEPS_S)) / len(state["slots"]) / per_epoch / 2)
    sent = time.time()
    for process in [psutil.Process(proc.pid), *(psutil.Process(proc.pid).children(recursive=True) if to_all else [])]:
        process.send_signal(signum)
    return proc, sent, bar.decode(errors="replace")


def _identical(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b))
    return a == b


# (variant, its overrides, train's extra arguments, the signal, sent to every process): Open-Unmix
# draws dropout masks from torch's generator; base has no dropout but trains its four models side
# by side in threads, or as two data-parallel ranks (torchrun, gloo) whose signal comes through
# torchrun's agent, or, as SLURM sends submitit's warning, to the agent and the ranks alike.
LONGER = {"epoch_items": 64, "max_epochs": 3}
TWO_RANKS = ("base", {"base": {"train": {**LONGER, "batch_size": 2}}}, ["--nproc", "2"])
CASES = {
    "base": ("base", {"base": {"train": LONGER}}, [], signal.SIGTERM, False),
    "umx": ("umx", {"umx": {"train": LONGER}}, [], signal.SIGTERM, False),
    "base-2-ranks": (*TWO_RANKS, signal.SIGTERM, False),
    "base-2-ranks-usr2-to-all": (*TWO_RANKS, signal.SIGUSR2, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_training_stopped_mid_epoch_ends_with_the_weights_of_one_never_stopped(prepared_study, tmp_path, case):
    """A stop signal in the second epoch: the training stops after its current update with one
    mid-epoch checkpoint, its run KILLED with its energy; resumed, it ends bit for bit where an
    uninterrupted training of the same seed does. The signal's time to the checkpoint and to the
    exit are written to a test artifact."""
    variant, variants, extra, signum, to_all = CASES[case]
    overrides = {**TINY, "variants": variants}
    run = f"{variant}-seed42"
    whole = _study(prepared_study, tmp_path / "whole", overrides)
    _train(whole, variant, *extra)

    stopped = _study(prepared_study, tmp_path / "stopped", overrides)
    last = stopped / paths.model_dir(run) / "last.pt"
    proc, sent, err = _stop_in_the_second_epoch(stopped, variant, extra, last, signum, to_all)
    out, rest = proc.communicate(timeout=300)
    out, err = out.decode(), err + rest.decode(errors="replace")
    exit_s, saved_s = time.time() - sent, last.stat().st_mtime - sent
    assert proc.returncode == 128 + signum, err[-3000:]
    assert out.count("stopped in epoch") == 1  # one checkpoint, however many copies of the signal came

    state = load_state(last)
    steps = state["progress"]
    ranks = state["world_size"]
    per_epoch = config.resolve(config.load(stopped / "params.yaml"), variant).train.steps_per_epoch(ranks)
    assert len(state["random"]) == ranks == (2 if extra else 1)
    assert state["epoch"] == 1 and 0 < sum(p["steps"] for p in steps.values()) < per_epoch * len(state["slots"])
    # the acceptance's bound: one training step plus the checkpoint write; the stop comes after the
    # step of each model in flight (Open-Unmix's one after the other, base's side by side)
    step_s = max(p["seconds"] / p["steps"] for p in steps.values() if p["steps"])
    write_s = float(re.search(r"checkpoint written in ([0-9.]+) s", out).group(1))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"preemption-{case}.txt").write_text(
        f"{case}: {signal.Signals(signum).name} mid-step to checkpoint written {saved_s:.2f} s (the write {write_s:.2f} s), to exit "
        f"{exit_s:.2f} s (the run's close and the process's end {exit_s - saved_s:.2f} s); one training step "
        f"{step_s:.2f} s + the write = {step_s + write_s:.2f} s: the exit "
        f"is {'within' if exit_s <= step_s + write_s else 'over'} that\n")
    killed, = _runs(stopped)
    assert killed.info.status == "KILLED" and killed.data.metrics["run_energy_kwh_codecarbon"] > 0

    _train(stopped, variant, *extra)
    models = load_models(whole / paths.model_dir(run) / "best.pt")
    assert any(_uses_dropout(m) for m in models) == (variant == "umx")  # umx: the random state is tested
    assert _identical(_weights(whole, run), _weights(stopped, run))
    first, resumed = _runs(stopped)
    assert resumed.info.status == "FINISHED" and resumed.data.tags["resumed_from"] == first.info.run_id


def test_two_gloo_ranks_train_as_one_process_at_the_same_global_batch(prepared_study, tmp_path):
    """torchrun with 2 ranks at batch 2 against one process at batch 4: the same items make each
    global batch and the averaged gradients are the batch's, so the losses, scores and weights
    agree to float rounding; only rank 0 opens an MLflow run, and the node is metered once."""
    ranks = _study(prepared_study, tmp_path / "ranks", {**TINY, "variants": {"base": {"train": {"batch_size": 2}}}})
    _train(ranks, "base", "--nproc", "2")
    single = _study(prepared_study, tmp_path / "single", {**TINY, "variants": {"base": {"train": {"batch_size": 4}}}})
    _train(single, "base")

    def history(folder):
        with open(folder / paths.train_history("base-seed42")) as f:
            return list(csv.DictReader(f, delimiter="\t"))

    for a, b in zip(history(ranks), history(single), strict=True):
        for key in ("train_loss", "valid_usdr_avg", "valid_loss"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4, abs=1e-5), key
    # Adam divides by the root of the squared gradients: a parameter whose gradients are rounding
    # noise moves by up to the lr either way, so each model is compared as a whole
    for (wa, _), (wb, _) in zip(_weights(ranks, "base-seed42"), _weights(single, "base-seed42"), strict=True):
        apart = sum((wa[k] - wb[k]).square().sum() for k in wa).sqrt()
        assert apart / sum(w.square().sum() for w in wb.values()).sqrt() < 1e-3

    run, = _runs(ranks)  # rank 1 opened none
    assert run.info.status == "FINISHED" and run.data.metrics["world_size"] == 2
    assert run.data.params["train.global_batch"] == "4" and run.data.params["train.lr_effective"] \
        == _runs(single)[0].data.params["train.lr_effective"]
    tags = run.data.tags
    assert tags["energy.method.world_size"] == "2" and tags["energy.method.nodes"] == "1"
    # one meter on the node (rank 0's): no second CodeCarbon measurement of its CPU and RAM
    assert not list((ranks / paths.model_dir("base-seed42")).glob("rank*"))


def test_a_stop_asked_between_steps_begins_no_step(prepared_study, tmp_path, monkeypatch):
    """A signal that came while no step ran (between epochs, while a checkpoint was written) stops
    the models before their next step: none begins, no weight changes."""
    folder = _study(prepared_study, tmp_path / "study", TINY)
    monkeypatch.chdir(folder)
    study = config.load(folder / "params.yaml")
    cfg = config.resolve(study, "base", study.seed)
    manifest = load_manifest()
    store = training_store(cfg, manifest)
    cpu = torch.device("cpu")
    slots = [make_slot(cfg, spec, manifest, store, cpu, i) for i, spec in enumerate(separator_specs(cfg))]
    before = [copy.deepcopy(s.model.state_dict()) for s in slots]
    signals = StopSignals()
    signals.requested = signal.SIGTERM
    reached = train_steps(slots, cfg, 0, cpu, 4, "epoch", stopper=Stopper(signals, World()))
    assert [r["steps"] for r in reached.values()] == [0] * len(slots)
    assert _identical(before, [s.model.state_dict() for s in slots])


STOPPING = textwrap.dedent("""
    import sys, time
    from pipeline.training.preemption import StopSignals

    with StopSignals() as signals:
        print("ready", flush=True)
        while not signals.requested:
            time.sleep(0.01)
        print(f"asked to stop by {signals.requested}", flush=True)
        for _ in range(int(sys.argv[1])):  # a step of this many 10 ms
            time.sleep(0.01)
        print("step done", flush=True)
""")


def test_a_second_ctrl_c_exits_at_once(tmp_path):
    """The first SIGINT only asks for a stop after the current step; a second one, a user's second
    Ctrl-C, ends the process there and then, with the conventional status."""
    proc = subprocess.Popen([sys.executable, "-c", STOPPING, "1000000"], env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == f"asked to stop by {int(signal.SIGINT)}"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 128 + signal.SIGINT
    assert "SIGINT again: exiting now" in proc.stderr.read()


@pytest.mark.parametrize("first, then", [(signal.SIGUSR2, signal.SIGTERM), (signal.SIGTERM, signal.SIGTERM),
                                         (signal.SIGUSR1, signal.SIGUSR2)])
def test_a_scheduler_signalling_again_does_not_cut_the_step(tmp_path, first, then):
    """SLURM signals every process of a job (its warning, or SIGTERM on preemption) and the job's
    own process forwards one more: the step still ends, once, as the first signal asked."""
    proc = subprocess.Popen([sys.executable, "-c", STOPPING, "100"], env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(first)
    assert proc.stdout.readline().strip() == f"asked to stop by {int(first)}"
    proc.send_signal(then)
    assert proc.stdout.readline().strip() == "step done"
    assert proc.wait(timeout=30) == 0
    assert f"{signal.Signals(then).name}: already stopping after this step" in proc.stderr.read()
