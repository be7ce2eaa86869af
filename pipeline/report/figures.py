"""The report's figures, one PNG each at one column's width (3.4 in, 300 dpi), in one style:
SDR against training energy with the Pareto front, the CPU/GPU/RAM split of the training energy,
the training curves, SDR per target, and the whole study's cumulative energy from the ledger.
Units (kWh, or Wh for a small study) are chosen here, for the page too.
Imports `pipeline.names`, the report's inputs, ledger, tables (labels, number formats) and label
placer, and matplotlib, numpy and pandas.
"""
from __future__ import annotations

import bisect
import itertools
import math
from pathlib import Path
from typing import Any, Iterable

from pipeline.names import AVG, METHOD_LABELS, METHODS, PARTS, REFERENCE_ROWS, kwh_key, part_key, score_key
from pipeline.report.inputs import Study, finite, fsum, num
from pipeline.report.labels import place_labels, step_samples
from pipeline.report.ledger import KWH_CC, KWH_GA, KWH_PER_HOUSEHOLD_YEAR, kwh_column
from pipeline.report.tables import REFERENCE_LABELS, amount, sci, short_target

FIGURES = {
    "sdr_vs_energy": "Average test SDR against training energy, both methods, with the Pareto front",
    "energy_split": "Training energy per variant split into CPU, GPU and RAM, both methods",
    "training_curves": "Validation uSDR and validation loss per epoch",
    "sdr_per_target": "Test SDR per target and variant",
    "cumulative_energy": "Cumulative energy of every run in the MLflow store",
}

COLUMN_WIDTH_IN = 3.4
DPI = 300
# Okabe-Ito, a palette readable by colour-blind readers and in greyscale.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
PART_STYLES = {"cpu": ("CPU", "#0072B2"), "gpu": ("GPU", "#E69F00"), "ram": ("RAM", "#009E73")}


def _style() -> dict:
    return {
        "font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "xtick.labelsize": 6, "ytick.labelsize": 6,
        "legend.fontsize": 6, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
        "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "lines.linewidth": 1.0,
        "lines.markersize": 4, "axes.grid": True, "grid.linewidth": 0.4, "grid.alpha": 0.35,
        "font.family": "DejaVu Sans", "savefig.dpi": DPI, "figure.dpi": DPI, "axes.titleweight": "bold",
        "pdf.fonttype": 42,
    }


def _new_figure(height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(COLUMN_WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.03, hspace=0.04, wspace=0.03)
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": "sepcost report"})
    return path


def energy_unit(values: Iterable[float]) -> tuple[str, float]:
    """kWh, or Wh when every value is below 1 kWh (a CPU-sized study), and the factor from kWh."""
    magnitudes = [abs(v) for v in values if math.isfinite(v)]
    return ("Wh", 1000.0) if magnitudes and max(magnitudes) < 1.0 else ("kWh", 1.0)


def _method_name(method: str) -> str:
    """`CodeCarbon`, `Green Algorithms`: the method's label without how it gets its figure."""
    return METHOD_LABELS[method].split(" (")[0]


def energy_text(kwh: float) -> str:
    """An amount of energy in its unit, e.g. `1.40e-4 Wh`, `2,310 kWh`."""
    unit, factor = energy_unit([kwh])
    return f"{amount(kwh * factor)} {unit}"


def _sdr_choice(study: Study, names: list[str]) -> tuple[str, str]:
    """The SDR a figure shows: test cSDR where every evaluated variant has it, else test uSDR, else the
    validation uSDR when nothing is evaluated. Returns (key prefix, axis label)."""
    evaluated = [study.eval[v] for v in names if v in study.eval]
    if evaluated and all(finite(e.get(score_key("csdr"))) for e in evaluated):
        return "csdr", "test cSDR"
    if evaluated:
        return "usdr", "test uSDR"
    return "valid_usdr", "validation uSDR"


def _sdr_of(study: Study, v: str, key: str, target: str = AVG) -> float:
    metrics = study.train if key == "valid_usdr" else study.eval
    return num(metrics.get(v, {}).get(score_key(key, target)))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (less or equal energy and higher or equal SDR, one
    strictly), ordered by energy."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def fig_sdr_vs_energy(study: Study, path: Path) -> Path:
    names = [v for v in study.variants if v in study.train]
    key, label = _sdr_choice(study, names)
    names = [v for v in names if finite(_sdr_of(study, v, key))]
    fig = _new_figure(5.4)
    axes = fig.subplots(2, 1)
    if not names:
        for ax in axes:
            _empty(ax, "no variant has both a training and an SDR")
        return _save(fig, path)
    energies = [[num(study.train[v].get(kwh_key(m))) for v in names] for m in METHODS]
    every = [e for energy in energies for e in energy]
    unit, factor = energy_unit(every)
    sdr = [_sdr_of(study, v, key) for v in names]
    archs = sorted({study.arch.get(v, "?") for v in names})
    colour = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(archs)}
    arch_label = {"bsrnn": "BSRNN family", "umx": "Open-Unmix family"}
    positive = [e for e in every if math.isfinite(e) and e > 0]
    log = bool(positive) and max(positive) / min(positive) > 6  # one scale for both panels
    for ax, energy, method in zip(axes, energies, METHODS):
        method_label = METHOD_LABELS[method]
        idx = [i for i, e in enumerate(energy) if math.isfinite(e) and e > 0]
        ax.set_title(method_label, loc="left")
        if not idx:
            _empty(ax, f"no {_method_name(method)} energy recorded")
            continue
        xs = [energy[i] * factor for i in idx]
        ys = [sdr[i] for i in idx]
        front = [idx[j] for j in pareto_front(list(zip(xs, ys)))]
        if log:
            ax.set_xscale("log")
            _log_axis(ax.xaxis)
        for a in archs:
            members = [i for i in idx if study.arch.get(names[i], "?") == a]
            on = [i for i in members if i in front]
            off = [i for i in members if i not in front]
            ax.scatter([energy[i] * factor for i in off], [sdr[i] for i in off], s=13, facecolors="white",
                       edgecolors=colour[a], linewidths=0.8, zorder=3)
            ax.scatter([energy[i] * factor for i in on], [sdr[i] for i in on], s=15, color=colour[a],
                       edgecolors="black", linewidths=0.5, zorder=4, label=arch_label.get(a, a))
        fx = [energy[i] * factor for i in front]
        fy = [sdr[i] for i in front]
        ax.step(fx, fy, where="post", color="0.3", lw=0.7, ls=(0, (3, 1.5)), zorder=2,
                label="Pareto front (filled)")
        _pad_limits(ax, xs, ys, log)
        ax.set_xlabel(f"training energy ({unit}{', log scale' if log else ''})")
        ax.set_ylabel(f"average {label} (dB)")
        place_labels(ax, [(energy[i] * factor, sdr[i]) for i in idx], [names[i] for i in idx],
                     priority=[idx.index(i) for i in front], avoid=step_samples(fx, fy, log))
    handles, labels_ = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, labels_, loc="lower right", handletextpad=0.3, borderaxespad=0.2,
                       markerscale=0.9, fontsize=5.5)
    return _save(fig, path)


def _log_axis(axis) -> None:
    """A log axis labelled with plain numbers at 1, 2 and 5 of each decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _pad_limits(ax, xs: list[float], ys: list[float], log: bool) -> None:
    lo, hi = min(ys), max(ys)
    if hi - lo < 1.0:  # at least 1 dB, so that a few close points do not look far apart
        lo, hi = (lo + hi) / 2 - 0.5, (lo + hi) / 2 + 0.5
    span = hi - lo
    ax.set_ylim(lo - 0.12 * span, hi + 0.18 * span)
    if log:
        ax.set_xlim(min(xs) / 1.3, max(xs) * 1.3)
    else:
        lo_x, hi_x = min(xs), max(xs)
        span_x = max(hi_x - lo_x, 0.4 * hi_x, 1e-9)
        ax.set_xlim(max(0.0, lo_x - 0.15 * span_x), hi_x + 0.25 * span_x)


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=6, color="0.35")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def fig_energy_split(study: Study, path: Path) -> Path:
    names = [v for v in study.variants if v in study.train]
    height = 0.9 + 0.115 * max(len(names), 3)
    fig = _new_figure(height)
    axes = fig.subplots(1, 2, sharey=True, sharex=True)  # one scale: the methods compare at a glance
    if not names:
        for ax in axes:
            _empty(ax, "no training metrics")
        return _save(fig, path)

    def kwh(v: str, key: str) -> float:
        return num(study.train[v].get(key))

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
        ax.set_title(_method_name(method), fontsize=6.5)
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
    return _save(fig, path)


def _line_styles(n: int) -> list[tuple[str, Any]]:
    styles = ["-", (0, (4, 1.5)), (0, (1, 1)), (0, (5, 1, 1, 1))]
    return [(PALETTE[i % 7], styles[(i // 7) % len(styles)]) for i in range(n)]


def fig_training_curves(study: Study, path: Path) -> Path:
    names = [v for v in study.variants if v in study.history]
    legend_rows = math.ceil(max(len(names), 1) / 3)
    fig = _new_figure(3.3 + 0.1 * legend_rows)
    axes = fig.subplots(2, 1, sharex=True)
    if not names:
        for ax in axes:
            _empty(ax, "no training history (plots/train/*.tsv)")
        return _save(fig, path)
    styles = _line_styles(len(names))
    any_loss = False
    for v, (colour, ls) in zip(names, styles):
        h = study.history[v]
        epochs = h["epoch"]
        if score_key("valid_usdr") in h:
            axes[0].plot(epochs, h[score_key("valid_usdr")], color=colour, ls=ls, lw=0.9, label=v,
                         marker="o" if len(h) == 1 else None, ms=2)
        loss_key = "valid_loss" if "valid_loss" in h else ("train_loss" if "train_loss" in h else None)
        if loss_key:
            any_loss = True
            axes[1].plot(epochs, h[loss_key], color=colour, ls=ls, lw=0.9,
                         marker="o" if len(h) == 1 else None, ms=2)
    axes[0].set_ylabel("validation uSDR,\naverage (dB)")
    axes[1].set_ylabel("validation loss\n(variant's own loss)")
    if any_loss:
        values = [x for v in names for x in study.history[v].get("valid_loss", study.history[v].get("train_loss", []))
                  if finite(x)]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            axes[1].set_yscale("log")
    else:
        _empty(axes[1], "no loss in the histories")
    axes[1].set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=5, handlelength=2.2,
               columnspacing=0.8, handletextpad=0.4, labelspacing=0.25)
    return _save(fig, path)


def fig_sdr_per_target(study: Study, path: Path) -> Path:
    import numpy as np

    names = [v for v in study.variants if v in study.eval] + [b for b in REFERENCE_ROWS if b in study.eval]
    metrics = [(k, l) for k, l in (("csdr", "test cSDR (dB)"), ("usdr", "test uSDR (dB)"))
               if any(finite(study.eval[v].get(score_key(k))) for v in names)]
    if not names or not metrics:
        names = [v for v in study.variants if v in study.train]
        metrics = [("valid_usdr", "validation uSDR (dB)")]
    cols = [*study.targets, AVG]
    fig = _new_figure(0.85 + 0.125 * max(len(names), 3))
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    if not names:
        _empty(axes[0], "no metrics")
        return _save(fig, path)
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="0.9")
    for ax, (key, label) in zip(axes, metrics):
        grid = np.array([[_sdr_of(study, v, key, t) for t in cols] for v in names], dtype=float)
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
    return _save(fig, path)


def fig_cumulative_energy(runs, timeline, path: Path) -> Path:
    """The study's energy over time: every run's `timeline` steps (each training epoch, the end of
    every execution) added up in time order; failed and killed runs marked where they ended."""
    import pandas as pd
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    fig = _new_figure(2.7)
    ax = fig.subplots()
    if timeline.empty:
        _empty(ax, "no runs in the MLflow store" if runs.empty else "no energy logged in the MLflow store")
        ax.set_xlabel("time")
        return _save(fig, path)

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
                label=_method_name(method))
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
                      *(f"{_method_name(m)}: {amount(totals[m] * factor)} {unit} = "
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
    return _save(fig, path)


def make_figures(study: Study, runs, timeline, folder: Path) -> dict[str, Path]:
    import matplotlib

    makers = {
        "sdr_vs_energy": lambda p: fig_sdr_vs_energy(study, p),
        "energy_split": lambda p: fig_energy_split(study, p),
        "training_curves": lambda p: fig_training_curves(study, p),
        "sdr_per_target": lambda p: fig_sdr_per_target(study, p),
        "cumulative_energy": lambda p: fig_cumulative_energy(runs, timeline, p),
    }
    out = {}
    with matplotlib.rc_context(_style()):
        for name, make in makers.items():
            out[name] = make(folder / f"{name}.png")
    return out
