"""The study's result tables: the study in the paper's layout (a variant's figures are means over its
seeds), the test set against published systems, the learning check and each run's forecast against
what it measured. Each variant's effect against base is `comparison`'s.
Imports `pipeline.names` and the report's inputs, effects, ledger and table model.
"""
from __future__ import annotations

import hashlib
import json
import math

from pipeline.names import (
    AVG,
    CO2,
    DURATION,
    EVAL,
    FORECAST,
    KWH_CODECARBON,
    KWH_GREEN_ALGORITHMS,
    LR_EFFECTIVE,
    METHODS,
    PARAMS_M,
    REFERENCE_ROWS,
    SEPARATION_RTF,
    STREAMING,
    STREAMING_LATENCY_MS,
    STREAMING_RTF_MAX,
    TIME_SHARE,
    forecast_error_key,
    forecast_within_key,
    separation_kwh_key,
    kwh_key,
    score_key,
)
from pipeline.report.effects import summarize
from pipeline.report.inputs import EVALUATION, Study, finite, mean, num
from pipeline.report.ledger import KG_CO2E, KWH_CC, KWH_GA
from pipeline.report.tables import NOT_RUN, REFERENCE_LABELS, Col, Table, short_target

# Our rows in the test-set comparison (those of them the study has); all variants if it has none.
TEST_COMPARISON = ("base", "large", "large_patience30", "optimized_no_tac", "optimized_tac", "umx")
LEARNING_MARGIN_DB = 1.0  # what a variant must beat the trivial estimates by, on every target


def scale_note(study: Study) -> str:
    """Why the study is compared with the paper by its relative effects (empty at the paper's scale)."""
    if study.paper_scale:
        return ""
    why = f" ({study.scale_reason})" if study.scale_reason else ""
    return (f"Not at the paper's scale{why}: the paper's absolute figures come from its data and model sizes, so this "
            "study is compared with the paper by its relative effects (each variant's difference from base and its "
            "kWh ratio to base), not by its absolute figures.")


def _eval_cost(metrics: list[dict]) -> dict:
    """Mean evaluation energy and time per run, and how many test tracks it scored."""
    def m(key: str) -> float:
        return mean(r.get(key) for r in metrics)

    return {"eval_kwh_codecarbon": m(EVAL + KWH_CODECARBON),
            "eval_kwh_green_algorithms": m(EVAL + KWH_GREEN_ALGORITHMS),
            "eval_kg_co2e": m(EVAL + CO2), "eval_duration_s": m(EVAL + DURATION), "test_tracks": m("tracks")}


def _test_scores(metrics: list[dict], targets: tuple[str, ...]) -> dict:
    """Test uSDR and cSDR per target and on average, means over the runs."""
    return {f"test_{score}_{t}": mean(r.get(score_key(score, t)) for r in metrics) for score in ("usdr", "csdr")
            for t in (*targets, AVG)}


def status(study: Study, variant: str) -> str:
    runs = study.runs.get(variant, ())
    trained, evaluated = len(study.trained(variant)), len(study.metrics(variant, EVALUATION))
    if trained and evaluated:
        text = "ok"
    elif trained:
        text = "not evaluated"
    elif evaluated:
        text = "evaluated only"
    else:
        return NOT_RUN
    done = max(trained, evaluated)
    return text if done >= len(runs) else f"{text} ({done} of {len(runs)} seeds)"


def _ids(metrics: list[dict]) -> str:
    return " ".join(dict.fromkeys(str(m["mlflow_run_id"]) for m in metrics if m.get("mlflow_run_id")))


def _methods_text(methods) -> str:
    if not isinstance(methods, dict):
        return ""
    parts = [f"{k}={methods[k]}" for k in ("codecarbon", "cpu", "gpu", "ram", "tracking_mode") if k in methods]
    return " ".join(parts)


def study_table(study: Study) -> Table:
    """The paper's layout: per variant (params order, means over its seeds) then the reference rows;
    ours - published only at the paper's scale."""
    ts = study.targets
    cols = [Col("variant", "variant", long="variant"), Col("status", "status", long="status"),
            Col("seeds", "seeds", kind="int", long="seeds (n)")]
    for key, group in (("valid_usdr", "Validation uSDR (dB)"), ("test_usdr", "Test uSDR (dB)"),
                       ("test_csdr", "Test cSDR (dB)")):
        label = group.split(" (")[0]
        cols += [Col(f"{key}_{t}", short_target(t), group, "sdr", f"{label} {t}") for t in (*ts, AVG)]
        if key == "valid_usdr":
            cols.append(Col("valid_usdr_avg_std", "± std", group, "sdr", "Validation avg std over seeds"))
    cols += [
        Col(PARAMS_M, "params (M)", "Cost (mean per run)", "sig", "params (M)", 1),
        Col("epochs", "epochs", "Cost (mean per run)", "mean", "epochs"),
        Col("lr", "lr", "Cost (mean per run)", "g3", "effective learning rate"),
        Col("train_duration_s", "time (h:m:s)", "Cost (mean per run)", "duration", "training time (h:m:s)"),
        Col(KWH_CC, "kWh CC", "Cost (mean per run)", "sig", "kWh CodeCarbon"),
        Col(KWH_GA, "kWh GA", "Cost (mean per run)", "sig", "kWh Green Algorithms"),
        Col(KG_CO2E, "kg CO2e", "Cost (mean per run)", "sig", "kg CO2e"),
        Col("paper_valid_usdr_avg", "val. uSDR", "Published", "sdr", "published valid uSDR avg"),
        Col("paper_params_m", "params (M)", "Published", "sig", "published params (M)", 1),
        Col("paper_kwh_codecarbon", "kWh CC", "Published", "sig", "published kWh CodeCarbon"),
        Col("paper_kwh_green_algorithms", "kWh GA", "Published", "sig", "published kWh Green Algorithms"),
    ]
    absolute = (("valid_usdr_avg", "avg_usdr", "val. uSDR", "sdr", 0), (PARAMS_M, PARAMS_M, "params (M)", "sig", 1),
                (KWH_CC, "kwh_codecarbon", "kWh CC", "sig", 0), (KWH_GA, "kwh_green_algorithms", "kWh GA", "sig", 0))
    if study.paper_scale:
        cols += [Col(f"diff_{ours}", header, "Ours - published", kind, f"diff {header}", decimals)
                 for ours, _, header, kind, decimals in absolute]
    rows = []
    for v in study.variants:
        train, evals = study.metrics(v), study.metrics(v, EVALUATION)
        row = {"variant": v, "status": status(study, v), "seeds": len(train), "runs": " ".join(study.runs.get(v, ()))}
        row.update({f"valid_usdr_{t}": study.mean(v, score_key("valid_usdr", t)) for t in (*ts, AVG)})
        row["valid_usdr_avg_std"] = summarize(study.values(v, score_key("valid_usdr"))).std
        row.update(_test_scores(evals, ts))
        row.update({
            PARAMS_M: study.mean(v, PARAMS_M), "epochs": study.mean(v, "epochs"), "lr": study.mean(v, LR_EFFECTIVE),
            "train_duration_s": study.mean(v, DURATION), KWH_CC: study.mean(v, KWH_CODECARBON),
            KWH_GA: study.mean(v, KWH_GREEN_ALGORITHMS), KG_CO2E: study.mean(v, CO2),
            "evaluated": len(evals), **_eval_cost(evals),
            "energy_methods": "; ".join(dict.fromkeys(text for m in train
                                                       if (text := _methods_text(m.get("energy_methods"))))),
            "mlflow_run_id": _ids(train + evals),
        })
        pub = study.published.get(v)
        if pub:
            row["description"] = pub.get("description", "")
            for ours, theirs, *_ in absolute:
                row[f"paper_{ours}"] = num(pub.get(theirs))
                if study.paper_scale:
                    row[f"diff_{ours}"] = row[ours] - row[f"paper_{ours}"]  # NaN when either is missing
        rows.append(row)
    for b in REFERENCE_ROWS:
        ev = study.eval.get(b)
        row = {"variant": b, "status": "reference" if ev else NOT_RUN, "description": REFERENCE_LABELS[b],
               "_rule_before": b == REFERENCE_ROWS[0], **_test_scores([ev] if ev else [], ts)}
        if ev:
            row.update(_eval_cost([ev]), mlflow_run_id=ev.get("mlflow_run_id", ""))
        rows.append(row)
    caption = ("Variants of the study (params order) and the reference rows: validation and test uSDR, test cSDR "
               "(dB), parameters, training time and training energy by both methods, each the mean over the "
               "variant's seeds (± the standard deviation of the average over seeds), next to the replication's "
               "published figures")
    caption += " and the difference (ours - published)." if study.paper_scale else f". {scale_note(study)}"
    caption += protocol_note(study)
    extra = ["description", "runs", "evaluated", "test_tracks", "eval_duration_s", "eval_kwh_codecarbon",
             "eval_kwh_green_algorithms", "eval_kg_co2e", "energy_methods", "mlflow_run_id"]
    return Table("study", caption, cols, rows, extra)


def learning_table(study: Study) -> Table:
    """The learning check: per trained variant and target, its mean best validation uSDR over seeds
    minus the better of the two trivial estimates, silence (0 dB) and the mixture itself (the mean of
    `mixture_valid_usdr_*`, the same for every seed)."""
    ts = study.targets
    group = "Margin over max(silence, mixture) (dB)"
    cols = [Col("variant", "variant", long="variant"), Col("n", "n", kind="int", long="seeds (n)")]
    cols += [Col(f"margin_{t}", short_target(t), group, "sdr", f"margin {t} (dB)") for t in ts]
    cols += [Col("min_margin", "min", group, "sdr", "smallest margin (dB)"),
             Col("learned", f">= {LEARNING_MARGIN_DB:g} dB", long=f"every target >= {LEARNING_MARGIN_DB:g} dB")]
    mixture = {t: "mixture_" + score_key("valid_usdr", t) for t in ts}
    rows = []
    for v in study.variants:
        # runs written before the mixture's score was recorded are left out
        runs = [m for m in study.metrics(v) if all(finite(m.get(mixture[t])) for t in ts)]
        if not runs:
            continue
        row = {"variant": v, "n": len(runs)}
        for t in ts:
            row[mixture[t]] = mean(m[mixture[t]] for m in runs)
            row[f"margin_{t}"] = mean(m.get(score_key("valid_usdr", t)) for m in runs) - max(0.0, row[mixture[t]])
        row["min_margin"] = min(row[f"margin_{t}"] for t in ts)
        row["learned"] = "yes" if row["min_margin"] >= LEARNING_MARGIN_DB else "no"
        rows.append(row)
    caption = ("Learning check on the validation tracks: each variant's best validation uSDR (mean over its seeds) "
               "minus the better of two trivial estimates, silence (0 dB) and the mixture itself, per target. A "
               f"variant that learned to separate clears {LEARNING_MARGIN_DB:g} dB on every target.")
    return Table("learning_check", caption, cols, rows, list(mixture.values()), wide=False)


def testset_table(study: Study) -> Table:
    """The test set: published systems (cSDR and uSDR where given) vs ours (means over seeds)."""
    ts = study.targets
    cols = [Col("system", "system", long="system"), Col("source", "source", long="source")]
    for metric, group in (("csdr", "cSDR (dB)"), ("usdr", "uSDR (dB)")):
        cols += [Col(score_key(metric, t), short_target(t), group, "sdr", f"{metric[0]}SDR {t}") for t in (*ts, AVG)]
    rows: dict[str, dict] = {}
    for r in study.published_test:
        row = rows.setdefault(r["model"], {"system": r["model"], "source": r.get("source", "published")})
        metric = str(r.get("metric", "")).strip().lower()
        if metric in ("csdr", "usdr"):
            for t in (*ts, AVG):
                row[score_key(metric, t)] = num(r.get(t))
    ours = [v for v in TEST_COMPARISON if v in study.variants] or list(study.variants)
    for k, v in enumerate([*ours, *REFERENCE_ROWS]):
        if v in REFERENCE_ROWS:
            evals, label = ([study.eval[v]] if v in study.eval else []), f"this study, {REFERENCE_LABELS[v]}"
        else:
            evals = study.metrics(v, EVALUATION)
            label = "this study" + (f", mean of {len(evals)} seeds" if len(evals) > 1 else "")
        row = {"system": v, "source": label if evals else f"{label}: {NOT_RUN}", "seeds": len(evals),
               "_rule_before": k == 0 and bool(rows)}
        for metric in ("csdr", "usdr"):
            for t in (*ts, AVG):
                row[score_key(metric, t)] = mean(e.get(score_key(metric, t)) for e in evals)
        rows[f"ours:{v}"] = row
    caption = ("Test set. Published systems (original BSRNN, the replication, Open-Unmix): MUSDB18-HQ's 50 test "
               f"tracks; this study's variants (means over their seeds): {_test_data(study)}. cSDR: BSSEval v4 "
               "median over frames then tracks; uSDR: mean over tracks of whole-track SDR." + protocol_note(study))
    return Table("test", caption, cols, list(rows.values()), ["seeds"])


# (column prefix, metrics key, group header, short name for one-row headers, number kind)
_FORECAST_FIGURES = (("time", DURATION, "Time (h:m:s)", "time", "duration"),
                     ("cc", KWH_CODECARBON, "kWh CodeCarbon", "kWh CC", "sig"),
                     ("ga", KWH_GREEN_ALGORITHMS, "kWh Green Algorithms", "kWh GA", "sig"))


def _yes_no(value) -> str:
    return "" if not finite(value) else ("yes" if num(value) >= 0.5 else "no")


def forecast_table(study: Study) -> Table:
    """Per trained run: the forecast its training made after its first epoch (the shortest and the
    full schedule), what it measured, the error and whether the measurement fell within the range."""
    cols = [Col("run", "run", long="run"), Col("epochs", "epochs", kind="int", long="epochs run"),
            Col("forecast_epochs_range", "forecast", long="forecast epochs (min–max)")]
    extra = ["variant", "seed"]
    for short, _, group, name, kind in _FORECAST_FIGURES:
        figure = [Col(f"{short}_min", "min", group, kind, f"{name} forecast min"),
                  Col(f"{short}_max", "max", group, kind, f"{name} forecast max"),
                  Col(f"{short}_measured", "measured", group, kind, f"{name} measured"),
                  Col(f"{short}_error_pct", "error %", group, "pct", f"{name} error (%)"),
                  Col(f"{short}_within", "in range", group, long=f"{name} within range")]
        if short == "ga":  # the CSV has Green Algorithms too
            extra += [c.key for c in figure]
        else:
            cols += figure
    rows = []
    for v in study.variants:
        for run in study.trained(v):
            m = study.train[run]
            row = {"run": run, "variant": v, "seed": m.get("seed", ""), "epochs": num(m.get("epochs"))}
            low, high = num(m.get(f"{FORECAST}min_epochs")), num(m.get(f"{FORECAST}epochs"))
            row["forecast_epochs_range"] = (f"{low:.0f}–{high:.0f}" if math.isfinite(low) and math.isfinite(high)
                                            else "–")
            for short, key, *_ in _FORECAST_FIGURES:
                row.update({f"{short}_min": num(m.get(f"{FORECAST}min_{key}")),
                            f"{short}_max": num(m.get(FORECAST + key)), f"{short}_measured": num(m.get(key)),
                            f"{short}_error_pct": num(m.get(forecast_error_key(key))),
                            f"{short}_within": _yes_no(m.get(forecast_within_key(key)))})
            rows.append(row)
    caption = ("Each run's forecast, made by its training after the first epoch: one epoch's cost times the shortest "
               "schedule early stopping allows (min) and the full schedule (max), against what the run measured; "
               "the error is one epoch's cost times the epochs that ran, in % of the measurement.")
    return Table("forecast", caption, cols, rows, extra)


def training_split_table(study: Study) -> Table:
    """Each variant's training energy (mean over its runs) split among its target models by their
    share of the step time (`time_share_<target>` of metrics/train)."""
    models = [*study.targets, "joint"]
    cols = [Col("variant", "variant", long="variant")]
    for method, label in ((KWH_CODECARBON, "CC"), (KWH_GREEN_ALGORITHMS, "GA")):
        group = f"Training kWh {label} by model"
        cols += [Col(f"{method}_{m}", short_target(m) if m != "joint" else m, group, "sig", f"kWh {label} {m}")
                 for m in models]
    rows = []
    for v in study.variants:
        if not study.trained(v):
            continue
        row = {"variant": v}
        for method in (kwh_key(m) for m in METHODS):
            total = study.mean(v, method)
            row.update({f"{method}_{m}": total * study.mean(v, f"{TIME_SHARE}{m}") for m in models})
        rows.append(row)
    cols = [c for c in cols if c.key == "variant" or any(finite(r.get(c.key)) for r in rows)]  # no joint column
    caption = ("Training energy of each variant (mean over its runs) split among its models by their share of "
               "the step time: what each target cost to train.")
    return Table("training_split", caption, cols, rows, wide=False)



def protocol_id(protocol) -> str:
    """A short name of an evaluation protocol (`evaluation.metrics.protocol`), equal when they are."""
    if not isinstance(protocol, dict):
        return "not recorded"
    return hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:8]


# What each `data.source` is, in a caption.
DATA_SOURCES = {"synthetic": "the built-in synthetic songs, not MUSDB18-HQ: their scores do not compare with "
                             "the published ones", "musdb18hq": "MUSDB18-HQ", "musdb18": "MUSDB18 (compressed stems)"}


def _test_data(study: Study) -> str:
    """The data sets the study's test scores come from, in words."""
    sources = sorted({str((e.get("protocol") or {}).get("data", {}).get("source", "")) for e in study.eval.values()})
    return " and ".join(DATA_SOURCES.get(s, s) for s in sources if s) or "not evaluated yet"


def protocol_note(study: Study) -> str:
    """The sentence every caption with test scores ends with: whether the scores share one
    evaluation protocol (uSDR/cSDR windows, BSSEval backend, inference segment, data set, ...)."""
    ids = sorted({protocol_id(e.get("protocol")) for e in study.eval.values()})
    if len(ids) > 1:
        return (f" The test scores were computed with {len(ids)} different evaluation protocols ({', '.join(ids)}; "
                "each metrics/eval file holds its own, the inference table names each row's): compare only rows "
                "that share one.")
    return " Every test score was computed with the same evaluation protocol." if ids else ""


def inference_table(study: Study) -> Table:
    """What separating costs each variant, beside its test score: the real-time factor (thread-seconds
    of separation per second of audio) and the kWh per minute of separated audio by both methods,
    means over its runs, with the evaluation protocol its scores were computed with."""
    cols = [Col("variant", "variant", long="variant"),
            Col("test_usdr_avg", "test uSDR", kind="sdr", long="test uSDR avg (dB)"),
            Col("rtf", "RTF", kind="sig", long="real-time factor of separation", min_decimals=2),
            Col("cc_per_min", "kWh CC / min", kind="g3", long="kWh CodeCarbon per minute of audio"),
            Col("ga_per_min", "kWh GA / min", kind="g3", long="kWh Green Algorithms per minute of audio"),
            Col("protocol", "protocol", long="evaluation protocol"),
            Col("stream_latency_ms", "latency (ms)", "Streaming", "sig", "streaming latency (ms)"),
            Col("stream_rtf_max", "RTF, worst", "Streaming", "sig", "streaming RTF, worst chunk", 2),
            Col("stream_usdr_avg", "uSDR", "Streaming", "sdr", "streaming test uSDR avg (dB)")]
    rows = []
    for v in study.variants:
        runs = study.metrics(v, EVALUATION)
        if not runs:
            continue
        ids = sorted({protocol_id(r.get("protocol")) for r in runs})
        rows.append({"variant": v, "test_usdr_avg": study.mean(v, score_key("usdr"), EVALUATION),
                     "rtf": study.mean(v, SEPARATION_RTF, EVALUATION),
                     "cc_per_min": study.mean(v, separation_kwh_key("codecarbon"), EVALUATION),
                     "ga_per_min": study.mean(v, separation_kwh_key("green_algorithms"), EVALUATION),
                     "protocol": ", ".join(ids),
                     "stream_latency_ms": study.mean(v, STREAMING_LATENCY_MS, EVALUATION),
                     "stream_rtf_max": study.mean(v, STREAMING_RTF_MAX, EVALUATION),
                     "stream_usdr_avg": study.mean(v, STREAMING + score_key("usdr"), EVALUATION)})
    if not any(finite(r["stream_latency_ms"]) for r in rows):
        cols = [c for c in cols if c.group != "Streaming"]
    caption = ("The cost of separating: real-time factor (thread-seconds of separation per second of audio, each "
               "track on one thread) and kWh per minute of separated audio (the evaluation's energy in the "
               "separation's share of its time), means over each variant's runs. A causal model (unidirectional "
               "Open-Unmix) also separates as a stream, chunk by chunk without the Wiener filter: its latency "
               "bound, the worst chunk's real-time factor and the stream's uSDR." + protocol_note(study))
    return Table("inference", caption, cols, rows, wide=False)
