"""Each variant against base, as the paper compares them: the effects (a variant's difference from
base on validation and test uSDR, judged against seed noise, beside the paper's own difference and
the kWh ratios), the recipes (what each variant changes, in the paper's words and in the keys of
its resolved recipe), the stopping rules (whether the rows that change it can act at this size)
and the study's resolution (base's seed spread, the smallest difference it can call, the oracle's
headroom reached). `variant_effects` is what the effects table, the `shape` figure and the stage's
summary read. Imports `pipeline.names` and the report's inputs, effects, results and table
model.
"""
from __future__ import annotations

import math

from pipeline.names import AVG, KWH_CODECARBON, KWH_GREEN_ALGORITHMS, REFERENCE_ROWS, score_key
from pipeline.report import effects
from pipeline.report.inputs import EVALUATION, Study, num
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


def stopping_table(study: Study) -> Table:
    """Base's stopping rule and that of every row whose declared change it is: whether it can end a
    training before the schedule's last epoch at this size, and how many runs it ended early."""
    cols = [Col("variant", "variant", long="variant"), Col("monitor", "monitors", long="monitored figure"),
            Col("patience", "patience", kind="int", long="patience (epochs)"),
            Col("max_epochs", "epochs", kind="int", long="epochs of the schedule"),
            Col("can_act", "can stop early", long="can stop before the last epoch"),
            Col("stopped", "runs stopped early", long="runs stopped early"),
            Col("best_epoch", "best epoch", kind="mean", long="best epoch (mean over runs)")]
    rows = []
    for v, rule in study.stopping.items():
        epochs = study.values(v, "epochs")
        rows.append({"variant": v, "monitor": f"validation {'uSDR' if rule.monitor == 'usdr' else 'loss'}",
                     "patience": rule.patience, "max_epochs": rule.max_epochs,
                     "can_act": "yes" if rule.can_act else "no",
                     "stopped": f"{sum(e < rule.max_epochs for e in epochs)} of {len(epochs)}" if epochs else NOT_RUN,
                     "best_epoch": study.mean(v, "best_epoch")})
    caption = ("The stopping rule of base and of each row whose declared change it is (the paper's monitor_loss, "
               "patience and Open-Unmix rows): a rule can end a training before its last epoch when patience + 1 < "
               "epochs, each target's model stopping after patience epochs without a better validation figure; "
               "every model keeps the weights of its best epoch.")
    base = study.stopping.get(study.base)
    if base and not base.can_act:
        caption += (f" Base's rule cannot act at this size, so every other row trains all {base.max_epochs} epochs: "
                    "a difference can come from the stopping rule only in the rows that change it.")
    return Table("stopping", caption, cols, rows, wide=False)


def resolution(study: Study) -> dict:
    """What the study can tell apart: base's seed spread (standard deviation of validation uSDR over
    its seeds, per target and avg), the smallest difference from base a variant of the usual number
    of seeds can be called by (on the avg, as the verdicts are), and the share of the oracle IRM's
    headroom over the mixture (test uSDR) that base and the best variant reached."""
    ts = (*study.targets, AVG)
    spread = {t: effects.summarize(study.values(study.base, score_key("valid_usdr", t))) for t in ts}
    seeds = [len(study.runs.get(v, ())) for v in study.variants if v != study.base]
    runs = max(set(seeds), key=seeds.count) if seeds else 1
    mixture, oracle = (study.eval.get(r, {}) for r in REFERENCE_ROWS)

    def share(variant: str, t: str) -> float:
        key = score_key("usdr", t)
        low, high = num(mixture.get(key)), num(oracle.get(key))
        ours = study.mean(variant, key, EVALUATION)
        return 100 * (ours - low) / (high - low) if high > low else math.nan

    tested = {v: m for v in study.variants if math.isfinite(m := study.mean(v, score_key("usdr"), EVALUATION))}
    best = max(tested, key=tested.get, default=None)
    out = {f"base_valid_usdr_std_{t}": spread[t].std for t in ts}
    out.update({"base_seeds": spread[AVG].n, "variant_seeds": runs,
                "smallest_call_db": effects.smallest_call(spread[AVG], runs),
                **{f"oracle_share_base_{t}_pct": share(study.base, t) for t in ts},
                "best_tested": best or "", "oracle_share_best_avg_pct": share(best, AVG) if best else math.nan})
    return out


def resolution_text(study: Study, res: dict) -> str:
    """The resolution in sentences, for the report's header ("n/a" for a figure the runs cannot give)."""
    ts = study.targets if len(study.targets) == 1 else (*study.targets, AVG)

    def fmt(value: float, spec: str) -> str:
        return format(value, spec) if math.isfinite(value) else "n/a"

    spread = ", ".join(f"{t} {fmt(res[f'base_valid_usdr_std_{t}'], '.2f')}" for t in ts)
    headroom = ", ".join(f"{t} {fmt(res[f'oracle_share_base_{t}_pct'], '.0f')} %" for t in ts)
    n = res["variant_seeds"]
    text = (f"Base's seed spread (standard deviation of validation uSDR over its {res['base_seeds']} seeds, dB): "
            f"{spread}. The smallest difference from base a variant of {n} seed{'s' if n != 1 else ''} can be called "
            f"better or worse by: {fmt(res['smallest_call_db'], '.2f')} dB (validation uSDR avg, 95 %). Share of the "
            f"oracle IRM's headroom over the mixture reached on test uSDR: base {headroom}")
    if res["best_tested"]:
        text += f"; the best on average, {res['best_tested']}, {fmt(res['oracle_share_best_avg_pct'], '.0f')} %"
    text += "."
    if not study.paper_scale:
        text += (" At this size the verdicts describe this pilot only: they are not predictions of the effects of "
                 "the paper's changes at the paper's scale.")
    return text


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


def study_summary(study: Study, rows: list[dict], ledger: dict, learned: int, res: dict) -> dict:
    """The study in a handful of numbers (reports/summary.json, DVC's metrics of the study, so
    that `dvc exp show` compares whole studies): base's validation uSDR avg over its seeds, the
    variant furthest above it and by how much, the verdict counts, the sign agreement with the
    paper, the whole study's kWh by both methods, the learning check and the study's `resolution`
    (the smallest difference it can call, the share of the oracle's headroom reached)."""
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
        **{k: res[k] for k in ("smallest_call_db", "oracle_share_base_avg_pct", "oracle_share_best_avg_pct")},
    }
