"""Each variant against base, as the paper compares them: the effects (a variant's difference from
base on validation and test uSDR, judged against seed noise, beside the paper's own difference and
the kWh ratios) and the recipes (what each variant changes, in the paper's words and in the keys
of its resolved recipe). `variant_effects` is what the effects table, the `shape` figure and the
stage's summary read. Imports `pipeline.names` and the report's inputs, effects, results and table
model.
"""
from __future__ import annotations

import math

from pipeline.names import AVG, KWH_CODECARBON, KWH_GREEN_ALGORITHMS, score_key
from pipeline.report import effects
from pipeline.report.inputs import EVALUATION, Study
from pipeline.report.results import scale_note, status
from pipeline.report.tables import NOT_RUN, Col, Table, short_target

FAMILIES = {"bsrnn": "BSRNN", "umx": "Open-Unmix"}
OWN_RECIPE = {"umx": "Open-Unmix (its own recipe)"}  # a variant the paper's table has no row for
NONE = "—"


def _paper_column(target: str) -> str:
    return "avg_usdr" if target == AVG else f"{target}_usdr"


def variant_effects(study: Study) -> list[dict]:
    """One row per variant but base (params order): its differences from base, their intervals and
    verdicts, the paper's differences and the kWh ratios; every number plain, NaN where missing."""
    base = study.base
    rows = []
    pub_base = study.published.get(base)
    for v in study.variants:
        if v == base:
            continue
        pub = study.published.get(v)
        row = {"variant": v, "status": status(study, v), "arch": study.arch.get(v, "?")}
        for t in (*study.targets, AVG):
            key = score_key("valid_usdr", t)
            d = effects.difference(study.values(v, key), study.values(base, key))
            verdict = d.verdict if study.ran(v) else NOT_RUN
            row.update({f"delta_{t}": d.diff, f"verdict_{t}": verdict,
                        f"paper_delta_{t}": effects.paper_difference(pub, pub_base, _paper_column(t))})
            row[f"sign_{t}"] = effects.sign_agrees(d.diff, row[f"paper_delta_{t}"])
            if t == AVG:
                row.update(n=d.n, n_base=d.n_base, low=d.low, high=d.high, method=d.method, verdict=verdict)
        d = effects.difference(study.values(v, score_key("usdr"), EVALUATION),
                               study.values(base, score_key("usdr"), EVALUATION))
        row.update(test_n=d.n, test_delta=d.diff, test_low=d.low, test_high=d.high, test_method=d.method,
                   test_verdict=d.verdict if study.metrics(v, EVALUATION) else NOT_RUN)
        for key, ours in ((KWH_CODECARBON, "ratio_cc"), (KWH_GREEN_ALGORITHMS, "ratio_ga")):
            row[ours] = effects.ratio(study.mean(v, key), study.mean(base, key))
        for column, theirs in (("kwh_codecarbon", "paper_ratio_cc"), ("kwh_green_algorithms", "paper_ratio_ga")):
            row[theirs] = effects.ratio((pub or {}).get(column), (pub_base or {}).get(column))
        rows.append(row)
    return rows


def effects_summary(rows: list[dict]) -> dict:
    """How many variants differ from base beyond seed noise on validation uSDR avg, and how many
    agree in sign with the paper (of those the paper gives a non-zero difference for)."""
    counts = {verdict: sum(r["verdict"] == verdict for r in rows) for verdict in effects.VERDICTS}
    signs = [r["sign_avg"] for r in rows if r["sign_avg"] in ("yes", "no")]
    return {**counts, "variants": len(rows), "run": sum(r["verdict"] != NOT_RUN for r in rows),
            "sign_agrees": signs.count("yes"), "sign_compared": len(signs)}


def effects_table(study: Study, rows: list[dict] | None = None) -> Table:
    """Per variant but base: Δ validation uSDR from base (means over seeds), the avg's 95 % interval
    and verdict, the paper's Δ, whether the signs agree, the kWh ratios and the test uSDR avg's Δ."""
    rows = variant_effects(study) if rows is None else rows
    ts = (*study.targets, AVG)
    delta, paper, ratio = "Δ validation uSDR vs base (dB)", "Paper's Δ vs its base (dB)", "kWh ratio to base"
    cols = [Col("variant", "variant", long="variant"), Col("n", "n", kind="int", long="seeds (n)")]
    cols += [Col(f"delta_{t}", short_target(t), delta, "delta", f"Δ valid uSDR {t} (dB)") for t in ts]
    cols += [Col("low", "low", "95 % interval (avg)", "delta", "95 % interval low (dB)"),
             Col("high", "high", "95 % interval (avg)", "delta", "95 % interval high (dB)"),
             Col("method", "method", "95 % interval (avg)", long="interval method"),
             Col("verdict", "verdict", "95 % interval (avg)", long="verdict")]
    cols += [Col(f"paper_delta_{t}", short_target(t), paper, "delta", f"paper Δ {t} (dB)") for t in ts]
    cols += [Col("sign_avg", "sign agrees", paper, long="sign agrees (avg)"),
             Col("ratio_cc", "ours CC", ratio, "sig", "kWh ratio CodeCarbon", 2),
             Col("ratio_ga", "ours GA", ratio, "sig", "kWh ratio Green Algorithms", 2),
             Col("paper_ratio_cc", "paper CC", ratio, "sig", "paper kWh ratio CodeCarbon", 2),
             Col("test_delta", "Δ", "Test uSDR avg", "delta", "Δ test uSDR avg (dB)"),
             Col("test_verdict", "verdict", "Test uSDR avg", long="test verdict")]
    extra = ["status", "n_base", *(f"verdict_{t}" for t in study.targets), *(f"sign_{t}" for t in study.targets),
             "paper_ratio_ga", "test_n", "test_low", "test_high", "test_method"]
    n_base = len(study.values(study.base, score_key("valid_usdr")))
    caption = (f"Each variant's effect: the mean of its validation uSDR over its seeds minus base's (base: {n_base} "
               f"run{'s' if n_base != 1 else ''}), beside the paper's difference from its base (its published "
               "rows), whether the signs of the averages agree, and the kWh ratio to base, ours (means per run) "
               f"and the paper's; the last columns are the same difference on the test set. {effects.INTERVALS_TEXT}; "
               "a verdict is better or worse when the interval excludes 0, within seed noise when it contains it.")
    note = scale_note(study)
    return Table("effects", caption + (f" {note}" if note else ""), cols, rows, extra)


def recipes_table(study: Study) -> Table:
    """Per variant, its change in plain words: the paper's description, and the keys where its
    resolved recipe differs from base's."""
    cols = [Col("variant", "variant", long="variant"), Col("family", "family", long="model family"),
            Col("paper", "the paper's change", long="the paper's change"),
            Col("changes", "recipe keys changed from base", long="recipe keys changed from base")]
    rows = []
    for v in study.variants:
        arch = study.arch.get(v, "?")
        pub = study.published.get(v) or {}
        described = str(pub.get("description") or "").strip()
        changes = study.changes.get(v, ())
        rows.append({"variant": v, "family": FAMILIES.get(arch, arch),
                     "paper": described or OWN_RECIPE.get(arch, "not in the paper's table"),
                     "changes": "; ".join(changes) if changes else NONE})
    caption = (f"What each variant changes: the paper's description of its row, and every key of its resolved "
               f"recipe (stft, model, train, eval) that differs from {study.base}'s, as base's value -> the "
               "variant's. A fair comparison changes only what the paper declares.")
    return Table("recipes", caption, cols, rows, wide=False)


def agreement_text(rows: list[dict]) -> str:
    """One sentence: whether the copy reproduces the paper's trade-offs, by sign and cost."""
    s = effects_summary(rows)
    if not s["sign_compared"]:
        return "No variant has both its own difference from base and a non-zero published one to compare."
    cheaper = [r for r in rows if math.isfinite(r["ratio_cc"]) and math.isfinite(r["paper_ratio_cc"])]
    same_side = sum((r["ratio_cc"] > 1) == (r["paper_ratio_cc"] > 1) for r in cheaper)
    text = (f"{s['sign_agrees']} of {s['sign_compared']} variants move validation uSDR the way the paper's do "
            f"(sign of Δ avg)")
    if cheaper:
        text += (f"; {same_side} of {len(cheaper)} fall on the paper's side of base's energy (kWh CodeCarbon ratio "
                 "above or below 1)")
    return text + "."


def study_summary(study: Study, rows: list[dict], ledger: dict, learned: int) -> dict:
    """The study in a handful of numbers (reports/summary.json, DVC's metrics of the study, so
    that `dvc exp show` compares whole studies): base's validation uSDR avg over its seeds, the
    variant furthest above it and by how much, the verdict counts, the sign agreement with the
    paper, the whole study's kWh by both methods and the learning check."""
    base = effects.summarize(study.values(study.base, score_key("valid_usdr")))
    ran = [r for r in rows if r["verdict"] != NOT_RUN and math.isfinite(r["delta_avg"])]
    best = max(ran, key=lambda r: r["delta_avg"], default=None)
    counts = effects_summary(rows)
    return {
        "base_valid_usdr_avg": base.mean, "base_valid_usdr_avg_std": base.std, "base_seeds": base.n,
        "base_test_usdr_avg": effects.summarize(study.values(study.base, score_key("usdr"), EVALUATION)).mean,
        "best_variant": best["variant"] if best else "",
        "best_delta_valid_usdr_avg": best["delta_avg"] if best else math.nan,
        "best_verdict": best["verdict"] if best else "",
        "variants_run": counts["run"], "better": counts[effects.BETTER], "worse": counts[effects.WORSE],
        "within_noise": counts[effects.NOISE], "sign_agrees": counts["sign_agrees"],
        "sign_compared": counts["sign_compared"], "learning_check_pass": learned,
        KWH_CODECARBON: ledger["kwh_codecarbon"], KWH_GREEN_ALGORITHMS: ledger["kwh_green_algorithms"],
    }
