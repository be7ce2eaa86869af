"""The GPU check: the study where its users run it, on a CUDA GPU. Never in CI (CI has no GPU).

    python benchmarks/gpu_check.py [--device cuda] [--steps 5] [--json FILE]

1. The default study's stages on the GPU, in a fresh temporary copy of params.yaml with a shortened
   schedule (2 epochs of 8 steps, small synthetic data): prepare, sad, the bounds, and for base
   (the t+tf loss: validation takes the STFT of its estimates), umx (input statistics, the Wiener
   filter) and umx_unidirectional (streaming, one causal model per target) the training, the
   forecast, the evaluation (BSSEval on the GPU), then `sepcost separate` of a test mixture and the
   report. Each command's exit status and seconds; a failed one prints its last lines. `--study
   DIR` keeps the study's folder (its report, MLflow store and models) to look at.
2. The paper-size base (pipeline/config/schema.py's defaults: N 64, R 8, 4 of 8 blocks recomputed
   in backward), one target's model, a batch of 8 x 3 s stereo, `--steps` training steps after one
   warm-up, in fp32 and in bf16 (where the device has native bf16): the median step, peak GPU
   memory, and the GPU's energy per step from NVML's total-energy counter.
3. One 10 s stereo separation with the paper-size base's four models, in fp32 and bf16: its
   seconds and real-time factor.

`--device cpu` runs the same on the CPU (no NVML; bf16 where the CPU has it natively), which
checks the script on a machine without a GPU. It prints the load average beside the figures.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from model import build_separator  # noqa: E402
from pipeline import precision  # noqa: E402
from pipeline.boundary import to_device  # noqa: E402
from pipeline.config import Config, merge  # noqa: E402
from pipeline.inference.separate import separate  # noqa: E402
from pipeline.runtime import synchronize  # noqa: E402
from pipeline.specs import separator_specs  # noqa: E402
from pipeline.training import recipe  # noqa: E402

VARIANTS = ("base", "umx", "umx_unidirectional")  # every path into a model, between them
SEPARATION_S = 10.0
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}


def short_study(device: str) -> dict:
    """params.yaml with the variants that take every path, one seed, a shortened schedule."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    variants = {v: merge(params["variants"][v], {"seeds": 1, "train": {"epoch_items": 32, "max_epochs": 2}})
                for v in VARIANTS}
    return merge({k: v for k, v in params.items() if k != "variants"}, {
        "data": {"synthetic": {"train_songs": 4, "valid_songs": 2, "test_songs": 2}},
        "train": {"valid_tracks": 2}, "eval": {"test_tracks": 2},
        "runtime": {"device": device}, "variants": variants})


def stage_commands() -> list[list[str]]:
    commands = [["resolve"], ["prepare"], ["sad"], ["evaluate", "--bounds"]]
    for variant in VARIANTS:
        commands += [["train", "--variant", variant], ["forecast", "--variant", variant, "--steps", "2"],
                     ["evaluate", "--variant", variant]]
    mixture = "data/prepared/musdb/test"
    return commands + [["separate", "--variant", "umx", "--out", "separated", mixture], ["report"]]


def run_stages(device: str, keep: Path | None) -> list[dict]:
    """Every command of the shortened study in order, in `keep` or a temporary folder."""
    rows = []
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(str(keep)) if keep else tempfile.TemporaryDirectory(prefix="sepcost-gpu-check-")) as folder:
        (Path(folder) / "params.yaml").write_text(yaml.safe_dump(short_study(device), sort_keys=False))
        for argv in stage_commands():
            if argv[0] == "separate":  # the first test track's mixture
                argv = [*argv[:-1], str(next(Path(folder, argv[-1]).glob("*/mixture.wav")))]
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], cwd=folder, env=ENV,
                                  capture_output=True, text=True)
            rows.append({"command": " ".join(argv[:3]), "rc": proc.returncode, "s": time.perf_counter() - started})
            print(f"  sepcost {rows[-1]['command']:<40} {'ok' if proc.returncode == 0 else 'FAILED'} "
                  f"{rows[-1]['s']:7.1f} s", flush=True)
            if proc.returncode:
                print("    " + "\n    ".join((proc.stdout + proc.stderr).strip().splitlines()[-15:]))
    return rows


class GpuEnergy:
    """The GPU's total-energy counter (NVML, mJ since the driver loaded) for torch's current device."""

    def __init__(self, device: torch.device):
        self.handle, self.why = None, "not a CUDA device"
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            props = torch.cuda.get_device_properties(device)
            bus = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
            self.handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus)
            self.read = lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 3.6e9  # kWh
            self.read()
        except Exception as err:  # no NVML, or a GPU without the counter (before Volta)
            self.handle, self.why = None, f"{type(err).__name__}: {err}"

    def kwh(self, fn) -> float | None:
        """The GPU energy `fn()` took, or None without a counter."""
        if self.handle is None:
            fn()
            return None
        before = self.read()
        fn()
        return self.read() - before


def peak_memory_gb(device: torch.device) -> float:
    """Peak GPU memory since the last reset, or this process's peak resident memory on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def paper_steps(device: torch.device, prec: str, steps: int, energy: GpuEnergy) -> dict:
    """Training steps of the paper-size base's vocals model at `prec`, as the training loop takes them."""
    cfg = Config()  # the schema's defaults: the paper study's base
    torch.manual_seed(0)
    model = build_separator(separator_specs(cfg)[0]).to(device).train()
    optimizer = recipe.optimiser(model, cfg.train)
    samples = int(cfg.train.chunk_s * cfg.data.sample_rate)
    mixture, reference = to_device(model, torch.randn(cfg.train.batch_size, 2, samples) * 0.1,
                                   torch.randn(cfg.train.batch_size, 1, 2, samples) * 0.1)

    def step() -> None:
        with precision.autocast(device, prec):
            wave, spec = model(mixture)
        loss = recipe.loss_fn(cfg.train.loss, model, wave.float(), spec, reference)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)

    step()  # warm-up: allocations, kernel selection
    reset_peak(device)
    times, kwh = [], []
    for _ in range(steps):
        started = time.perf_counter()
        kwh.append(energy.kwh(step))
        times.append(time.perf_counter() - started)
    return {"precision": prec, "batch": f"{cfg.train.batch_size} x {cfg.train.chunk_s:g} s",
            "step_s": statistics.median(times), "peak_gb": peak_memory_gb(device),
            "gpu_wh_per_step": None if kwh[0] is None else 1000 * statistics.median(kwh)}


def paper_separation(device: torch.device, prec: str, energy: GpuEnergy) -> dict:
    """A 10 s stereo separation with the paper-size base's four models at `prec`."""
    cfg = Config()
    torch.manual_seed(0)
    models = [build_separator(spec).to(device).eval() for spec in separator_specs(cfg)]
    mixture = torch.randn(2, int(SEPARATION_S * cfg.data.sample_rate)) * 0.1
    eval_cfg = dataclasses.replace(cfg.eval, precision=prec)
    separate(models, mixture[:, : cfg.data.sample_rate], eval_cfg, cfg.data.sample_rate)  # warm-up
    reset_peak(device)
    started = time.perf_counter()
    kwh = energy.kwh(lambda: separate(models, mixture, eval_cfg, cfg.data.sample_rate))
    seconds = time.perf_counter() - started
    return {"precision": prec, "s": seconds, "rtf": seconds / SEPARATION_S, "peak_gb": peak_memory_gb(device),
            "gpu_wh": None if kwh is None else 1000 * kwh}


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (f"{props.name}, compute capability {props.major}.{props.minor}, {props.total_memory / 2**30:.0f} GiB, "
                f"CUDA {torch.version.cuda}, torch {torch.__version__}")
    return f"CPU, {os.cpu_count()} cores, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--steps", type=int, default=5, help="measured training steps per precision")
    parser.add_argument("--skip-stages", action="store_true", help="only the paper-size step and separation")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--study", type=Path, help="run the stages in this folder and keep it (its report)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA GPU here; run it on a GPU machine (or --device cpu to check the script)")
        return 2
    load_before = os.getloadavg()
    native = precision.native_bf16(device)
    energy = GpuEnergy(device)
    print(f"gpu_check on {describe(device)}; native bf16: {'yes' if native else 'no'}; "
          f"NVML energy: {'yes' if energy.handle is not None else 'no (' + energy.why + ')'}")
    results: dict = {"device": describe(device), "native_bf16": native}
    if not args.skip_stages:
        print("1. the default study's stages, shortened:")
        results["stages"] = run_stages(args.device, args.study)
    precisions = ["fp32", "bf16"] if native else ["fp32"]
    print(f"2. the paper-size base's training step (one target's model), {args.steps} steps after a warm-up:")
    if not native:
        print("   bf16: skipped, this device has no native bf16")
    results["steps"] = []
    for prec in precisions:
        row = paper_steps(device, prec, args.steps, energy)
        results["steps"].append(row)
        wh = "n/a" if row["gpu_wh_per_step"] is None else f"{row['gpu_wh_per_step']:.3f} Wh"
        print(f"   {prec}: batch {row['batch']}, {row['step_s'] * 1000:.0f} ms a step, peak memory "
              f"{row['peak_gb']:.2f} GiB, GPU energy {wh} a step")
    print(f"3. one {SEPARATION_S:g} s separation with the paper-size base's four models:")
    results["separation"] = []
    for prec in precisions:
        row = paper_separation(device, prec, energy)
        results["separation"].append(row)
        wh = "n/a" if row["gpu_wh"] is None else f"{row['gpu_wh']:.3f} Wh"
        print(f"   {prec}: {row['s']:.2f} s, real-time factor {row['rtf']:.3f}, peak memory {row['peak_gb']:.2f} GiB, "
              f"GPU energy {wh}")
    results["loadavg"] = {"before": load_before, "after": os.getloadavg()}
    print(f"load average {load_before[0]:.2f} before, {results['loadavg']['after'][0]:.2f} after")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    failed = [r["command"] for r in results.get("stages", []) if r["rc"]]
    if failed:
        print(f"gpu_check: {len(failed)} commands failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
