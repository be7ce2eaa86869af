"""What every figure of the report shares: one style at one column's width (3.4 in, 300 dpi), the
figure and its file, the energy unit (kWh, or Wh for a small study; the page's too), axes helpers,
the Pareto front, and a variant's SDR as a figure shows it (the mean over its seeds, with their
spread). Imports `pipeline.names`, the report's inputs, effects and tables (number formats), and
matplotlib.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from pipeline.names import AVG, METHOD_LABELS, REFERENCE_ROWS, score_key
from pipeline.report.effects import summarize
from pipeline.report.inputs import EVALUATION, TRAINING, Study, finite
from pipeline.report.tables import amount

COLUMN_WIDTH_IN = 3.4
DPI = 300
# Okabe-Ito, a palette readable by colour-blind readers and in greyscale.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
PART_STYLES = {"cpu": ("CPU", "#0072B2"), "gpu": ("GPU", "#E69F00"), "ram": ("RAM", "#009E73")}


def style() -> dict:
    return {
        "font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "xtick.labelsize": 6, "ytick.labelsize": 6,
        "legend.fontsize": 6, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
        "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "lines.linewidth": 1.0,
        "lines.markersize": 4, "axes.grid": True, "grid.linewidth": 0.4, "grid.alpha": 0.35,
        "font.family": "DejaVu Sans", "savefig.dpi": DPI, "figure.dpi": DPI, "axes.titleweight": "bold",
        "pdf.fonttype": 42,
    }


def new_figure(height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(COLUMN_WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.03, hspace=0.04, wspace=0.03)
    return fig


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": "sepcost report"})
    return path


def energy_unit(values: Iterable[float]) -> tuple[str, float]:
    """kWh, or Wh when every value is below 1 kWh (a CPU-sized study), and the factor from kWh."""
    magnitudes = [abs(v) for v in values if math.isfinite(v)]
    return ("Wh", 1000.0) if magnitudes and max(magnitudes) < 1.0 else ("kWh", 1.0)


def method_name(method: str) -> str:
    """`CodeCarbon`, `Green Algorithms`: the method's label without how it gets its figure."""
    return METHOD_LABELS[method].split(" (")[0]


def energy_text(kwh: float) -> str:
    """An amount of energy in its unit, e.g. `1.40e-4 Wh`, `2,310 kWh`."""
    unit, factor = energy_unit([kwh])
    return f"{amount(kwh * factor)} {unit}"


def sdr_choice(study: Study, names: list[str]) -> tuple[str, str]:
    """The SDR a figure shows: test cSDR where every evaluated variant has it, else test uSDR, else the
    validation uSDR when nothing is evaluated. Returns (key prefix, axis label)."""
    evaluated = [e for v in names for e in _metrics(study, v, "csdr")]
    if evaluated and all(finite(e.get(score_key("csdr"))) for e in evaluated):
        return "csdr", "test cSDR"
    if evaluated:
        return "usdr", "test uSDR"
    return "valid_usdr", "validation uSDR"


def _metrics(study: Study, v: str, key: str) -> list[dict]:
    """The metrics an SDR is read from: the variant's runs (training's for the validation uSDR), or a
    reference row's evaluation."""
    if v in REFERENCE_ROWS:
        return [study.eval[v]] if v in study.eval else []
    return study.metrics(v, TRAINING if key == "valid_usdr" else EVALUATION)


def sdr_of(study: Study, v: str, key: str, target: str = AVG) -> float:
    """A variant's SDR (`key`: valid_usdr, usdr or csdr), the mean over its seeds."""
    return summarize(_values(study, v, key, target)).mean


def sdr_std(study: Study, v: str, key: str, target: str = AVG) -> float:
    """The standard deviation of a variant's SDR over its seeds (NaN for one)."""
    return summarize(_values(study, v, key, target)).std


def _values(study: Study, v: str, key: str, target: str) -> list[float]:
    return [float(m[score_key(key, target)]) for m in _metrics(study, v, key) if finite(m.get(score_key(key, target)))]


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


def log_axis(axis, dense: bool = False) -> None:
    """A log axis labelled with plain numbers at 1, 2 and 5 of each decade (more when `dense`, for
    a range narrower than a decade or so)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    subs = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0) if dense else (1.0, 2.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def pad_limits(ax, xs: list[float], ys: list[float], log: bool) -> None:
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


def empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=6, color="0.35")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def line_styles(n: int) -> list[tuple[str, Any]]:
    styles = ["-", (0, (4, 1.5)), (0, (1, 1)), (0, (5, 1, 1, 1))]
    return [(PALETTE[i % 7], styles[(i // 7) % len(styles)]) for i in range(n)]


