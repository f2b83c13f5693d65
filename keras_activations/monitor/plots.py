"""The depth-profile picture of a record, drawn with NumPy.

Three stacked panels with one bar per watched layer, input at the left:

1. gradient norm on a log scale (blue; grey lines at every power of ten),
2. dead fraction from 0 to 1 (red; grey lines at 0.25, 0.5, 0.75),
3. activation mean, around a zero line (green; bars up for positive).

A missing value (a layer without weights or without an activation site) is
a short grey tick. `depth_profiles` draws the pictures of many records at
once with whole-array NumPy operations (as palette indices, which encode
to a palette PNG about 2x faster than RGB), so a picture is written with
every record; `plot_record` draws the same figure with matplotlib, with
labels, for notebooks and reports.
"""

import numpy as np

_BG = (255, 255, 255)
_GRID = (220, 220, 220)
_AXIS = (90, 90, 90)
_MISSING = (170, 170, 170)
_COLORS = ((31, 119, 180), (214, 39, 40), (44, 160, 44))
_SPACE = 4  # white rows between panels
# The picture's colours, by index (`depth_profiles`): a palette PNG of these
# encodes about 2x faster than the RGB picture (`events.png`), and is smaller.
PALETTE = np.array((_BG, _GRID, _AXIS, _MISSING) + _COLORS, np.uint8)
_BG_I, _GRID_I, _AXIS_I, _MISSING_I, _COLOR_I = 0, 1, 2, 3, 4


def _panel_geometry(values, kind, height):
    """Per record of one panel: `(grid, base, top)`: a `[B, height]` mask
    of its grid rows, its axis row `[B]` and each bar's unrounded top
    `[B, n]` (rows count down from 0 at the top)."""
    b = values.shape[0]
    rows = np.arange(height)
    present = np.isfinite(values)
    grid = np.zeros((b, height), bool)
    if kind == "log":
        pos = present & (values > 0)
        logs = np.log10(np.where(pos, values, 1.0))
        some = pos.any(axis=1)
        lo = np.where(some, np.floor(np.min(logs, axis=1, where=pos, initial=np.inf)), -1.0)
        hi = np.where(some, np.ceil(np.max(logs, axis=1, where=pos, initial=-np.inf)), 0.0)
        hi = np.where(hi == lo, lo + 1.0, hi)
        span = (hi - lo)[:, None]
        powers = lo[:, None] + np.arange(int(np.max(hi - lo, initial=0)) + 1)[None, :]
        at = np.round((hi[:, None] - powers) / span * (height - 1)).astype(np.int64)
        record, k = np.nonzero(powers <= hi[:, None])
        grid[record, at[record, k]] = True
        top = np.where(pos, (hi[:, None] - logs) / span * (height - 1), height - 1)
        base = np.full(b, height - 1)
    elif kind == "fraction":
        for f in (0.25, 0.5, 0.75):
            grid[:, int(round((1 - f) * (height - 1)))] = True
        top = (1 - np.clip(values, 0.0, 1.0)) * (height - 1)
        base = np.full(b, height - 1)
    else:
        scale = np.max(np.abs(values), axis=1, where=present, initial=1e-12)
        base = np.full(b, (height - 1) // 2)
        top = base[:, None] - values / scale[:, None] * base[:, None]
    return grid, base, top


def depth_profiles(
    gradient_norm, dead_fraction, activation_mean, bar=16, gap=6, height=64
):
    """Draws the depth profiles of many records at once, as palette indices.

    Args:
        gradient_norm: `[records, layers]` values in depth order, NaN where
            a value is missing.
        dead_fraction: Like `gradient_norm`.
        activation_mean: Like `gradient_norm`.
        bar: Bar width in pixels.
        gap: Gap between bars in pixels.
        height: Height of each of the three panels in pixels.

    Returns:
        A `uint8` array `[records, 3 * height + 8, width]` of indices into
        `PALETTE` (`width` is `max(gap + layers * (bar + gap), 64)`).
    """
    panels = [
        np.asarray(v, np.float64).reshape(np.shape(gradient_norm))
        for v in (gradient_norm, dead_fraction, activation_mean)
    ]
    b, n = panels[0].shape
    width = max(gap + max(n, 1) * (bar + gap), 64)
    out = np.full((b, 3 * height + 2 * _SPACE, width), _BG_I, np.uint8)  # spacers
    rows = np.arange(height)
    for p, (values, kind) in enumerate(zip(panels, ("log", "fraction", "mean"))):
        grid, base, top = _panel_geometry(values, kind, height)
        present = np.isfinite(values)
        end = np.round(np.where(present, top, 0.0)).astype(np.int64)
        base = base[:, None]
        y0 = np.where(present, np.minimum(end, base), base - 2)[:, None, :]
        y1 = np.where(present, np.maximum(end, base), base)[:, None, :]
        colour = np.where(present, _COLOR_I + p, _MISSING_I)[:, None, :]
        ground = np.where(grid, _GRID_I, _BG_I).astype(np.uint8)
        ground[rows[None, :] == base] = _AXIS_I  # [B, height]
        inside = (rows[None, :, None] >= y0) & (rows[None, :, None] <= y1)
        panel = out[:, p * (height + _SPACE) : p * (height + _SPACE) + height]
        panel[...] = ground[:, :, None]
        if n:  # bar i's columns start at gap + i * (bar + gap)
            slots = panel[:, :, gap : gap + n * (bar + gap)]
            slots = slots.reshape(b, height, n, bar + gap)  # a view
            slots[..., :bar] = np.where(inside, colour, ground[:, :, None])[..., None]
    return out


def depth_profile_values(
    gradient_norm, dead_fraction, activation_mean, bar=16, gap=6, height=64
):
    """Draws the depth profile of one record from per-layer values.

    Args:
        gradient_norm: One value per layer in depth order, `None` or NaN
            where missing.
        dead_fraction: Like `gradient_norm`.
        activation_mean: Like `gradient_norm`.
        bar: Bar width in pixels.
        gap: Gap between bars in pixels.
        height: Height of each of the three panels in pixels.

    Returns:
        A `uint8` RGB array of shape `(3 * height + 8, width, 3)`.
    """
    values = [
        [[np.nan if v is None else float(v) for v in panel]]
        for panel in (gradient_norm, dead_fraction, activation_mean)
    ]
    return PALETTE[depth_profiles(*values, bar=bar, gap=gap, height=height)[0]]


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
