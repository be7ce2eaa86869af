"""Energy accounting: Green Algorithms on hand-computed cases, the TDP table, carbon intensity, and a
real CodeCarbon offline tracker around real CPU work (no mocks)."""
from __future__ import annotations

import math
import os
import time

import pandas as pd
import pytest

from pipeline.config import EnergyConfig
from pipeline.energy.codecarbon_adapter import carbon_intensity
from pipeline.energy.green_algorithms import green_algorithms_kwh
from pipeline.energy.hardware import detect_hardware, lookup_tdp
from pipeline.energy.meter import EnergyMeter
from pipeline.errors import ConfigError
from pipeline.names import ENERGY_KEYS

CPU_METHODS = {"rapl", "cpu_load", "constant", "windows_emi", "power_gadget", "powermetrics", "raspberry_pmic"}


def busy(seconds: float) -> int:
    """Pure-Python CPU work for about `seconds`."""
    end, x = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        for i in range(10_000):
            x += i * i
    return x


# ----------------------------------------------------------------------------- Green Algorithms


def test_green_algorithms_cpu_only():
    # 1 h x 4 cores x 10 W x 50 % = 20 Wh
    out = green_algorithms_kwh(3600, 4, 10.0, 0.5, 0, 0.0, 0.0, 0.0, 1.0)
    assert out["energy_kwh"] == pytest.approx(0.020)
    assert out["cpu_kwh"] == pytest.approx(0.020)
    assert out["gpu_kwh"] == 0 and out["ram_kwh"] == 0


def test_green_algorithms_cpu_and_gpu():
    # 2 h x (8 cores x 12.5 W x 100 % + 2 GPUs x 300 W x 50 %) = 2 h x 400 W = 0.8 kWh
    out = green_algorithms_kwh(7200, 8, 12.5, 1.0, 2, 300.0, 0.5, 0.0, 1.0)
    assert out["cpu_kwh"] == pytest.approx(0.2)
    assert out["gpu_kwh"] == pytest.approx(0.6)
    assert out["energy_kwh"] == pytest.approx(0.8)


def test_green_algorithms_pue_multiplies_every_part():
    base = green_algorithms_kwh(3600, 4, 10.0, 0.5, 1, 100.0, 0.2, 16.0, 1.0)
    scaled = green_algorithms_kwh(3600, 4, 10.0, 0.5, 1, 100.0, 0.2, 16.0, 1.5)
    for key in ("energy_kwh", "cpu_kwh", "gpu_kwh", "ram_kwh"):
        assert scaled[key] == pytest.approx(1.5 * base[key])
    # 20 W + 20 W + 16 x 0.3725 W = 45.96 W for 1 h, x 1.5
    assert scaled["energy_kwh"] == pytest.approx(45.96 * 1.5 / 1000)


def test_green_algorithms_memory_term():
    # 30 min x 64 GB x 0.3725 W/GB = 11.92 Wh; nothing else
    out = green_algorithms_kwh(1800, 4, 10.0, 0.0, 0, 0.0, 0.0, 64.0, 1.0)
    assert out["ram_kwh"] == pytest.approx(0.01192)
    assert out["energy_kwh"] == pytest.approx(0.01192)
    custom = green_algorithms_kwh(1800, 0, 0.0, 0.0, 0, 0.0, 0.0, 64.0, 1.0, memory_w_per_gb=0.5)
    assert custom["ram_kwh"] == pytest.approx(0.016)


def test_green_algorithms_rejects_impossible_inputs():
    with pytest.raises(ValueError, match="cpu_usage"):
        green_algorithms_kwh(10, 1, 10.0, 1.5, 0, 0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="runtime_s"):
        green_algorithms_kwh(-1, 1, 10.0, 0.5, 0, 0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="pue"):
        green_algorithms_kwh(10, 1, 10.0, 0.5, 0, 0.0, 0.0, 0.0, 0.9)


# ----------------------------------------------------------------------------- hardware and TDP


def test_tdp_table_matches_real_model_names():
    xeon = lookup_tdp("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "cpu")
    assert (xeon["tdp_w"], xeon["cores"]) == (150, 20)
    assert lookup_tdp("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz", "cpu")["tdp_w"] == 205
    assert lookup_tdp("AMD EPYC 7763 64-Core Processor", "cpu")["cores"] == 64
    assert lookup_tdp("NVIDIA A100-SXM4-80GB", "gpu")["tdp_w"] == 400
    assert lookup_tdp("NVIDIA A100-PCIE-40GB", "gpu")["tdp_w"] == 250
    assert lookup_tdp("NVIDIA H100 80GB HBM3", "gpu")["tdp_w"] == 700
    assert lookup_tdp("NVIDIA H100 PCIe", "gpu")["tdp_w"] == 350
    assert lookup_tdp("Tesla V100-SXM2-16GB", "gpu")["tdp_w"] == 300
    assert lookup_tdp("NVIDIA GeForce RTX 4090", "gpu")["tdp_w"] == 450
    assert lookup_tdp("NVIDIA A10G", "gpu")["pattern"] == "A10G"  # not A100, not A10
    assert lookup_tdp("NVIDIA L40S", "gpu")["pattern"] == "L40S"  # not L4
    assert lookup_tdp("AMD EPYC", "cpu") is None  # a VM hiding its model
    assert lookup_tdp("Tesla V100-SXM2-16GB", "cpu") is None  # kinds do not mix


def test_detect_hardware_describes_this_machine():
    hw = detect_hardware()
    assert hw["cpu_model"]
    assert hw["cpu_logical_cores"] >= hw["cpus_available"] >= 1
    assert hw["cpu_physical_cores"] >= 1
    assert hw["gpu_count"] >= 0 and (hw["gpu_model"] != "") == (hw["gpu_count"] > 0)
    assert hw["memory_gb"] > 0


def test_tdp_params_override_the_table_and_fallback_is_named(tmp_path):
    overridden = EnergyMeter(EnergyConfig(tdp_per_core_w=7.5, gpu_tdp_w=123.0), out_dir=tmp_path)
    assert overridden.methods["ga_tdp_per_core_w"] == 7.5
    assert overridden.methods["ga_tdp_source"] == "params: energy.tdp_per_core_w"
    assert overridden.methods["ga_gpu_tdp_w"] == 123.0
    default = EnergyMeter(EnergyConfig(), out_dir=tmp_path)
    row = lookup_tdp(default.hardware["cpu_model"], "cpu")
    if row is None:
        assert default.methods["ga_tdp_per_core_w"] == 12.0
        assert default.methods["ga_tdp_source"].startswith("fallback")
    else:
        assert default.methods["ga_tdp_per_core_w"] == pytest.approx(row["tdp_w"] / row["cores"], rel=1e-3)
        assert default.methods["ga_tdp_source"].startswith("table")


# ----------------------------------------------------------------------------- carbon intensity


def test_carbon_intensity_from_params_or_codecarbon_data():
    from codecarbon.input import DataSource

    assert carbon_intensity(EnergyConfig(carbon_intensity_g_per_kwh=300.0)) == 300.0
    packaged = DataSource().get_global_energy_mix_data()["FRA"]["carbon_intensity"]
    assert carbon_intensity(EnergyConfig(country_iso="FRA")) == pytest.approx(packaged)
    assert carbon_intensity(EnergyConfig(country_iso="deu")) > carbon_intensity(EnergyConfig(country_iso="FRA"))


def test_unknown_country_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="energy.country_iso"):
        EnergyMeter(EnergyConfig(country_iso="XYZ"), out_dir=tmp_path)


# ----------------------------------------------------------------------------- a real meter


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A meter around three 'epochs' of CPU work; what a test may inspect afterwards."""
    out_dir = tmp_path_factory.mktemp("energy") / "models" / "base"
    cfg = EnergyConfig(country_iso="FRA", pue=1.2, measure_power_s=0.5)
    t0 = time.perf_counter()
    with EnergyMeter(cfg, out_dir=out_dir, project_name="train@base") as meter:
        mid = meter.totals()
        for epoch in range(3):
            with meter.task(f"epoch_{epoch}"):
                busy(0.7)
    wall = time.perf_counter() - t0
    return {"meter": meter, "cfg": cfg, "out_dir": out_dir, "mid": mid, "wall": wall}


def test_meter_measures_positive_energy_by_both_methods(measured):
    totals = measured["meter"].totals()
    assert set(totals) == set(ENERGY_KEYS)
    assert totals["energy_kwh_codecarbon"] > 0
    assert totals["energy_kwh_green_algorithms"] > 0
    assert totals["cpu_kwh"] > 0 and totals["ram_kwh"] > 0 and totals["ga_cpu_kwh"] > 0
    assert totals["cpu_kwh"] + totals["gpu_kwh"] + totals["ram_kwh"] == pytest.approx(totals["energy_kwh_codecarbon"])
    ga_parts = totals["ga_cpu_kwh"] + totals["ga_gpu_kwh"] + totals["ga_ram_kwh"]
    assert ga_parts == pytest.approx(totals["energy_kwh_green_algorithms"])
    assert 2.0 < totals["duration_s"] <= measured["wall"]


def test_same_intensity_for_both_methods(measured):
    meter, totals = measured["meter"], measured["meter"].totals()
    intensity = carbon_intensity(measured["cfg"])
    assert meter.methods["carbon_intensity_g_per_kwh"] == pytest.approx(intensity, rel=1e-4)
    assert totals["emissions_kg_co2e"] == pytest.approx(totals["energy_kwh_codecarbon"] * intensity / 1000)
    assert totals["ga_emissions_kg_co2e"] == pytest.approx(totals["energy_kwh_green_algorithms"] * intensity / 1000)
    assert meter.ga_inputs()["pue"] == 1.2


def test_emissions_csv_is_kept_and_agrees(measured):
    meter, totals = measured["meter"], measured["meter"].totals()
    files = meter.files()
    assert files[0] == measured["out_dir"] / "emissions.csv"
    run = pd.read_csv(files[0])
    assert len(run) == 1
    assert run["energy_consumed"].iloc[0] == pytest.approx(totals["energy_kwh_codecarbon"], rel=1e-6)
    assert run["emissions"].iloc[0] == pytest.approx(totals["emissions_kg_co2e"], rel=1e-6)
    assert run["pue"].iloc[0] == 1.2
    assert run["country_iso_code"].iloc[0] == "FRA"
    assert run["duration"].iloc[0] == pytest.approx(totals["duration_s"], rel=0.05)
    assert len(files) == 1  # one CSV an execution: no task CSV (tasks are differences of the totals)


def test_methods_are_read_from_the_tracker(measured):
    methods = measured["meter"].methods
    assert methods["codecarbon"] == "ok"
    assert methods["cpu"] in CPU_METHODS
    assert methods["gpu"] in {"nvml_counter", "nvml_power", "nvml_counter+nvml_power", "amdsmi", "none", "missing"}
    assert methods["ram"] in {"constant", "dimm_model_machine", "dimm_model_process", "raspberry_pmic"}
    assert methods["tracking_mode"] == "machine"
    assert "ga_tdp_source" in methods and "ga_memory" in methods


def test_tasks_add_up_to_the_run(measured):
    meter, totals = measured["meter"], measured["meter"].totals()
    assert [t.name for t in meter.tasks] == ["epoch_0", "epoch_1", "epoch_2"]
    for t in meter.tasks:
        assert t["duration_s"] == pytest.approx(0.7, abs=0.3)
        assert t["energy_kwh_codecarbon"] > 0 and t["energy_kwh_green_algorithms"] > 0
        assert t.cpu_usage > 0
    cc = sum(t["energy_kwh_codecarbon"] for t in meter.tasks)
    ga = sum(t["energy_kwh_green_algorithms"] for t in meter.tasks)
    assert cc == pytest.approx(totals["energy_kwh_codecarbon"], rel=0.15)
    assert cc <= totals["energy_kwh_codecarbon"] * 1.001
    assert ga == pytest.approx(totals["energy_kwh_green_algorithms"], rel=0.15)


def test_totals_work_mid_run(measured):
    mid, final = measured["mid"], measured["meter"].totals()
    assert 0 <= mid["energy_kwh_codecarbon"] <= final["energy_kwh_codecarbon"]
    assert 0 < mid["duration_s"] < final["duration_s"]


def test_no_codecarbon_output(tmp_path, capfd):
    with EnergyMeter(EnergyConfig(measure_power_s=0.5), out_dir=tmp_path, project_name="quiet") as meter:
        with meter.task("work"):
            busy(0.2)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# ----------------------------------------------------------------------------- failures and resume


def test_totals_after_an_exception(tmp_path):
    meter = EnergyMeter(EnergyConfig(measure_power_s=0.5), out_dir=tmp_path, project_name="crash")
    with pytest.raises(RuntimeError, match="diverged"):
        with meter:
            with meter.task("epoch_0"):
                busy(0.3)
                raise RuntimeError("loss diverged")
    totals = meter.totals()
    assert totals["energy_kwh_codecarbon"] > 0 and totals["energy_kwh_green_algorithms"] > 0
    assert meter.tasks[0]["energy_kwh_codecarbon"] > 0  # the interrupted epoch is measured too
    assert (tmp_path / "emissions.csv").is_file()
    assert not meter.running


def test_previous_energy_is_carried_over(tmp_path):
    previous = {"energy_kwh_codecarbon": 1.5, "energy_kwh_green_algorithms": 2.0, "emissions_kg_co2e": 0.1,
                "duration_s": 600.0, "cpu_kwh": 1.0, "ram_kwh": 0.5, "params_m": 3.0}
    with EnergyMeter(EnergyConfig(measure_power_s=0.5), out_dir=tmp_path, previous=previous) as meter:
        busy(0.3)
    own, totals = meter.run_totals(), meter.totals()
    assert 0 < own["energy_kwh_codecarbon"] < 0.01 and own["duration_s"] < 60
    for key in ENERGY_KEYS:
        assert totals[key] == pytest.approx(previous.get(key, 0.0) + own[key])
    assert "params_m" not in totals
    with pytest.raises(ValueError, match="energy_kwh_codecarbon"):
        EnergyMeter(EnergyConfig(), out_dir=tmp_path, previous={"energy_kwh_codecarbon": "lots"})


def test_tasks_need_a_running_meter_and_do_not_nest(tmp_path):
    meter = EnergyMeter(EnergyConfig(measure_power_s=0.5), out_dir=tmp_path)
    with pytest.raises(RuntimeError, match="not running"):
        with meter.task("early"):
            pass
    with meter:
        with meter.task("outer"):
            with pytest.raises(RuntimeError, match="still running"):
                with meter.task("inner"):
                    pass
    assert [t.name for t in meter.tasks] == ["outer"]
    assert math.isfinite(meter.totals()["energy_kwh_codecarbon"])


# ----------------------------------------------------------------------------- sampling all along


def test_codecarbon_samples_all_along_a_task(measured):
    # measure_power_s 0.5 over three 0.7 s tasks: CodeCarbon's scheduler keeps measuring inside
    # each task (its task API would pause it), and the meter records every sample
    meter = measured["meter"]
    times = [ms for ms, _ in meter.samples]
    assert len(times) >= 3
    energies = [s["energy_kwh_codecarbon"] for _, s in meter.samples]
    assert energies == sorted(energies) and energies[-1] > energies[0]
    inside = [t for t in times if t - times[0] < 2000]
    assert len(inside) >= 3  # several samples within the first 2 s, i.e. within the tasks


def _fake_rapl(folder, max_uj: int) -> tuple:
    """A powercap folder with one package whose counter wraps at `max_uj` microjoules."""
    package = folder / "intel-rapl:0"
    package.mkdir(parents=True)
    (package / "name").write_text("package-0\n")
    (package / "max_energy_range_uj").write_text(f"{max_uj}\n")
    counter = package / "energy_uj"
    counter.write_text("0\n")
    return counter


def test_a_counter_that_wraps_within_a_task_is_counted_once_per_wrap(tmp_path):
    """A simulated RAPL counter at 100 W that wraps every 0.5 s (a 50 J range) under a 2.5 s task:
    sampled every 0.2 s, every wrap falls between two samples and the task's energy is the true one;
    read only at the task's ends (CodeCarbon's task API pauses its scheduler) it would lose 4 wraps."""
    import threading

    watts, max_uj = 100.0, 50_000_000
    counter = _fake_rapl(tmp_path / "powercap", max_uj)
    stop, started = threading.Event(), time.perf_counter()

    def burn() -> None:  # the counter of a package drawing `watts`, wrapping at max_uj
        scratch = counter.with_name("energy_uj.next")
        while not stop.wait(0.01):  # replaced whole, as sysfs never shows a half-written value
            scratch.write_text(f"{int((time.perf_counter() - started) * watts * 1e6) % max_uj}\n")
            os.replace(scratch, counter)

    writer = threading.Thread(target=burn, daemon=True)
    writer.start()
    cfg = EnergyConfig(measure_power_s=0.2, rapl_dir=str(tmp_path / "powercap"))
    try:
        with EnergyMeter(cfg, out_dir=tmp_path / "out", project_name="wrap") as meter:
            assert meter.methods["cpu"] == "rapl"
            with meter.task("epoch") as task:
                time.sleep(2.5)
    finally:
        stop.set()
        writer.join()
    true_kwh = watts * task["duration_s"] / 3.6e6
    assert task["cpu_kwh"] == pytest.approx(true_kwh, rel=0.15)
    assert task["cpu_kwh"] > 3 * max_uj / 3.6e12  # more than the three wraps the task spans


def test_a_failed_measurement_is_missing_not_zero(tmp_path):
    # RAPL counters said to be where there are none: CodeCarbon cannot start
    cfg = EnergyConfig(measure_power_s=0.5, rapl_dir=str(tmp_path / "no-powercap-here"))
    with EnergyMeter(cfg, out_dir=tmp_path, project_name="broken") as meter:
        busy(0.2)
    totals = meter.totals()
    assert math.isnan(totals["energy_kwh_codecarbon"]) and math.isnan(totals["cpu_kwh"])
    assert totals["energy_kwh_green_algorithms"] > 0  # the other method still prices it
    assert meter.methods["codecarbon"].startswith("failed")



def test_a_job_sharing_its_machine_measures_its_own_share_and_says_so(tmp_path, monkeypatch):
    from pipeline.energy.codecarbon_adapter import NODE_JOBS_ENV

    cfg = EnergyConfig(measure_power_s=0.5)
    monkeypatch.setenv(NODE_JOBS_ENV, "1")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(os.cpu_count())), raising=False)
    with EnergyMeter(cfg, out_dir=tmp_path / "alone", project_name="alone") as meter:
        busy(0.2)
    assert meter.methods["tracking_mode"] == "machine" and "node_shared" not in meter.methods
    monkeypatch.setenv(NODE_JOBS_ENV, "2")  # as `sepcost launch --jobs 2` runs its jobs
    with EnergyMeter(cfg, out_dir=tmp_path / "shared", project_name="shared") as meter:
        busy(0.2)
    assert meter.methods["tracking_mode"] == "process" and meter.methods["node_shared"] == "2 jobs launched side by side"
    assert meter.totals()["energy_kwh_codecarbon"] > 0
    monkeypatch.setenv(NODE_JOBS_ENV, "1")  # a scheduler that allotted one CPU of the machine's
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    with EnergyMeter(cfg, out_dir=tmp_path / "allotted", project_name="allotted") as meter:
        pass
    if (os.cpu_count() or 1) > 1:
        assert meter.methods["node_shared"] == f"1 of the machine's {os.cpu_count()} CPUs allotted"


# A meter in process mode on a node shared by jobs, in a process of its own: it sleeps while a
# sibling (as another torchrun rank of its node) works; it prints its CPU energy and CPU-seconds.
_SIBLING_METER = """
import os, sys, time
from pipeline.config import EnergyConfig
from pipeline.energy.meter import EnergyMeter
root = int(sys.argv[1]) or None
with EnergyMeter(EnergyConfig(measure_power_s=0.5), out_dir=sys.argv[2], project_name="rank", process_root=root) as m:
    time.sleep(2.0)
print(m.totals()["cpu_kwh"], m.methods["tracking_mode"])
"""


def test_a_shared_node_meter_counts_every_rank_under_its_root(tmp_path):
    """A node leader's meter in process mode measures its root's process tree (torchrun's agent and
    every rank), not its own process alone."""
    import subprocess
    import sys

    from pipeline.energy.codecarbon_adapter import NODE_JOBS_ENV

    env = {**os.environ, NODE_JOBS_ENV: "2", "CODECARBON_LOG_LEVEL": "error"}
    sibling = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        kwh = {}
        for name, root in (("own", 0), ("tree", os.getpid())):
            out = subprocess.run([sys.executable, "-c", _SIBLING_METER, str(root), str(tmp_path / name)], env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
            assert out[1] == "process"
            kwh[name] = float(out[0])
    finally:
        sibling.kill()
    assert kwh["tree"] > 2 * kwh["own"]  # the sibling's busy core, against an idle process's floor
