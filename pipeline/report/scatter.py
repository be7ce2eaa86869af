"""The report's two labelled scatter plots: SDR against training energy with the Pareto front
(variant means, with their spread over seeds as error bars), and the shape of the study (each
variant's kWh ratio to base against its validation uSDR difference from base, ours beside the
paper's). Imports `pipeline.names`, the report's inputs, comparison, effects, plotting and label
placer, and matplotlib.
"""
from __future__ import annotations

import math
from pathlib import Path

from pipeline.names import METHOD_LABELS, METHODS, kwh_key
from pipeline.report import effects
from pipeline.report.comparison import FAMILIES
from pipeline.report.inputs import Study
from pipeline.report.labels import place_labels, step_samples
from pipeline.report.plotting import (
    PALETTE,
    empty,
    energy_unit,
    log_axis,
    method_name,
    new_figure,
    pad_limits,
    pareto_front,
    save,
    sdr_choice,
    sdr_of,
    sdr_std,
)

VERDICT_COLOURS = {effects.BETTER: "#009E73", effects.WORSE: "#D55E00", effects.NOISE: "#0072B2",
                   effects.NO_ESTIMATE: "0.45"}


def _spread(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def fig_sdr_vs_energy(study: Study, path: Path) -> Path:
    names = [v for v in study.variants if study.ran(v)]
    key, label = sdr_choice(study, names)
    names = [v for v in names if math.isfinite(sdr_of(study, v, key))]
    fig = new_figure(5.4)
    axes = fig.subplots(2, 1)
    if not names:
        for ax in axes:
            empty(ax, "no variant has both a training and an SDR")
        return save(fig, path)
    energies = [[study.mean(v, kwh_key(m)) for v in names] for m in METHODS]
    spreads = [[_spread(effects.summarize(study.values(v, kwh_key(m))).std) for v in names] for m in METHODS]
    every = [e for energy in energies for e in energy]
    unit, factor = energy_unit(every)
    sdr = [sdr_of(study, v, key) for v in names]
    sdr_err = [_spread(sdr_std(study, v, key)) for v in names]
    archs = sorted({study.arch.get(v, "?") for v in names})
    colour = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(archs)}
    positive = [e for e in every if math.isfinite(e) and e > 0]
    log = bool(positive) and max(positive) / min(positive) > 6  # one scale for both panels
    for ax, energy, spread, method in zip(axes, energies, spreads, METHODS):
        idx = [i for i, e in enumerate(energy) if math.isfinite(e) and e > 0]
        ax.set_title(METHOD_LABELS[method], loc="left")
        if not idx:
            empty(ax, f"no {method_name(method)} energy recorded")
            continue
        xs = [energy[i] * factor for i in idx]
        ys = [sdr[i] for i in idx]
        front = [idx[j] for j in pareto_front(list(zip(xs, ys)))]
        if log:
            ax.set_xscale("log")
            log_axis(ax.xaxis)
        for a in archs:
            members = [i for i in idx if study.arch.get(names[i], "?") == a]
            spread_of = [i for i in members if spread[i] > 0 or sdr_err[i] > 0]
            if spread_of:  # the spread over seeds; none for a variant of one run
                x = [energy[i] * factor for i in spread_of]
                ax.errorbar(x, [sdr[i] for i in spread_of], yerr=[sdr_err[i] for i in spread_of],
                            xerr=[[min(spread[i] * factor, 0.9 * x[k]) for k, i in enumerate(spread_of)],
                                  [spread[i] * factor for i in spread_of]],
                            fmt="none", ecolor=colour[a], elinewidth=0.6, capsize=1.2, capthick=0.6, zorder=2.5)
            on = [i for i in members if i in front]
            off = [i for i in members if i not in front]
            ax.scatter([energy[i] * factor for i in off], [sdr[i] for i in off], s=13, facecolors="white",
                       edgecolors=colour[a], linewidths=0.8, zorder=3)
            ax.scatter([energy[i] * factor for i in on], [sdr[i] for i in on], s=15, color=colour[a],
                       edgecolors="black", linewidths=0.5, zorder=4, label=f"{FAMILIES.get(a, a)} family")
        fx = [energy[i] * factor for i in front]
        fy = [sdr[i] for i in front]
        ax.step(fx, fy, where="post", color="0.3", lw=0.7, ls=(0, (3, 1.5)), zorder=2,
                label="Pareto front (filled)")
        pad_limits(ax, xs, [y + s * d for y, s in zip(ys, (sdr_err[i] for i in idx)) for d in (-1, 1)], log)
        ax.set_xlabel(f"training energy per run ({unit}{', log scale' if log else ''})")
        ax.set_ylabel(f"average {label} (dB)")
        bars = []  # the error bars, for labels to keep clear of
        for i in idx:
            x, y, dx, dy = energy[i] * factor, sdr[i], spread[i] * factor, sdr_err[i]
            bars += [((x, y - dy), (x, y + dy))] if dy > 0 else []
            bars += [((max(x - dx, 0.1 * x), y), (x + dx, y))] if dx > 0 else []
        place_labels(ax, [(energy[i] * factor, sdr[i]) for i in idx], [names[i] for i in idx],
                     priority=[idx.index(i) for i in front], avoid=step_samples(fx, fy, log), segments=bars)
    handles, labels_ = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, labels_, loc="lower right", handletextpad=0.3, borderaxespad=0.2,
                       markerscale=0.9, fontsize=5.5)
    return save(fig, path)


def fig_shape(study: Study, rows: list[dict], path: Path) -> Path:
    """The shape of the study: per variant but base, x its kWh ratio to base (CodeCarbon, log axis),
    y its validation uSDR avg difference from base; ours filled (coloured by verdict, the interval as
    an error bar), the paper's hollow, joined per variant; base at (1, 0)."""
    fig = new_figure(3.9)
    ax = fig.subplots()
    ours, paper = {}, {}
    for r in rows:
        if math.isfinite(r["ratio_cc"]) and r["ratio_cc"] > 0 and math.isfinite(r["delta_avg"]):
            ours[r["variant"]] = (r["ratio_cc"], r["delta_avg"])
        if math.isfinite(r["paper_ratio_cc"]) and r["paper_ratio_cc"] > 0 and math.isfinite(r["paper_delta_avg"]):
            paper[r["variant"]] = (r["paper_ratio_cc"], r["paper_delta_avg"])
    if not ours and not paper:
        empty(ax, "no variant with both a kWh ratio and a Δ uSDR to base")
        return save(fig, path)
    ax.set_xscale("log")
    segments = []  # what labels keep clear of: the lines joining ours and the paper's, the error bars
    for v in (v for v in ours if v in paper):
        ax.plot(*zip(ours[v], paper[v]), color="0.6", lw=0.5, ls=(0, (1, 1.2)), zorder=1)
        segments.append((ours[v], paper[v], 0.3))
    ax.axhline(0, color="0.5", lw=0.5, zorder=0.5)
    ax.axvline(1, color="0.5", lw=0.5, zorder=0.5)
    ys = [0.0] + [p[1] for p in (*ours.values(), *paper.values())]
    by = {r["variant"]: r for r in rows}
    verdicts = [*VERDICT_COLOURS, *sorted({by[v]["verdict"] for v in ours} - set(VERDICT_COLOURS))]
    for verdict in verdicts:
        members = [v for v in ours if by[v]["verdict"] == verdict]
        if not members:
            continue
        colour = VERDICT_COLOURS.get(verdict, "0.45")
        with_interval = [v for v in members if math.isfinite(by[v]["low"])]
        if with_interval:
            low = [ours[v][1] - by[v]["low"] for v in with_interval]
            high = [by[v]["high"] - ours[v][1] for v in with_interval]
            ax.errorbar([ours[v][0] for v in with_interval], [ours[v][1] for v in with_interval], yerr=[low, high],
                        fmt="none", ecolor=colour, elinewidth=0.6, capsize=1.2, capthick=0.6, zorder=2)
            ys += [by[v]["low"] for v in with_interval] + [by[v]["high"] for v in with_interval]
            segments += [((ours[v][0], by[v]["low"]), (ours[v][0], by[v]["high"])) for v in with_interval]
        ax.scatter([ours[v][0] for v in members], [ours[v][1] for v in members], s=14, color=colour,
                   edgecolors="black", linewidths=0.35, zorder=4, label=f"ours: {verdict}")
    if paper:
        ax.scatter([p[0] for p in paper.values()], [p[1] for p in paper.values()], s=13, facecolors="white",
                   edgecolors="0.25", linewidths=0.7, zorder=3, label="the paper's")
    ax.scatter([1.0], [0.0], marker="*", s=40, color="black", zorder=5, label=f"{study.base} (1, 0)")
    xs = [1.0] + [p[0] for p in (*ours.values(), *paper.values())]
    lo, hi = min(xs), max(xs)
    ax.set_xlim(lo / 1.25, hi * 1.25)
    log_axis(ax.xaxis, dense=hi / lo < 4)
    span = max(max(ys) - min(ys), 0.5)
    ax.set_ylim(min(ys) - 0.08 * span, max(ys) + 0.1 * span)
    ax.set_xlabel("training energy, ratio to base (kWh CodeCarbon, log scale)")
    ax.set_ylabel("Δ validation uSDR avg from base (dB)")
    labelled = {**{v: p for v, p in paper.items() if v not in ours}, **ours}
    names = [r["variant"] for r in rows if r["variant"] in labelled]
    points = [labelled[v] for v in names]
    place_labels(ax, points, names, fontsize=4.6, priority=[i for i, v in enumerate(names) if v in ours],
                 markers=[p for v, p in paper.items() if v in ours] + [(1.0, 0.0)], segments=segments)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=5.2, handletextpad=0.3,
               columnspacing=0.9, markerscale=0.9)
    return save(fig, path)
