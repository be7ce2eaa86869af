"""Where a scatter plot's point labels go: each label at the spot around its point that overlaps
the least with the other labels, the points, a line to keep clear of and the axes' edges, with a
leader line when it had to move away. Imports matplotlib through the axes it is given.
"""
from __future__ import annotations

import math


def place_labels(ax, xy: list[tuple[float, float]], labels: list[str], fontsize: float = 5.0,
                 priority: list[int] | None = None, avoid: list[tuple[float, float]] = (),
                 segments: list[tuple] = (),
                 markers: list[tuple[float, float]] = ()) -> list:
    """Label every point at the candidate position around it that overlaps the least with the other
    labels, the points (and the unlabelled `markers`), the `avoid` points (e.g. samples along a
    line), the `segments` ((a, b) or (a, b, weight): error bars, lines joining points; what of them
    a label would cover) and the axes' edges; labels are placed greedily in `priority` order, then
    each is moved again given all the others. A label pushed away from its point gets a leader
    line. The axes' limits must be final."""
    fig = ax.figure
    fig.draw_without_rendering()  # the layout engine places the axes first
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72.0
    pts = [tuple(ax.transData.transform(p)) for p in xy]
    r_mark = 4.0 * scale  # a marker and a little room around it, so no label sits by another's point
    marks = [(x - r_mark, y - r_mark, x + r_mark, y + r_mark)
             for x, y in [*pts, *(ax.transData.transform(p) for p in markers)]]
    r_avoid = 0.8 * scale
    avoid_boxes = [(x - r_avoid, y - r_avoid, x + r_avoid, y + r_avoid)
                   for x, y in (ax.transData.transform(p) for p in avoid)]
    lines = [(tuple(ax.transData.transform(seg[0])), tuple(ax.transData.transform(seg[1])),
              seg[2] if len(seg) > 2 else 1.0) for seg in segments]
    frame = ax.get_window_extent(renderer)
    angles = [math.radians(a) for a in (10, 45, 80, 100, 135, 170, 190, 225, 260, 280, 315, 350, 0, 180, 90, 270)]
    radii = (3.5, 7.0, 11.0, 16.0, 22.0, 29.0)
    probe = ax.text(0, 0, "", fontsize=fontsize, transform=None)
    sizes = []
    for text in labels:
        probe.set_text(text)
        ext = probe.get_window_extent(renderer)
        sizes.append((ext.width + 2.0 * scale, ext.height + 0.8 * scale))  # a little air around each
    probe.remove()

    def area(a, b) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    def candidates(i: int):
        w, h = sizes[i]
        px, py = pts[i]
        for r_i, r in enumerate(radii):
            for a in angles:
                cx, cy = math.cos(a), math.sin(a)
                ox, oy = cx * r * scale, cy * r * scale * 0.75
                # the label's nearest corner or edge midpoint touches the candidate position
                x0 = px + ox - w * (0.5 - 0.5 * _sign(cx, 0.3))
                y0 = py + oy - h * (0.5 - 0.5 * _sign(cy, 0.3))
                yield r_i, ox, oy, cx, cy, (x0, y0, x0 + w, y0 + h)

    def crossing(a, b, box) -> bool:  # does the segment a-b pass through box?
        for k in range(1, 12):
            x, y = a[0] + (b[0] - a[0]) * k / 12, a[1] + (b[1] - a[1]) * k / 12
            if box[0] <= x <= box[2] and box[1] <= y <= box[3]:
                return True
        return False

    def cost(i: int, r_i: int, box, others: dict[int, tuple]) -> float:
        w, h = sizes[i]
        c = sum(area(box, o) for j, o in others.items() if j != i) * 4
        c += sum(area(box, m) for j, m in enumerate(marks) if j != i) * 3
        c += sum(area(box, b) for b in avoid_boxes) * 1.5
        c += sum(_covered(box, a, b) * weight for a, b, weight in lines) * h
        c += ((max(0, frame.x0 - box[0]) + max(0, box[2] - frame.x1)) * h
              + (max(0, frame.y0 - box[1]) + max(0, box[3] - frame.y1)) * w) * 6
        c += r_i * r_i * 0.03 * w * h  # near the point is easier to read
        if r_i >= 2:  # a leader line: it should cross no other label and pass by no other point
            anchor = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            c += sum(0.3 * w * h for j, o in others.items() if j != i and crossing(pts[i], anchor, o))
            c += sum(0.1 * w * h for j, m in enumerate(marks) if j != i and crossing(pts[i], anchor, m))
        return c

    order = (priority or []) + [i for i in range(len(xy)) if i not in (priority or [])]
    chosen: dict[int, tuple] = {}
    boxes: dict[int, tuple] = {}
    for sweep in range(3):
        for i in order:
            best = min(candidates(i), key=lambda cand: cost(i, cand[0], cand[5], boxes))
            chosen[i], boxes[i] = best, best[5]
    texts = []
    for i in range(len(xy)):
        r_i, ox, oy, cx, cy, box = chosen[i]
        ha = "left" if _sign(cx, 0.3) > 0 else ("right" if _sign(cx, 0.3) < 0 else "center")
        va = "bottom" if _sign(cy, 0.3) > 0 else ("top" if _sign(cy, 0.3) < 0 else "center")
        arrow = ({"arrowstyle": "-", "lw": 0.35, "color": "0.5", "shrinkA": 0.5, "shrinkB": 2.2}
                 if r_i >= 2 else None)
        texts.append(ax.annotate(labels[i], xy=xy[i], xytext=(ox / scale, oy / scale), textcoords="offset points",
                                 ha=ha, va=va, fontsize=fontsize, arrowprops=arrow, annotation_clip=False,
                                 zorder=5, bbox={"boxstyle": "square,pad=0.08", "fc": "white", "ec": "none",
                                                 "alpha": 0.65}))  # legible over lines and bars
    return texts


def _covered(box: tuple, a: tuple[float, float], b: tuple[float, float]) -> float:
    """The length of the segment a-b inside box (Liang-Barsky clipping)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, a[0] - box[0]), (dx, box[2] - a[0]), (-dy, a[1] - box[1]), (dy, box[3] - a[1])):
        if p == 0:
            if q < 0:
                return 0.0
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return 0.0
    return (t1 - t0) * math.hypot(dx, dy)


def _sign(value: float, dead: float) -> int:
    return 0 if abs(value) < dead else (1 if value > 0 else -1)


def step_samples(xs: list[float], ys: list[float], log: bool, n: int = 24) -> list[tuple[float, float]]:
    """Points along a where="post" step line, for label placement to keep clear of it."""
    out = []
    for (x1, y1), (x2, y2) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        for k in range(n + 1):
            f = k / n
            x = x1 * (x2 / x1) ** f if log and x1 > 0 else x1 + (x2 - x1) * f
            out.append((x, y1))
        out += [(x2, y1 + (y2 - y1) * k / 8) for k in range(1, 8)]
    return out
