"""The report's figures, one PNG each at one column's width (3.4 in, 300 dpi), in one style
(`plotting`): SDR against training energy with the Pareto front and the shape of the study
(`scatter`), the CPU/GPU/RAM split of the training energy, the training curves, SDR per target,
and the whole study's cumulative energy from the ledger. A variant's figure is the mean over its
seeds. Imports `pipeline.names`, the report's inputs, ledger, tables, comparison, plotting and
scatter plots, and matplotlib, numpy and pandas.
"""
from __future__ import annotations

import bisect
import itertools
import math
from pathlib import Path

from pipeline.names import AVG, METHODS, PARTS, REFERENCE_ROWS, kwh_key, part_key, score_key
from pipeline.report.comparison import variant_effects
from pipeline.report.inputs import EVALUATION, Study, fsum
from pipeline.report.ledger import KWH_CC, KWH_GA, KWH_PER_HOUSEHOLD_YEAR, kwh_column
from pipeline.report.plotting import PART_STYLES, empty, energy_unit, line_styles, method_name, new_figure, save, \
    sdr_of, style
from pipeline.report.scatter import fig_sdr_vs_energy, fig_shape
from pipeline.report.tables import REFERENCE_LABELS, amount, sci, short_target

FIGURES = {
    "sdr_vs_energy": "Average test SDR against training energy per run, both methods, with the Pareto front "
                     "(variant means; error bars: the standard deviation over seeds)",
    "shape": "The shape of the study: each variant's kWh ratio to base against its validation uSDR difference "
             "from base, ours (filled, with the 95 % interval) beside the paper's (hollow)",
    "energy_split": "Training energy per run and variant (mean over seeds) split into CPU, GPU and RAM, both methods",
    "training_curves": "Validation uSDR and validation loss per epoch (each variant's first seed; its other seeds "
                       "thinner)",
    "sdr_per_target": "Test SDR per target and variant (means over seeds)",
    "cumulative_energy": "Cumulative energy of every run in the MLflow store",
}


def fig_energy_split(study: Study, path: Path) -> Path:
    names = [v for v in study.variants if study.ran(v)]
    height = 0.9 + 0.115 * max(len(names), 3)
    fig = new_figure(height)
    axes = fig.subplots(1, 2, sharey=True, sharex=True)  # one scale: the methods compare at a glance
    if not names:
        for ax in axes:
            empty(ax, "no training metrics")
        return save(fig, path)

    def kwh(v: str, key: str) -> float:
        return study.mean(v, key)

    unit, factor = energy_unit([kwh(v, key) for v in names for m in METHODS
                                for key in (kwh_key(m), *(part_key(m, p) for p in PARTS))])
    ypos = list(range(len(names)))
    widest = 0.0
    for ax, method in zip(axes, METHODS):
        left = [0.0] * len(names)
        for part in PARTS:
            part_label, colour = PART_STYLES[part]
            vals = [kwh(v, part_key(method, part)) * factor for v in names]
            vals = [x if math.isfinite(x) else 0.0 for x in vals]
            ax.barh(ypos, vals, left=left, height=0.72, color=colour, label=part_label, linewidth=0)
            left = [a + b for a, b in zip(left, vals)]
        totals = [kwh(v, kwh_key(method)) * factor for v in names]
        rest = [t - l if math.isfinite(t) and t - l > 0.01 * t else 0.0 for t, l in zip(totals, left)]
        if any(rest):  # a total the parts do not add up to (no split recorded, or overheads)
            ax.barh(ypos, rest, left=left, height=0.72, color="0.7", label="not split", linewidth=0)
            left = [a + b for a, b in zip(left, rest)]
        ax.set_title(method_name(method), fontsize=6.5)
        ax.grid(axis="y", visible=False)
        widest = max(widest, max(left))
    axes[0].set_xlim(0, widest * 1.05 if widest > 0 else 1)
    axes[0].set_ylim(len(names) - 0.5, -0.5)  # first variant on top, no empty margin
    fig.supxlabel(f"training energy ({unit})", fontsize=7)
    axes[0].set_yticks(ypos, names, fontsize=5.5)
    axes[1].tick_params(axis="y", left=False)
    legend = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="outside upper center", ncol=len(legend), handlelength=1.0,
               columnspacing=1.0)
    return save(fig, path)


def fig_training_curves(study: Study, path: Path) -> Path:
    curves = {v: [study.history[r] for r in study.runs.get(v, ()) if r in study.history] for v in study.variants}
    names = [v for v in study.variants if curves[v]]
    legend_rows = math.ceil(max(len(names), 1) / 3)
    fig = new_figure(3.3 + 0.1 * legend_rows)
    axes = fig.subplots(2, 1, sharex=True)
    if not names:
        for ax in axes:
            empty(ax, "no training history (plots/train/*.tsv)")
        return save(fig, path)
    styles = line_styles(len(names))
    losses = []
    for v, (colour, ls) in zip(names, styles):
        for k, h in enumerate(curves[v]):  # the first seed's curve, the others thinner
            width, alpha, label = (0.9, 1.0, v) if k == 0 else (0.45, 0.7, None)
            marker = "o" if len(h) == 1 else None
            if score_key("valid_usdr") in h:
                axes[0].plot(h["epoch"], h[score_key("valid_usdr")], color=colour, ls=ls, lw=width, alpha=alpha,
                             label=label, marker=marker, ms=2)
            loss_key = "valid_loss" if "valid_loss" in h else ("train_loss" if "train_loss" in h else None)
            if loss_key:
                losses += [x for x in h[loss_key] if math.isfinite(x)]
                axes[1].plot(h["epoch"], h[loss_key], color=colour, ls=ls, lw=width, alpha=alpha, marker=marker,
                             ms=2)
    axes[0].set_ylabel("validation uSDR,\naverage (dB)")
    axes[1].set_ylabel("validation loss\n(variant's own loss)")
    if losses:
        if min(losses) > 0 and max(losses) / min(losses) > 20:
            axes[1].set_yscale("log")
    else:
        empty(axes[1], "no loss in the histories")
    axes[1].set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=5, handlelength=2.2,
               columnspacing=0.8, handletextpad=0.4, labelspacing=0.25)
    return save(fig, path)


def fig_sdr_per_target(study: Study, path: Path) -> Path:
    import numpy as np

    names = ([v for v in study.variants if study.metrics(v, EVALUATION)]
             + [b for b in REFERENCE_ROWS if b in study.eval])
    metrics = [(k, label) for k, label in (("csdr", "test cSDR (dB)"), ("usdr", "test uSDR (dB)"))
               if any(math.isfinite(sdr_of(study, v, k)) for v in names)]
    if not names or not metrics:
        names = [v for v in study.variants if study.ran(v)]
        metrics = [("valid_usdr", "validation uSDR (dB)")]
    cols = [*study.targets, AVG]
    fig = new_figure(0.85 + 0.125 * max(len(names), 3))
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    if not names:
        empty(axes[0], "no metrics")
        return save(fig, path)
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="0.9")
    for ax, (key, label) in zip(axes, metrics):
        grid = np.array([[sdr_of(study, v, key, t) for t in cols] for v in names], dtype=float)
        # the colours span the variants; the bounds, far below and above, take the end colours
        rows_for_scale = [i for i, v in enumerate(names) if v not in REFERENCE_ROWS] or list(range(len(names)))
        scaled = grid[rows_for_scale][np.isfinite(grid[rows_for_scale])]
        vmin, vmax = (float(scaled.min()), float(scaled.max())) if scaled.size else (0.0, 1.0)
        if vmax - vmin < 1e-9:
            vmin, vmax = vmin - 1, vmax + 1
        image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                          interpolation="nearest")
        for (r, c), value in np.ndenumerate(grid):
            if math.isfinite(value):
                shade = cmap(min(1.0, max(0.0, (value - vmin) / (vmax - vmin))))
                light = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2]
                text = f"{value:.1f}"
                ax.text(c, r, "0.0" if text == "-0.0" else text, ha="center", va="center", fontsize=4.6,
                        color="black" if light > 0.5 else "white")
            else:
                ax.text(c, r, "–", ha="center", va="center", fontsize=4.6, color="0.4")
        ax.set_xticks(range(len(cols)), [short_target(c) for c in cols], fontsize=5)
        ax.xaxis.tick_top()
        ax.tick_params(axis="both", length=0)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.axvline(len(cols) - 1.5, color="white", lw=1.2)
        if any(b in names for b in REFERENCE_ROWS):
            ax.axhline(len([n for n in names if n not in REFERENCE_ROWS]) - 0.5, color="white", lw=1.2)
        clipped = scaled.size and (np.nanmin(grid) < vmin, np.nanmax(grid) > vmax)
        extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
            tuple(bool(x) for x in clipped) if clipped else (False, False), "neither")
        bar = fig.colorbar(image, ax=ax, location="bottom", fraction=0.04, pad=0.01, aspect=18, extend=extend)
        bar.set_label(label, fontsize=6)
        bar.ax.tick_params(labelsize=5, length=2)
        bar.outline.set_linewidth(0.4)
    axes[0].set_yticks(range(len(names)), [REFERENCE_LABELS.get(v, v) for v in names], fontsize=5.5)
    return save(fig, path)


def fig_cumulative_energy(runs, timeline, path: Path) -> Path:
    """The study's energy over time: every run's `timeline` steps (each training epoch, the end of
    every execution) added up in time order; failed and killed runs marked where they ended."""
    import pandas as pd
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    fig = new_figure(2.7)
    ax = fig.subplots()
    if timeline.empty:
        empty(ax, "no runs in the MLflow store" if runs.empty else "no energy logged in the MLflow store")
        ax.set_xlabel("time")
        return save(fig, path)

    def naive(times) -> list:
        return [t.tz_convert(None).to_pydatetime() for t in pd.to_datetime(pd.Series(times), utc=True)]

    unit, factor = energy_unit([fsum(timeline[KWH_CC]), fsum(timeline[KWH_GA])])
    when = naive(timeline["time"])
    t0 = min(naive(runs["start_time"].dropna()) or when)
    ended = runs[runs["status"].isin(["FAILED", "KILLED"])]
    markers = {"FAILED": ("x", "#D55E00", "failed run"), "KILLED": ("v", "#CC79A7", "killed run")}
    totals = {}
    for method, colour, ls in zip(METHODS, ("#0072B2", "#009E73"), ("-", "--")):
        steps = [v if math.isfinite(v) else 0.0 for v in timeline[kwh_column(method)].astype(float)]
        cumulative = [x * factor for x in itertools.accumulate(steps)]
        totals[method] = cumulative[-1] / factor
        ax.step([t0, *when], [0.0, *cumulative], where="post", color=colour, ls=ls, lw=1.0,
                label=method_name(method))
        for status, (marker, mcolour, mlabel) in markers.items():
            hits = ended[ended["status"] == status]
            if hits.empty:
                continue
            at = naive(hits["end_time"].where(hits["end_time"].notna(), hits["start_time"]))
            # the study's cumulative energy when the run ended
            level = [cumulative[i - 1] if (i := bisect.bisect_right(when, t)) else 0.0 for t in at]
            ax.scatter(at, level, marker=marker, s=14, color=mcolour, linewidths=0.9, zorder=4,
                       label=f"{mlabel} ({len(hits)})" if method == METHODS[0] else None)
    locator = AutoDateLocator(minticks=3, maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(f"cumulative energy ({unit})")
    per_unit = KWH_PER_HOUSEHOLD_YEAR * factor
    second = ax.secondary_yaxis("right", functions=(lambda e: e / per_unit, lambda y: y * per_unit))
    second.set_ylabel("household-years", fontsize=6)
    second.tick_params(labelsize=5.5)
    ax.spines["right"].set_visible(True)
    note = "\n".join([f"{len(runs)} runs",
                      *(f"{method_name(m)}: {amount(totals[m] * factor)} {unit} = "
                        f"{sci(totals[m] / KWH_PER_HOUSEHOLD_YEAR)} household-years" for m in METHODS),
                      f"(1 household-year = {KWH_PER_HOUSEHOLD_YEAR:,.0f} kWh)"])
    ax.text(0.02, 0.98, note, transform=ax.transAxes, ha="left", va="top", fontsize=5, color="0.2",
            linespacing=1.3)
    top = max(totals.values()) * factor
    ax.set_ylim(0, top * 1.45 if top > 0 else 1)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: ("run (" in labels[i], i))  # lines, then markers
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower center", ncol=2,
               fontsize=5.5, handlelength=1.8, columnspacing=1.5)
    ax.margins(x=0.03)
    return save(fig, path)




def make_figures(study: Study, runs, timeline, folder: Path, effects_rows: list[dict] | None = None) -> dict[str, Path]:
    """Every figure of FIGURES into `folder`; `effects_rows` are `comparison.variant_effects`'s."""
    import matplotlib

    rows = variant_effects(study) if effects_rows is None else effects_rows
    makers = {
        "sdr_vs_energy": lambda p: fig_sdr_vs_energy(study, p),
        "shape": lambda p: fig_shape(study, rows, p),
        "energy_split": lambda p: fig_energy_split(study, p),
        "training_curves": lambda p: fig_training_curves(study, p),
        "sdr_per_target": lambda p: fig_sdr_per_target(study, p),
        "cumulative_energy": lambda p: fig_cumulative_energy(runs, timeline, p),
    }
    out = {}
    with matplotlib.rc_context(style()):
        for name, make in makers.items():
            out[name] = make(folder / f"{name}.png")
    return out
