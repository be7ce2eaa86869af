"""Band-split recipes: from nominal bandwidths in Hz to band widths in STFT bins.

A recipe is a list of (count, bandwidth_hz) from 0 Hz upwards; a last band takes every remaining bin
up to Nyquist. A bandwidth becomes floor(hz * n_bins / (sr / 2)) bins (the replication's rule), so
band edges sit slightly below the nominal ones and hold for any sample rate and n_fft.
"""
from __future__ import annotations

RECIPES: dict[str, list[tuple[int, int]]] = {
    "vocals": [(10, 100), (12, 250), (8, 500), (8, 1000), (2, 2000)],
    "bass": [(10, 50), (5, 100), (6, 500), (4, 1000), (4, 2000)],
    "drums": [(20, 50), (10, 100), (8, 250), (8, 500), (8, 1000)],
    # One split shared by all targets (joint models, BSCNN): drums' recipe, then 2 x 2000 Hz.
    "joint": [(20, 50), (10, 100), (8, 250), (8, 500), (8, 1000), (2, 2000)],
}
RECIPES["other"] = RECIPES["vocals"]


def band_widths(recipe: str, sample_rate: int, n_fft: int) -> list[int]:
    """Widths in bins of the bands of `recipe` ("vocals", "bass", "drums", "other" or "joint").

    The widths sum to n_fft // 2 + 1. At 44.1 kHz / 2048 the vocals recipe gives
    4 x10, 11 x12, 23 x8, 46 x8, 92 x2 and a last band of 117 bins (41 bands). At low sample rates
    or small n_fft a band is at least one bin, and bands past Nyquist are dropped.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown band-split recipe {recipe!r} (expected one of {', '.join(RECIPES)})")
    n_bins = n_fft // 2 + 1
    widths: list[int] = []
    used = 0
    for count, hz in RECIPES[recipe]:
        width = max(1, (hz * n_bins * 2) // sample_rate)  # floor(hz * n_bins / (sr / 2)), exact
        for _ in range(count):
            if used >= n_bins:
                return widths
            width_here = min(width, n_bins - used)
            widths.append(width_here)
            used += width_here
    if used < n_bins:
        widths.append(n_bins - used)
    return widths


def runs(widths: list[int]) -> list[tuple[int, int, int]]:
    """Consecutive bands of equal width as (first_bin, width, count).

    Bands of one run share every tensor shape, so a run is computed as one batched matmul instead
    of `count` small layers; the recipes have 6 or 7 runs for 30 to 57 bands.
    """
    out: list[tuple[int, int, int]] = []
    start = 0
    for w in widths:
        if out and out[-1][1] == w:
            first, width, count = out[-1]
            out[-1] = (first, width, count + 1)
        else:
            out.append((start, w, 1))
        start += w
    return out
