"""`sepcost plan`: every variant with its architecture and parameter count, next to the published count.

Models are built on PyTorch's meta device (`pipeline.specs.count`): shapes only, no memory, no
initialisation, so the paper's 164 M-parameter variant is counted in well under a second.
"""
from __future__ import annotations

import json
import math

from pipeline import reference
from pipeline.config import Config, resolve
from pipeline.names import PARAMS_M
from pipeline.specs import count, separator_specs


def summary(cfg: Config) -> str:
    m = cfg.model
    fft = f"{cfg.stft.n_fft}/{cfg.stft.hop}"
    joint = "joint" if m.joint else f"{len(cfg.targets)} models"
    if m.arch == "umx":
        u = m.umx
        return f"umx hidden={u.hidden} layers={u.layers} {'bi' if u.bidirectional else 'uni'}dir stft={fft} {joint}"
    b = m.bsrnn
    layers = b.time_layer if b.time_layer == b.band_layer else f"{b.time_layer}/{b.band_layer}"
    parts = [f"bsrnn N={b.n} R={b.r} mu={b.mu}", f"stereo={b.stereo}" + (f"({b.tac_activation})" if b.stereo == "tac" else ""),
             f"layers={layers}"]
    if b.attention_heads:
        parts.append(f"attn={b.attention_heads}/{b.attention_dim}")
    if b.heads > 1:
        parts.append(f"heads={b.heads}")
    if b.band_split == "joint" and not m.joint:
        parts.append("bands=joint")
    parts += [f"stft={fft}", joint]
    return " ".join(parts)


def rows(cfg: Config) -> list[dict]:
    """One row per variant, with its published parameter count (`pipeline.reference`)."""
    published, _ = reference.validation(cfg)
    out = []
    for name in cfg.variants:
        vcfg = resolve(cfg, name)
        params = count(vcfg)
        pub = published.get(name, {}).get(PARAMS_M)
        pub = pub if pub is not None and math.isfinite(pub) else None
        diff = None if pub is None else 100.0 * (params / 1e6 - pub) / pub
        out.append({"variant": name, "architecture": summary(vcfg), "models": len(separator_specs(vcfg)),
                    "params": params, "params_published_m": pub, "diff_percent": diff})
    return out


def run(cfg: Config, as_json: bool) -> None:
    table = rows(cfg)
    if as_json:
        print(json.dumps(table, indent=2))
        return
    width = max(len(r["variant"]) for r in table)
    arch_width = max(len(r["architecture"]) for r in table)
    print(f"{'variant':{width}s}  {'architecture':{arch_width}s}  {'params':>13s}  {'published':>9s}  {'diff':>7s}")
    for r in table:
        pub = "-" if r["params_published_m"] is None else f"{r['params_published_m']:.2f} M"
        diff = "-" if r["diff_percent"] is None else f"{r['diff_percent']:+.2f}%"
        print(f"{r['variant']:{width}s}  {r['architecture']:{arch_width}s}  {r['params']:>13,d}  {pub:>9s}  {diff:>7s}")
    if not reference.VALIDATION.exists():
        print(f"(no published counts: {reference.VALIDATION} not found)")
    else:
        print(f"published: {reference.VALIDATION} (params_m), counts of the paper's sizes (configs/paper.yaml)")
