"""The depth-profile picture of a record, drawn with NumPy.

Three stacked panels with one bar per watched layer, input at the left:

1. gradient norm on a log scale (blue; grey lines at every power of ten),
2. dead fraction from 0 to 1 (red; grey lines at 0.25, 0.5, 0.75),
3. activation mean, around a zero line (green; bars up for positive).

A missing value (a layer without weights or without an activation site) is
a short grey tick. Drawing with NumPy (as palette indices) and encoding a
palette PNG cost about 0.2 ms, so a picture is written with every
record; `plot_record` draws the same figure with matplotlib, with labels,
for notebooks and reports.
"""

import math

import numpy as np

_BG = (255, 255, 255)
_GRID = (220, 220, 220)
_AXIS = (90, 90, 90)
_MISSING = (170, 170, 170)
_COLORS = ((31, 119, 180), (214, 39, 40), (44, 160, 44))
_SPACE = 4  # white rows between panels
# The picture's colours, by index (`draw_indexed`): a palette PNG of these
# encodes about 2x faster than the RGB picture (`events.png`), and is smaller.
PALETTE = np.array((_BG, _GRID, _AXIS, _MISSING) + _COLORS, np.uint8)
_BG_I, _GRID_I, _AXIS_I, _MISSING_I, _COLOR_I = 0, 1, 2, 3, 4


def _panel(values, kind, width, height, bar, gap):
    """The pixel geometry of one panel: `(height, width, bar, grid rows,
    axis row, bars)`, each bar `(x0, y0, y1, colour)` with colour -1 for a
    missing value's tick."""
    present = [v for v in values if v is not None and math.isfinite(v)]
    grid = []
    if kind == "log":
        logs = [math.log10(v) for v in present if v > 0]
        lo = math.floor(min(logs)) if logs else -1
        hi = math.ceil(max(logs)) if logs else 0
        if hi == lo:
            hi = lo + 1
        for k in range(lo, hi + 1):
            grid.append(int(round((hi - k) / (hi - lo) * (height - 1))))

        def top(v):
            if v <= 0:
                return height - 1
            return (hi - math.log10(v)) / (hi - lo) * (height - 1)

        base = height - 1
    elif kind == "fraction":
        for f in (0.25, 0.5, 0.75):
            grid.append(int(round((1 - f) * (height - 1))))

        def top(v):
            return (1 - min(max(v, 0.0), 1.0)) * (height - 1)

        base = height - 1
    else:
        scale = max([abs(v) for v in present] + [1e-12])
        base = (height - 1) // 2

        def top(v):
            return base - v / scale * base

    base = int(base)
    colour = {"log": 0, "fraction": 1, "mean": 2}[kind]
    bars = []
    for i, v in enumerate(values):
        x0 = gap + i * (bar + gap)
        if v is None or not math.isfinite(v):
            bars.append((x0, base - 2, base, -1))
            continue
        y0, y1 = sorted((int(round(top(v))), base))
        bars.append((x0, y0, y1, colour))
    return (height, width, bar, tuple(grid), base, tuple(bars))


def _draw_panel(layout):
    height, width, bar, grid, base, bars = layout
    img = np.full((height, width), _BG_I, np.uint8)
    img[list(grid), :] = _GRID_I
    img[base, :] = _AXIS_I
    for x0, y0, y1, colour in bars:
        img[y0 : y1 + 1, x0 : x0 + bar] = _MISSING_I if colour < 0 else _COLOR_I + colour
    return img


def depth_profile_layout(
    gradient_norm, dead_fraction, activation_mean, bar=16, gap=6, height=64
):
    """The depth profile's pixel geometry: per panel its grid rows, axis
    row and bars, which `draw` and `draw_indexed` paint. Arguments as for
    `depth_profile_values`."""
    n = max(len(gradient_norm), 1)
    width = max(gap + n * (bar + gap), 64)
    return tuple(
        _panel([None if v is None else float(v) for v in values], kind, width, height, bar, gap)
        for values, kind in (
            (gradient_norm, "log"),
            (dead_fraction, "fraction"),
            (activation_mean, "mean"),
        )
    )


def draw_indexed(layout):
    """The picture of a `depth_profile_layout` as `uint8` indices into
    `PALETTE`, shape `[height, width]`."""
    panels = []
    for panel in layout:
        panels.append(_draw_panel(panel))
        panels.append(np.full((_SPACE, panel[1]), _BG_I, np.uint8))
    return np.concatenate(panels[:-1], axis=0)


def draw(layout):
    """The `uint8` RGB picture `[height, width, 3]` of a
    `depth_profile_layout`."""
    return PALETTE[draw_indexed(layout)]


def depth_profile_values(
    gradient_norm, dead_fraction, activation_mean, bar=16, gap=6, height=64
):
    """Draws the depth profile from per-layer values in depth order.

    Args:
        gradient_norm: One value per layer, `None` or NaN where missing.
        dead_fraction: Like `gradient_norm`.
        activation_mean: Like `gradient_norm`.
        bar: Bar width in pixels.
        gap: Gap between bars in pixels.
        height: Height of each of the three panels in pixels.

    Returns:
        A `uint8` array of shape `(3 * height + 8, width, 3)`.
    """
    return draw(
        depth_profile_layout(
            gradient_norm, dead_fraction, activation_mean, bar, gap, height
        )
    )


def plot_record(record, axes=None):
    """Draws a record's depth profile with matplotlib.

    Args:
        record: One `GradientMonitor` record.
        axes: Three matplotlib axes, or `None` to make a new figure.

    Returns:
        The matplotlib figure.

    Example:

    >>> fig = plot_record(monitor.history[-1])
    >>> fig.savefig("depth.png")
    """
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(3, 1, sharex=True, figsize=(6, 6))
    else:
        fig = axes[0].figure
    items = sorted(record["layers"].items(), key=lambda kv: kv[1]["depth"])
    names = [name for name, _ in items]
    x = np.arange(len(items))

    def values(key):
        return [np.nan if e[key] is None else e[key] for _, e in items]

    axes[0].bar(x, values("gradient_norm"), color="tab:blue")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("gradient norm")
    axes[1].bar(x, values("dead_fraction"), color="tab:red")
    axes[1].set_ylim(0, 1)
    axes[1].set_ylabel("dead fraction")
    axes[2].bar(x, values("activation_mean"), color="tab:green")
    axes[2].axhline(0, color="grey", lw=0.8)
    axes[2].set_ylabel("activation mean")
    axes[2].set_xticks(x, names, rotation=45, ha="right")
    axes[0].set_title(f"step {record['step']} (epoch {record['epoch']})")
    fig.tight_layout()
    return fig
