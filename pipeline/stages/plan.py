"""`sepcost plan`: every variant with its architecture and parameter count, next to the published count.

Models are built on PyTorch's meta device (`pipeline.specs.count`): shapes only, no memory, no
initialisation, so the paper's 164 M-parameter variant is counted in well under a second.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from pipeline import paths
from pipeline.config import Config, resolve
from pipeline.specs import count, separator_specs

REFERENCE_CSV = paths.REFERENCE / "paper_validation.csv"


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


def published_counts(path: Path = REFERENCE_CSV) -> dict[str, float | None]:
    """Published parameter counts in millions by variant, None for a blank cell."""
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        return {r["variant"]: float(r["params_m"]) if (r.get("params_m") or "").strip() else None
                for r in csv.DictReader(f)}


def _model_key(cfg: Config) -> str:
    return json.dumps(separator_specs(cfg), sort_keys=True)


def rows(cfg: Config) -> list[dict]:
    """One row per variant. A blank published cell means "the same model as another row": the count
    of a published variant with the same models (large_patience30 -> large), else the base's."""
    published = published_counts()
    resolved = {name: resolve(cfg, name) for name in cfg.variants}
    by_model = {}
    for name, vcfg in resolved.items():
        if published.get(name) is not None:
            by_model.setdefault(_model_key(vcfg), published[name])
    out = []
    for name, vcfg in resolved.items():
        params = count(vcfg)
        pub = published.get(name, None)
        if pub is None and name in published:
            pub = by_model.get(_model_key(vcfg), published.get("base"))
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
    if not REFERENCE_CSV.exists():
        print(f"(no published counts: {REFERENCE_CSV} not found)")
    else:
        print(f"published: {REFERENCE_CSV} (params_m), counts of the paper's sizes (configs/paper.yaml)")
