"""Speed and memory of BSRNN on CPU: the training step against the replication's formulation,
measured side by side in one run, and the separation's real-time factor.

    python benchmarks/model_step.py [--threads 2] [--steps 2] [--rounds 3] [--checkpoint-blocks 4]

Every measurement runs in a fresh subprocess, so that its peak resident memory is its own:
- the training step (forward, t+tf L1 loss, backward, Adam; batch 2 x 3 s stereo, target vocals)
  at the paper's base size (N=64, R=8, mu=4, 2048/512), of the baseline and of the project in
  alternating rounds. The baseline is the replication's formulation of the same model, written out
  below (`loop_separator`): the band split and masker as a ModuleList of per-band GroupNorm and 1x1
  Conv1d layers looped over the bands, each block's time and band passes as nn.GroupNorm on a
  transposed copy, a batch-first BLSTM and a Linear, the band pass through a permuted contiguous
  copy, nothing recomputed in backward; it holds the project model's weights and its output is
  checked against the project's. The project runs as the study does (`checkpoint_blocks` blocks
  recomputed in backward). One more step of each is profiled for the time in the recurrent kernels,
  which bounds what any reorganisation of the rest can gain;
- the project's step at `train.precision: bf16` on the CPU (a recipe of its own: it changes the numerics),
  where the CPU has native bf16;
- the separation of 10 s of stereo (inference mode) and its real-time factor;
- the step at params.yaml's base size, and at 4x its batch: the bound on what training a
  variant's four per-target models as one batched model could gain;
- the band split and masker alone, loop against project, forward + backward.
Targets: step >= 1.3x the baseline at <= 0.6x its peak memory; real-time factor <= 0.25; band
split and masker >= 1.5x. Run it alone on the machine: it prints the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"step_ratio": 1.3, "memory_ratio": 0.6, "rtf": 0.25, "stage_ratio": 1.5}
SAMPLE_RATE = 44100
STEP_BATCH = 2  # items of 3 s stereo in a benchmarked training step


# ----------------------------------------------------------------------------- configurations


def spec_for(size: str, checkpoint_blocks: int) -> dict:
    """The separator spec of a benchmarked size: "paper" (base) or "default" (params.yaml's base)."""
    import dataclasses

    from pipeline import config

    if size == "paper":
        bsrnn = dataclasses.asdict(config.BsrnnConfig())  # the schema's defaults are the paper's
        stft = dataclasses.asdict(config.StftConfig())
    else:
        cfg = config.load(ROOT / "params.yaml")
        bsrnn = dataclasses.asdict(cfg.model.bsrnn)
        stft = {"n_fft": cfg.stft.n_fft, "hop": cfg.stft.hop}
    bsrnn["checkpoint_blocks"] = checkpoint_blocks
    return {"arch": "bsrnn", "targets": ["vocals"], "sample_rate": SAMPLE_RATE, "stft": stft, "bsrnn": bsrnn, "umx": {}}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


# ----------------------------------------------------------------------------- children


def child_step(spec: dict, steps: int, sep=None, bf16: bool = False, batch: int = STEP_BATCH) -> dict:
    """Training steps of `sep` (default: the project's model of `spec`) on `batch` items, fp32 or
    under CPU bf16 autocast; the median time, peak memory and, in one more profiled step, the
    recurrent kernels' time."""
    import torch

    from model import build_separator
    from pipeline.precision import autocast

    torch.manual_seed(0)
    sep = (sep or build_separator(spec)).train()
    opt = torch.optim.Adam(sep.parameters(), lr=1e-3)
    mixture = torch.randn(batch, 2, 3 * SAMPLE_RATE) * 0.1
    reference = torch.randn(batch, 1, 2, 3 * SAMPLE_RATE) * 0.1
    ref_spec = sep.stft(reference)
    def step() -> None:
        with autocast(torch.device("cpu"), "bf16" if bf16 else "fp32"):
            wave, spec_est = sep(mixture)
        loss = (wave - reference).abs().mean() + (spec_est.real - ref_spec.real).abs().mean() \
            + (spec_est.imag - ref_spec.imag).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times, cpu = [], []
    for i in range(steps + 1):  # the first step warms up (allocations, oneDNN primitives)
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        if i:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    rss = peak_rss_gb()
    return {"step_s": statistics.median(times), "step_all_s": times, "cpu_s": statistics.median(cpu),
            "rss_gb": rss, "rnn_s": rnn_seconds(step)}


RNN_OPS = ("mkldnn_rnn", "lstm")  # oneDNN's recurrent kernels and their backward, or the native LSTM


def rnn_seconds(step) -> float:
    """Seconds of one profiled step spent in the recurrent kernels (forward and backward): the part
    no reorganisation of the model's code can make faster."""
    from torch.profiler import profile

    with profile() as prof:
        step()
    return sum(e.self_cpu_time_total for e in prof.key_averages()
               if any(op in e.key.lower() for op in RNN_OPS)) / 1e6


def child_separate(spec: dict, steps: int) -> dict:
    import torch

    from model import build_separator

    torch.manual_seed(0)
    sep = build_separator(spec).eval()
    mixture = torch.randn(1, 2, 10 * SAMPLE_RATE) * 0.1
    times, cpu = [], []
    with torch.inference_mode():
        for i in range(steps + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            sep(mixture)
            if i:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        rss = peak_rss_gb()
        rnn_s = rnn_seconds(lambda: sep(mixture))
    return {"separate_s": statistics.median(times), "separate_all_s": times, "cpu_s": statistics.median(cpu),
            "rss_gb": rss, "rnn_s": rnn_s}


# ----------------------------------------------------------------------------- the loop baseline


def loop_modules(widths: list[int], n: int, mu: int):
    """The Python-loop formulation: one small module per band, looped over in forward."""
    import torch
    from torch import nn

    class LoopBandSplit(nn.Module):
        def __init__(self):
            super().__init__()
            self.widths = widths
            self.layers = nn.ModuleList(
                [nn.Sequential(nn.GroupNorm(1, 2 * w, eps=1e-7), nn.Conv1d(2 * w, n, 1)) for w in widths]
            )

        def forward(self, spec):  # complex (rows, bins, frames) -> (rows, bands, N, frames)
            ri = torch.stack([spec.real, spec.imag], 1)  # (rows, 2, bins, frames)
            out, start = [], 0
            for w, layer in zip(self.widths, self.layers):
                band = ri[:, :, start:start + w].reshape(ri.shape[0], 2 * w, -1)
                out.append(layer(band))
                start += w
            return torch.stack(out, 1)

    class LoopMasker(nn.Module):
        def __init__(self):
            super().__init__()
            self.widths = widths
            self.layers = nn.ModuleList([
                nn.Sequential(nn.GroupNorm(1, n, eps=1e-7), nn.Conv1d(n, mu * n, 1), nn.Tanh(),
                              nn.Conv1d(mu * n, mu * n, 1), nn.Tanh(), nn.Conv1d(mu * n, 4 * w, 1))
                for w in widths
            ])

        def forward(self, x):  # (rows, bands, N, frames) -> complex mask (rows, bins, frames)
            out = []
            for i, (w, layer) in enumerate(zip(self.widths, self.layers)):
                y = layer(x[:, i]).view(x.shape[0], 2, 2, w, -1)  # (rows, glu, re/im, w, frames)
                m = y[:, 0] * torch.sigmoid(y[:, 1])
                out.append(torch.complex(m[:, 0], m[:, 1]))
            return torch.cat(out, 1)

    return LoopBandSplit(), LoopMasker()


def copy_weights(loop_split, loop_masker, split, masker) -> None:
    """Give the loop modules the weights of the project's grouped modules (same parameters)."""
    import torch

    with torch.no_grad():
        band = 0
        for r, (_, w, count) in enumerate(split.runs):
            for j in range(count):
                gn, conv = loop_split.layers[band]
                # project's features are ordered (bin, re/im); the loop's are (re/im, bin)
                perm = torch.arange(2 * w).view(w, 2).t().reshape(-1)
                gn.weight.copy_(split.norm_weight[r][j][perm])
                gn.bias.copy_(split.norm_bias[r][j][perm])
                conv.weight.copy_(split.weight[r][j][perm].t().unsqueeze(-1))
                conv.bias.copy_(split.bias[r][j])
                gn2, c1, _, c2, _, c3 = loop_masker.layers[band]
                gn2.weight.copy_(masker.norm_weight[band])
                gn2.bias.copy_(masker.norm_bias[band])
                c1.weight.copy_(masker.w1[band].t().unsqueeze(-1))
                c1.bias.copy_(masker.b1[band])
                c2.weight.copy_(masker.w2[band].t().unsqueeze(-1))
                c2.bias.copy_(masker.b2[band])
                # project's outputs are ordered (glu, packed, bin, re/im); the loop's (glu, re/im, bin)
                perm3 = torch.arange(4 * w).view(2, w, 2).permute(0, 2, 1).reshape(-1)
                c3.weight.copy_(masker.w3[r][j][:, perm3].t().unsqueeze(-1))
                c3.bias.copy_(masker.b3[r][j][perm3])
                band += 1


def loop_separator(sep, n: int, mu: int):
    """The replication's formulation of the whole model `sep` (mono stereo, one target), with its
    weights: the band split and masker looped per band (`loop_modules`), and each block's time and
    band passes as the replication writes them, on the (batch, bands, frames, N) layout: nn.GroupNorm
    on a transposed copy, a batch-first BLSTM, a Linear and the residual, the band pass through a
    permuted contiguous copy. No block is recomputed in backward."""
    import torch
    from torch import nn

    class LoopSeq(nn.Module):
        def __init__(self, ours):
            super().__init__()
            self.norm = nn.GroupNorm(1, n, eps=ours.eps)
            self.rnn = nn.LSTM(n, 2 * n, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(4 * n, n)
            with torch.no_grad():
                self.norm.weight.copy_(ours.norm_weight)
                self.norm.bias.copy_(ours.norm_bias)
            self.rnn.load_state_dict(ours.rnn.state_dict())
            self.fc.load_state_dict(ours.fc.state_dict())

        def forward(self, x):  # (batch, seq, N)
            h = self.norm(x.transpose(1, 2)).transpose(1, 2)
            h, _ = self.rnn(h)
            return x + self.fc(h)

    class LoopBlock(nn.Module):
        def __init__(self, ours):
            super().__init__()
            self.time, self.band = LoopSeq(ours.time), LoopSeq(ours.band)

        def forward(self, x):  # (batch, bands, frames, N)
            b, k, t, _ = x.shape
            x = self.time(x.reshape(b * k, t, n)).view(b, k, t, n)
            x = x.permute(0, 2, 1, 3).reshape(b * t, k, n)
            return self.band(x).view(b, t, k, n).permute(0, 2, 1, 3)

    class LoopSeparator(nn.Module):
        def __init__(self):
            super().__init__()
            self.stft_module = sep.stft_module
            self.split, self.masker = loop_modules(sep.widths, n, mu)
            copy_weights(self.split, self.masker, sep.band_split, sep.maskers[0])
            self.blocks = nn.ModuleList([LoopBlock(block) for block in sep.blocks])

        def stft(self, x):
            return self.stft_module(x)

        def forward(self, mixture):  # (batch, channels, samples), as BSRNN.forward
            batch, channels, samples = mixture.shape
            spec = self.stft(mixture)
            x = self.split(spec.reshape(batch * channels, *spec.shape[2:])).transpose(2, 3)  # (rows, K, T, N)
            for block in self.blocks:
                x = block(x)
            mask = self.masker(x.transpose(2, 3)).view(spec.shape)
            spec_est = (mask * spec).unsqueeze(1)
            return self.stft_module.inverse(spec_est, samples), spec_est

    return LoopSeparator()


def child_step_loop(spec: dict, steps: int) -> dict:
    """The training step of the replication's formulation (`loop_separator`) of the model of `spec`,
    checkpointing aside; its output is first checked against the project's, same weights."""
    import torch

    from model import build_separator

    torch.manual_seed(0)
    spec = {**spec, "bsrnn": {**spec["bsrnn"], "checkpoint_blocks": 0}}
    sep = build_separator(spec).eval()
    baseline = loop_separator(sep, spec["bsrnn"]["n"], spec["bsrnn"]["mu"])
    with torch.no_grad():
        probe = torch.randn(1, 2, SAMPLE_RATE) * 0.1
        ours, theirs = sep(probe)[0], baseline(probe)[0]
        rel_err = ((ours - theirs).abs().max() / ours.abs().max()).item()
    del sep
    return {**child_step(spec, steps, baseline), "rel_err": rel_err}


def child_step_bf16(spec: dict, steps: int) -> dict:
    """The project's training step at `train.precision: bf16` on the CPU (a recipe of its own: it
    changes the numerics)."""
    return child_step(spec, steps, bf16=True)


def child_step_batch4(spec: dict, steps: int) -> dict:
    """The step at 4x the batch: no batched (stacked) training of a variant's four per-target
    models can take less than one model's step on their four batches together."""
    return child_step(spec, steps, batch=4 * STEP_BATCH)


def child_stages(spec: dict, steps: int) -> dict:
    """Band split and masker, loop vs project, forward + backward, same weights, same inputs."""
    import torch

    from model import build_separator

    torch.manual_seed(0)
    sep = build_separator(spec)
    split, masker = sep.band_split, sep.maskers[0]
    n, mu = spec["bsrnn"]["n"], spec["bsrnn"]["mu"]
    loop_split, loop_masker = loop_modules(sep.widths, n, mu)
    copy_weights(loop_split, loop_masker, split, masker)

    rows = 4  # batch 2 x 2 channels, channels as batch
    spec_in = sep.stft(torch.randn(rows, 3 * SAMPLE_RATE) * 0.1)  # (rows, bins, frames)
    frames = spec_in.shape[-1]
    k = len(sep.widths)
    feats = torch.randn(k, rows, frames, n)

    def project_split():
        return split(torch.view_as_real(spec_in).unsqueeze(1))  # (bands, rows, frames, N)

    def project_masker(x):
        return torch.view_as_complex(masker(x)).squeeze(1)  # (rows, bins, frames)

    # agreement of the two formulations
    with torch.no_grad():
        a = project_split().permute(1, 0, 3, 2)
        b = loop_split(spec_in)
        split_err = ((a - b).abs().max() / b.abs().max()).item()
        a = project_masker(feats)
        b = loop_masker(feats.permute(1, 0, 3, 2))
        mask_err = ((a - b).abs().max() / b.abs().max()).item()

    def timed(fn):  # the minimum: the run least disturbed by other processes
        out = []
        for i in range(steps + 2):
            t0 = time.perf_counter()
            fn()
            if i > 1:
                out.append(time.perf_counter() - t0)
        return min(out)

    feats_p = feats.clone().requires_grad_()
    feats_l = feats.permute(1, 0, 3, 2).contiguous().requires_grad_()
    grad_split = torch.randn(k, rows, frames, n)
    grad_mask = torch.randn_like(spec_in)

    def run_split_project():
        project_split().backward(grad_split)

    def run_split_loop():
        loop_split(spec_in).backward(grad_split.permute(1, 0, 3, 2))

    def run_masker_project():
        m = project_masker(feats_p)
        (m.real * grad_mask.real + m.imag * grad_mask.imag).sum().backward()

    def run_masker_loop():
        m = loop_masker(feats_l)
        (m.real * grad_mask.real + m.imag * grad_mask.imag).sum().backward()

    result = {"split_rel_err": split_err, "mask_rel_err": mask_err}
    for name, project, loop in (("band_split", run_split_project, run_split_loop),
                                ("masker", run_masker_project, run_masker_loop)):
        # interleave so that a change of machine load hits both alike
        tp, tl = [], []
        for _ in range(3):
            tl.append(timed(loop))
            tp.append(timed(project))
        result[name] = {"loop_s": min(tl), "project_s": min(tp)}
    return result


CHILDREN = {"step": child_step, "step_loop": child_step_loop, "step_bf16": child_step_bf16,
            "step_batch4": child_step_batch4, "separate": child_separate, "stages": child_stages}


# ----------------------------------------------------------------------------- parent


def run_child(kind: str, size: str, args) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, __file__, "--child", kind, "--size", size, "--threads", str(args.threads),
           "--steps", str(args.steps), "--checkpoint-blocks", str(args.checkpoint_blocks)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"benchmark child {kind}/{size} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="measured steps per process (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of baseline and project")
    parser.add_argument("--checkpoint-blocks", type=int, default=4,
                        help="the project's blocks recomputed in backward at paper size (0 = none, 8 = all)")
    parser.add_argument("--skip-extras", action="store_true", help="only the step comparison")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--size", default="paper", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        blocks = args.checkpoint_blocks if args.size == "paper" else 0
        print(json.dumps(CHILDREN[args.child](spec_for(args.size, blocks), args.steps)))
        return 0

    load_before = os.getloadavg()
    rounds: list[dict] = []
    for _ in range(args.rounds):  # alternating, so that a change of load hits both alike
        rounds.append({"baseline": run_child("step_loop", "paper", args), "project": run_child("step", "paper", args)})
    results: dict = {"threads": args.threads, "checkpoint_blocks": args.checkpoint_blocks, "rounds": rounds}
    if not args.skip_extras:
        import torch

        from pipeline.precision import native_bf16

        if native_bf16(torch.device("cpu")):
            results["bf16"] = run_child("step_bf16", "paper", args)
        else:
            print("bf16 autocast: skipped, this CPU has no native bf16 (AVX512-BF16 or AMX): emulated, it takes "
                  "many times the fp32 step", file=sys.stderr)
        results["separate"] = run_child("separate", "paper", args)
        results["default"] = run_child("step", "default", args)
        results["default_batch4"] = run_child("step_batch4", "default", args)
        results["stages"] = run_child("stages", "paper", args)
    results["loadavg_before"], results["loadavg_after"] = load_before, os.getloadavg()
    results["targets"] = TARGETS
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    _print(results, args)
    return 0


def _print(results: dict, args) -> None:
    load_before, load_after = results["loadavg_before"], results["loadavg_after"]
    rounds = results["rounds"]
    best = {who: min((r[who] for r in rounds), key=lambda x: x["step_s"]) for who in ("baseline", "project")}
    print(f"BSRNN training step at paper base size (N=64, R=8, vocals, batch 2 x 3 s stereo, t+tf L1, Adam), "
          f"CPU, {args.threads} threads; best of {args.rounds} alternating processes x median of {args.steps} "
          f"steps; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'':44s} {'step':>8s} {'peak RSS':>9s} {'recurrent':>10s} {'rest':>7s}")
    rows = [("baseline: the replication's formulation", best["baseline"]),
            (f"project (checkpoint_blocks {args.checkpoint_blocks})", best["project"])]
    if "bf16" in results:
        rows.append(("project, train.precision bf16", results["bf16"]))
    for label, r in rows:
        print(f"{label:44s} {r['step_s']:7.2f}s {r['rss_gb']:8.2f}G {r['rnn_s']:9.2f}s {r['step_s'] - r['rnn_s']:6.2f}s")
    b, p = best["baseline"], best["project"]
    speed, memory = b["step_s"] / p["step_s"], p["rss_gb"] / b["rss_gb"]
    print(f"  outputs of the two formulations agree to {b['rel_err']:.1e} relative")
    print(f"  step ratio {speed:.2f}x (target >= {TARGETS['step_ratio']}x) {verdict(speed >= TARGETS['step_ratio'])}; "
          f"peak memory {memory:.2f}x (target <= {TARGETS['memory_ratio']}x) {verdict(memory <= TARGETS['memory_ratio'])}")
    print(f"  recurrent kernels: {b['rnn_s'] / b['step_s']:.0%} of the baseline's step, {p['rnn_s'] / p['step_s']:.0%} "
          f"of the project's; with everything else free the project's step would be {p['rnn_s']:.2f} s "
          f"({b['step_s'] / p['rnn_s']:.2f}x the baseline)")
    if "bf16" in results:
        r = results["bf16"]
        print(f"  bf16 autocast: {b['step_s'] / r['step_s']:.2f}x the baseline at {r['rss_gb'] / b['rss_gb']:.2f}x its memory")
    if "separate" in results:
        se = results["separate"]
        rtf = se["separate_s"] / 10.0
        print(f"separation of 10 s stereo at paper base size: {se['separate_s']:.2f} s, real-time factor {rtf:.3f} "
              f"(target <= {TARGETS['rtf']}) {verdict(rtf <= TARGETS['rtf'])}; recurrent kernels {se['rnn_s']:.2f} s "
              f"(real-time factor {se['rnn_s'] / 10.0:.3f} with everything else free)")
    if "default" in results:
        r = results["default"]
        print(f"params.yaml's base size: a training step {r['step_s'] * 1e3:.0f} ms, recurrent kernels "
              f"{r['rnn_s'] * 1e3:.0f} ms, peak RSS {r['rss_gb']:.2f} GB")
        wide = results["default_batch4"]["step_s"] / r["step_s"]
        print(f"  at 4x the batch it takes {wide:.2f}x as long: training a variant's 4 per-target models as one "
              f"batched model could make their steps at most {4 / wide:.2f}x faster")
    if "stages" in results:
        s = results["stages"]
        print("stages at paper base size, forward + backward (best of runs), loop baseline / project "
              f"(outputs agree to {max(s['split_rel_err'], s['mask_rel_err']):.1e} relative):")
        for name in ("band_split", "masker"):
            r = s[name]
            ratio = r["loop_s"] / r["project_s"]
            print(f"  {name:10s} loop {r['loop_s'] * 1e3:7.1f} ms  project {r['project_s'] * 1e3:7.1f} ms  "
                  f"ratio {ratio:.2f}x   target >= {TARGETS['stage_ratio']}x   {verdict(ratio >= TARGETS['stage_ratio'])}")
    if max(load_before[0], load_after[0]) > args.threads:
        print(f"note: the load average exceeded {args.threads}: other processes shared the CPU, timings are pessimistic")


if __name__ == "__main__":
    sys.exit(main())
