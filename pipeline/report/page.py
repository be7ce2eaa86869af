"""The report's one self-contained page, reports/index.html: the summary (variants, runs and seeds,
effects, the study's resolution), how energy was measured (`energy_methods_summary`, from what each training recorded of
CodeCarbon's methods), the tables (the study, the effects against seed noise with the note on
relative against absolute comparison, the recipes, the stopping rules, the learning check, the forecasts, the test
set), the figures embedded as data URIs, the ledger and every run; nothing fetched from elsewhere.
Imports `pipeline.names`, `pipeline.paths` and the report's other modules.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path

from pipeline import paths
from pipeline.names import KWH_CODECARBON, KWH_GREEN_ALGORITHMS, REFERENCE_ROWS
from pipeline.report.comparison import agreement_text, effects_summary, resolution_text
from pipeline.report.effects import BETTER, NO_ESTIMATE, NOISE, WORSE
from pipeline.report.figures import FIGURES
from pipeline.report.inputs import EVALUATION, Study, finite, fsum, num
from pipeline.report.ledger import KG_CO2E, KWH_CC, KWH_GA, KWH_PER_HOUSEHOLD_YEAR
from pipeline.report.plotting import energy_text
from pipeline.report.render import to_html
from pipeline.report.results import scale_note
from pipeline.report.tables import NOT_RUN, Table, runs_table_view, sci

# How CodeCarbon measured each part, as `energy_methods` records it, and how far it can be trusted.
METHOD_NOTES = {
    "cpu": {
        "rapl": "RAPL energy counters, measured",
        "powermetrics": "powermetrics, measured",
        "power_gadget": "Intel Power Gadget, measured",
        "windows_emi": "Windows EMI counters, measured",
        "raspberry_pmic": "PMIC counters, measured",
        "cpu_load": "a CPU-load × TDP model, estimated rather than metered",
        "constant": "a constant share of the TDP, a rough estimate",
        "none": "not measured",
    },
    "gpu": {"nvml_counter": "NVML energy counters, measured",
            "nvml_power": "NVML power × time, measured power integrated over the samples",
            "nvml_counter+nvml_power": "NVML energy counters, and power × time where a GPU has none",
            "amdsmi": "AMD SMI, measured", "powermetrics": "powermetrics, measured",
            "missing": "not attributable to the run (see gpu_missing), its kWh missing",
            "none": "no GPU used"},
    "ram": {"constant": "a fixed W-per-GB model, estimated", "raspberry_pmic": "PMIC counters, measured",
            "none": "not measured"},
}
METERED_CPU = ("rapl", "powermetrics", "power_gadget", "windows_emi", "raspberry_pmic")


def energy_methods_summary(study: Study, memory_w_per_gb: float) -> list[str]:
    """One sentence per way CodeCarbon measured (as recorded with each training result), the Green
    Algorithms inputs (`memory_w_per_gb`: params' energy.memory_w_per_gb), and the shared PUE and
    carbon intensity."""
    groups: dict[tuple, list[str]] = {}
    shared: dict[str, set] = {"pue": set(), "carbon_intensity_g_per_kwh": set(), "carbon_intensity_source": set(),
                              "ga_tdp_source": set(), "ga_gpu_tdp_source": set()}
    unknown = []
    trained = [r for r in study.all_runs() if r in study.train]
    for run in trained:
        methods = study.train[run].get("energy_methods")
        if not isinstance(methods, dict):
            unknown.append(run)
            continue
        key = tuple(str(methods.get(k, "none")) for k in ("codecarbon", "cpu", "gpu", "ram"))
        groups.setdefault(key, []).append(run)
        for k in shared:
            if k in methods:
                shared[k].add(str(methods[k]))
    lines = []
    for (status, cpu, gpu, ram), members in groups.items():
        who = _list_names(members, len(trained))
        if status != "ok":
            lines.append(f"CodeCarbon did not measure {who} ({status}): only the Green Algorithms figure "
                         "of those runs can be used.")
            continue
        lines.append(
            f"CodeCarbon measured {who} with CPU: {_method_note('cpu', cpu)}; GPU: {_method_note('gpu', gpu)}; "
            f"RAM: {_method_note('ram', ram)}."
        )
    if unknown:
        lines.append(f"No energy method recorded for {_list_names(unknown, 0)}.")
    ga = "Green Algorithms estimated runtime × (cores × TDP per core × CPU usage + GPUs × GPU TDP × GPU usage " \
         f"+ memory × {memory_w_per_gb:g} W/GB) × PUE"
    if shared["ga_tdp_source"]:
        ga += f", CPU TDP from {', '.join(sorted(shared['ga_tdp_source']))}"
    if shared["ga_gpu_tdp_source"]:
        ga += f", GPU TDP from {', '.join(sorted(shared['ga_gpu_tdp_source']))}"
    lines.append(ga + ".")
    if shared["pue"] or shared["carbon_intensity_g_per_kwh"]:
        lines.append(f"Both methods use PUE {', '.join(sorted(shared['pue'])) or '?'} and "
                     f"{', '.join(sorted(shared['carbon_intensity_g_per_kwh'])) or '?'} g CO2e/kWh "
                     f"({'; '.join(sorted(shared['carbon_intensity_source'])) or 'source not recorded'}).")
    if any(cpu not in METERED_CPU for (_, cpu, _, _) in groups):
        lines.append("Where the CPU figure is modelled rather than metered, CodeCarbon's kWh are an estimate as "
                     "well, and the two methods are not independent checks of each other.")
    return lines


def methods_compared(study: Study) -> list[str]:
    """Two sentences on why the methods differ on this machine: what each prices for the memory (with
    both RAM figures over the study's trainings) and where each takes the CPU's power from."""
    runs = [study.train[r] for r in study.all_runs() if r in study.train]
    if not runs:
        return []
    ram_cc, ram_ga = fsum(r.get("ram_kwh") for r in runs), fsum(r.get("ga_ram_kwh") for r in runs)
    all_cc, all_ga = fsum(r.get(KWH_CODECARBON) for r in runs), fsum(r.get(KWH_GREEN_ALGORITHMS) for r in runs)
    methods = runs[-1].get("energy_methods") or {}
    inputs = runs[-1].get("energy_inputs") or {}
    share = lambda part, whole: f"{100 * part / whole:.0f} %" if whole > 0 else "–"  # noqa: E731
    ram = (f"RAM: CodeCarbon prices the machine's installed memory with its per-DIMM model "
           f"({num(methods.get('ram_power_w')):.3g} W), Green Algorithms the memory the job used (peak resident "
           f"{num(inputs.get('memory_gb')):.2g} GB at {num(inputs.get('memory_w_per_gb')):g} W/GB): over the "
           f"trainings, {energy_text(ram_cc)} ({share(ram_cc, all_cc)} of CodeCarbon's kWh) against "
           f"{energy_text(ram_ga)} ({share(ram_ga, all_ga)} of Green Algorithms').")
    cpu = (f"CPU: CodeCarbon {_method_note('cpu', str(methods.get('cpu', 'none')))}"
           + (f" with a {num(methods.get('cpu_tdp_w')):g} W TDP for the package" if finite(methods.get('cpu_tdp_w'))
              else "")
           + f"; Green Algorithms {num(methods.get('ga_tdp_per_core_w')):.3g} W per core x "
           f"{num(methods.get('ga_cores')):.3g} cores x the process tree's CPU usage "
           f"({methods.get('ga_tdp_source', 'source not recorded')}).")
    return [ram, cpu]


def _method_note(part: str, value: str) -> str:
    if value.startswith("dimm_model"):
        return f"a per-DIMM model, estimated ({value})"
    note = METHOD_NOTES.get(part, {}).get(value)
    return f"{note} ({value})" if note else value


def _list_names(names: list[str], of: int) -> str:
    if of and len(names) == of and of > 1:
        return f"all {of} trained runs"
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return f"{'run' if len(names) == 1 else 'runs'} {shown}"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;
 padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.85rem} .note{background:#fff8e1;border-left:3px solid #f0b400;padding:.4rem .8rem}
.scroll{overflow-x:auto;margin:.6rem 0}
table.data{border-collapse:collapse;font-size:.78rem;white-space:nowrap}
table.data caption{caption-side:top;text-align:left;color:#555;padding:.3rem 0;white-space:normal}
table.data th,table.data td{padding:.15rem .45rem;border-bottom:1px solid #eee}
table.data th{background:#f5f5f5;position:sticky;top:0} th.group{text-align:center;border-bottom:1px solid #ccc}
td.n{text-align:right;font-variant-numeric:tabular-nums} td.t{text-align:left}
tr.notrun td{color:#999} tr.short td:last-child{color:#b00020} tr.reference td{font-style:italic;background:#fafafa}
tr.current td:first-child{font-weight:600} tr.rule td{border-top:1.5px solid #999}
tr.better td:first-child{color:#007a5a;font-weight:600} tr.worse td:first-child{color:#b00020;font-weight:600}
figure{margin:1rem 0;display:inline-block;vertical-align:top;max-width:520px;margin-right:1.5rem}
figure img{width:100%;height:auto;border:1px solid #eee} figcaption{font-size:.82rem;color:#444}
dl.totals{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem;font-size:.9rem}
dl.totals dt{color:#555} dl.totals dd{margin:0;font-variant-numeric:tabular-nums}
"""


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _seeds_text(study: Study) -> str:
    """How many seeds the variants have, e.g. "3 seeds: base; 1 seed: 21 variants"."""
    by: dict[int, list[str]] = {}
    for v in study.variants:
        by.setdefault(len(study.runs.get(v, ())), []).append(v)
    parts = []
    for n, names in sorted(by.items(), reverse=True):
        who = ", ".join(names) if len(names) <= 3 else f"{len(names)} variants"
        parts.append(f"{n} seed{'s' if n != 1 else ''}: {who}")
    return "; ".join(parts)


def _effects_text(rows: list[dict]) -> str:
    s = effects_summary(rows)
    return (f"on validation uSDR avg, of {s['run']} variants run beside base: {s[BETTER]} better and {s[WORSE]} worse "
            f"beyond seed noise, {s[NOISE]} within it, {s[NO_ESTIMATE]} with no noise estimate; "
            f"{s['sign_agrees']} of {s['sign_compared']} agree in sign with the paper")


def render_html(cfg, study: Study, tables: dict[str, Table], figures: dict[str, Path], ledger: dict,
                runs, effects_rows: list[dict], res: dict) -> str:
    e = html.escape
    trained = [v for v in study.variants if study.ran(v)]
    evaluated = [v for v in study.variants if study.metrics(v, EVALUATION)]
    missing = [v for v in study.variants if not study.ran(v)]
    every = study.all_runs()
    runs_trained = [r for r in every if r in study.train]
    runs_evaluated = [r for r in every if r in study.eval]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>sepcost report: {e(cfg.tracking.experiment)}</h1>",
            f'<p class="meta">Generated {now} from {e(cfg.params_file)}, {e(str(paths.METRICS))}/ and the MLflow '
            f"store {e(ledger['tracking_uri'])}.</p>",
            "<h2>Summary</h2><dl class=\"totals\">",
            f"<dt>variants</dt><dd>{len(study.variants)} in params: {len(trained)} trained, {len(evaluated)} "
            f"evaluated, {len(missing)} not run</dd>",
            f"<dt>runs of the study</dt><dd>{len(every)} (a variant and a seed each): {len(runs_trained)} trained, "
            f"{len(runs_evaluated)} evaluated; {e(_seeds_text(study))}</dd>",
            f"<dt>effects</dt><dd>{e(_effects_text(effects_rows))}</dd>",
            f"<dt>resolution</dt><dd>{e(resolution_text(study, res))}</dd>",
            f"<dt>runs in MLflow</dt><dd>{ledger['runs']} ({ledger['failed_runs']} failed, "
            f"{ledger['killed_runs']} killed)</dd>",
            f"<dt>whole-study energy</dt><dd>{energy_text(ledger[KWH_CC])} CodeCarbon, "
            f"{energy_text(ledger[KWH_GA])} Green Algorithms, {ledger[KG_CO2E]:.3g} kg CO2e "
            f"(by CodeCarbon {sci(ledger['household_years_codecarbon'])} household-years at "
            f"{KWH_PER_HOUSEHOLD_YEAR:,.0f} kWh each)"
            + (f"; not counted: {ledger['runs_energy_unknown']} runs whose GPU energy could not be attributed "
               "(their methods say why), so a lower bound" if ledger["runs_energy_unknown"] else "") + "</dd>",
            f"<dt>spent on runs not current</dt><dd>{energy_text(ledger['not_current'][KWH_CC])} "
            f"CodeCarbon, {energy_text(ledger['not_current'][KWH_GA])} Green Algorithms "
            f"over {ledger['not_current']['runs']} runs</dd></dl>"]
    if missing:
        body.append(f'<p class="note">Not run yet: {e(", ".join(missing))}.</p>')
    for note in study.notes:
        body.append(f'<p class="note">{e(note)}</p>')
    body.append("<h2>How energy was measured</h2>")
    body += [f"<p>{e(line)}</p>" for line in methods_compared(study)]
    body += [f"<p>{e(line)}</p>" for line in energy_methods_summary(study, cfg.energy.memory_w_per_gb)]

    def row_class(row: dict) -> str:
        if row.get("variant") in REFERENCE_ROWS or row.get("status") == "reference":
            return "reference"
        if row.get("verdict") in (BETTER, WORSE):
            return row["verdict"]
        return "notrun" if row.get("status") == NOT_RUN or NOT_RUN in str(row.get("source", "")) else ""

    body.append("<h2>Variants</h2>")
    body.append(to_html(tables["study"], row_class))
    body.append("<h2>Effects: each variant against base and seed noise</h2>")
    relative = scale_note(study) or ("The study is at the paper's scale: its absolute figures compare with the "
                                     "paper's too (the study table's ours - published).")
    body.append(f'<p class="note">{e(relative)} {e(agreement_text(effects_rows))}</p>')
    body.append(to_html(tables["effects"], row_class))
    body.append("<h2>Recipes: what each variant changes</h2>")
    body.append(to_html(tables["recipes"]))
    body.append("<h2>Stopping rules: which rows can stop early</h2>")
    body.append(to_html(tables["stopping"]))
    if tables["learning_check"].rows:
        body.append("<h2>Learning check</h2>")
        body.append(to_html(tables["learning_check"], lambda r: "" if r["learned"] == "yes" else "short"))
    body.append("<h2>Figures</h2>")
    for name, path in figures.items():
        caption = FIGURES[name] + (f". {agreement_text(effects_rows)[:-1]}" if name == "shape" else "")
        body.append(f'<figure id="fig-{name}"><img alt="{e(FIGURES[name])}" src="{_img(path)}">'
                    f"<figcaption>{e(caption)} ({e(path.name)}).</figcaption></figure>")
    body.append("<h2>Forecasts: each training's own forecast against what it measured</h2>")
    body.append(to_html(tables["forecast"]))
    body.append("<h2>Inference: what separating costs</h2>")
    body.append(to_html(tables["inference"]))
    body.append("<h2>Test set: published vs this study</h2>")
    body.append(to_html(tables["test"], row_class))
    body.append("<h2>Energy ledger</h2>")
    body.append(f"<p>{e(ledger['definition'][0].upper() + ledger['definition'][1:])}.</p>")
    body.append(to_html(tables["ledger"]))
    body.append(to_html(tables["stages"]))
    body.append(to_html(tables["training_split"]))
    if len(runs):
        body.append(f"<details><summary>All {len(runs)} runs</summary>")
        body.append(to_html(runs_table_view(runs), lambda r: "current" if r.get("category") == "current" else ""))
        body.append("</details>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>sepcost report: {e(cfg.tracking.experiment)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
