"""The depth-profile picture of a record: one row per layer, drawn with NumPy.

Rows go from the input (top) to the output (bottom); a layer with weights
and its activation site are one row (`depth_rows`). One column per figure,
each a *data bar* (as in a spreadsheet): a light bar whose length shows the
value on the column's scale (printed under its title), with the value
printed over it:

1. gradient norm, on a log scale (blue),
2. dead fraction, from 0 to 1 (red),
3. activation mean, left or right of a zero line, scaled to the largest
   |mean| (green),
4. update ratio, on a log scale (purple), when the record holds it.

A missing value (a layer without weights, or without an activation site)
is printed as `-`; a non-finite one as `nan` or `inf`, without a bar. With
compare's layer names the picture is about 340 pixels wide: TensorBoard's
image cards show it at its size. `depth_profile` draws it as palette
indices (a palette PNG encodes about 2x faster than RGB, and is smaller);
its text comes from a glyph atlas (`font.py`). `plot_record` draws the same
figure with matplotlib, for notebooks and reports.
"""

import math

import numpy as np

from keras_activations.monitor import font

# (record key, title, scale) of each panel, left to right; a panel is drawn
# when the record's layers hold its key. Three panels and compare's layer
# names fill the 336 pixels of TensorBoard's image cards, which shrink a
# wider picture until its text is unreadable (a fourth, the update ratio,
# made it 413 pixels): the update ratio has its chart in Custom Scalars.
PANELS = (
    ("gradient_norm", "gradient norm", "log"),
    ("dead_fraction", "dead fraction", "fraction"),
    ("activation_mean", "activation mean", "signed"),
)
_NAME_CHARS = (6, 16)  # the label column's width in characters, at least and at most
_BAR_CHARS = 10  # a column's width, in character cells
_INK = (35, 35, 35)
_BASES = (
    (255, 255, 255),  # background
    (110, 110, 110),  # zero line
    (174, 199, 232),  # the panels' bars, light: the text over them stays dark
    (255, 152, 150),
    (152, 223, 138),
    (197, 176, 213),
)
_DARK = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))  # plot_record's bars
BG, AXIS, COLOR = 0, 1, 2  # bases; a pixel's palette index is base * font.LEVELS + text level
# Palette: for each base colour, its blend towards the ink at each coverage
# level of the text drawn over it (`font.render` gives the levels).
PALETTE = np.rint(
    np.array(_BASES, np.float64)[:, None, :]
    + (np.array(_INK, np.float64) - np.array(_BASES, np.float64)[:, None, :])
    * (np.arange(font.LEVELS) / (font.LEVELS - 1))[None, :, None]
).astype(np.uint8).reshape(-1, 3)


def depth_rows(names, weighted, sites):
    """The rows of the depth profile: each layer with weights together with
    its activation site.

    A layer with weights and an activation (`Dense(activation="relu")`) is
    one row; so is a layer with weights and no activation followed by a
    layer with an activation and no weights (`Dense` then `Activation`).
    Any other layer is a row of its own; a layer with neither is left out.

    Args:
        names: Layer names in depth order (input to output).
        weighted: Names of the layers with watched weights.
        sites: Names of the layers with an activation site.

    Returns:
        A list of `(label, weights, site)`: the row's label, the name of its
        layer with weights and of its layer with the site (`None` for none).

    Example:

    >>> depth_rows(["d1", "act1", "d2"], {"d1", "d2"}, {"act1"})
    [('d1+act1', 'd1', 'act1'), ('d2', 'd2', None)]
    """
    rows = []
    for name in names:
        has_weights, has_site = name in weighted, name in sites
        if not (has_weights or has_site):
            continue
        if has_site and not has_weights and rows and rows[-1][1] is not None and rows[-1][2] is None:
            weights = rows[-1][1]
            rows[-1] = (f"{weights}+{name}", weights, name)
        else:
            rows.append((name, name if has_weights else None, name if has_site else None))
    return rows


def record_rows(record):
    """`depth_rows` from a record alone: a layer has weights when it has a
    gradient norm, an activation site when it has units."""
    items = sorted(record["layers"].items(), key=lambda kv: kv[1]["depth"])
    return depth_rows(
        [name for name, _ in items],
        {name for name, e in items if e.get("gradient_norm") is not None},
        {name for name, e in items if e.get("units") is not None},
    )


def row_values(record, rows, key):
    """One value per row of figure `key` (`None` where missing): of the
    row's layer with weights, else of its layer with the site."""
    layers = record["layers"]
    out = []
    for _, *names in rows:
        value = None
        for name in names:
            if name is not None and layers.get(name, {}).get(key) is not None:
                value = float(layers[name][key])
                break
        out.append(value)
    return out


def _sci(v):
    """`v` in 2 significant digits, as short as it goes: `3.2e-2`, `1.0e3`."""
    mantissa, exponent = f"{v:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _text(v, kind):
    if v is None:
        return "-"
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if kind == "log":
        return "0" if v == 0 else _sci(v)
    if kind == "fraction":
        return f"{v:.2f}"
    return f"{v:+.2f}" if abs(v) < 99.995 else ("+" if v > 0 else "") + _sci(v)


def _range(v):
    """`v` in 2 significant digits for a scale: `0.76`, `12`, `1.2e3`."""
    word = f"{v:.2g}"
    return word if "e" not in word else _sci(v)


def _scale(values, kind, length):
    """`(start, end, axis, label)` of a column: each row's bar as pixel
    columns `[start, end)` of its `length`, the column of its zero line (or
    `None`) and its scale as text."""
    v = np.array([np.nan if x is None else x for x in values], np.float64)
    finite = np.isfinite(v)
    start = np.zeros(len(v), np.int64)
    if kind == "log":
        positive = finite & (v > 0)
        logs = np.log10(np.where(positive, v, 1.0))
        lo = np.floor(logs[positive].min()) if positive.any() else -1.0
        hi = np.ceil(logs[positive].max()) if positive.any() else 0.0
        hi = max(hi, lo + 1.0)
        end = np.where(positive, np.maximum(np.rint((logs - lo) / (hi - lo) * length), 1), 0)
        return start, end.astype(np.int64), None, f"1e{int(lo)}..1e{int(hi)}"
    if kind == "fraction":
        end = np.where(finite, np.rint(np.clip(v, 0.0, 1.0) * length), 0)
        return start, end.astype(np.int64), None, "0..1"
    top = np.abs(v[finite]).max() if finite.any() else 0.0
    top = top if top > 0 else 1.0
    half = length // 2
    tip = half + np.rint(np.where(finite, v, 0.0) / top * half).astype(np.int64)
    start = np.where(tip < half, tip, half + 1)  # the zero line stays visible
    end = np.where(tip < half, half, tip + 1)
    return start, end, half, "+/-" + _range(top)


def _place(line, column, text):
    """Writes `text` into the character list `line` from `column` on."""
    line[column : column + len(text)] = text


def depth_profile(record, rows=None):
    """Draws a record's depth profile as indices into `PALETTE`.

    Every text of the picture sits on a grid of character cells: its lines
    (title, column titles, scales, one line per row) are rendered in one
    `font.render` call over the bars, which are drawn as palette bases.

    Args:
        record: One `GradientMonitor` record.
        rows: `depth_rows` of the monitored model, or `None` to pair the
            record's layers by their figures (`record_rows`).

    Returns:
        A `uint8` array `[height, width]`: 16 pixels a line (4 header lines,
        then one per row), `(label + 11 * columns) * 7` pixels wide, at
        least 259 (336 for three columns and compare's labels,
        `dense_00+act_00`).

    Example:

    >>> pixels = depth_profile(monitor.history[-1])
    >>> rgb = PALETTE[pixels]
    """
    rows = record_rows(record) if rows is None else list(rows)
    entries = list(record["layers"].values())
    panels = [p for p in PANELS if any(p[0] in e for e in entries)]
    n = len(rows)
    names = min(max([len(label) for label, _, _ in rows] + [_NAME_CHARS[0]]), _NAME_CHARS[1])
    width = max(names + (_BAR_CHARS + 1) * len(panels), 37)
    lines = [[" "] * width for _ in range(4 + n)]
    _place(lines[0], 0, f"step {record['step']}  epoch {record['epoch']}  (input at the top)")
    _place(lines[3], 0, "layer")
    for k, (label, _, _) in enumerate(rows):
        _place(lines[4 + k], 0, label if len(label) <= names else label[: names - 1] + "~")
    ch, cw = font.cell()
    row_h = ch + 3
    bar = _BAR_CHARS * cw
    base = np.full((4 + n, row_h, width * cw), BG, np.uint8)
    for p, (key, title, kind) in enumerate(panels):
        column = names + 1 + p * (_BAR_CHARS + 1)
        values = row_values(record, rows, key)
        start, end, axis, scale = _scale(values, kind, bar)
        first, _, second = title.partition(" ")
        _place(lines[1], column, first)
        _place(lines[2], column, second)
        _place(lines[3], column + _BAR_CHARS - len(scale), scale)
        for k, v in enumerate(values):
            text = _text(v, kind)
            _place(lines[4 + k], column + _BAR_CHARS - len(text), text)
        x = column * cw
        inside = (np.arange(bar) >= start[:, None]) & (np.arange(bar) < end[:, None])  # [n, bar]
        block = base[4:, 1 : row_h - 1, x : x + bar]
        block[...] = np.where(inside, np.uint8(COLOR + PANELS.index((key, title, kind))), BG)[:, None, :]
        if axis is not None:
            base[4:, :, x + axis] = AXIS
    text = np.zeros_like(base)
    text[:, 1 : 1 + ch] = font.render(["".join(line) for line in lines], width, "left")
    return (base * font.LEVELS + text).reshape((4 + n) * row_h, width * cw)


def plot_record(record, axes=None, rows=None):
    """Draws a record's depth profile with matplotlib: the panels of
    `depth_profile`, one horizontal bar per row, input at the top.

    Args:
        record: One `GradientMonitor` record.
        axes: One matplotlib axes per panel, or `None` to make a new figure.
        rows: `depth_rows` of the model, or `None` for `record_rows`.

    Returns:
        The matplotlib figure.

    Example:

    >>> fig = plot_record(monitor.history[-1])
    >>> fig.savefig("depth.png")
    """
    import matplotlib.pyplot as plt

    rows = record_rows(record) if rows is None else list(rows)
    entries = list(record["layers"].values())
    panels = [p for p in PANELS if any(p[0] in e for e in entries)]
    if axes is None:
        fig, axes = plt.subplots(
            1, len(panels), sharey=True, figsize=(3 * len(panels), 0.35 * len(rows) + 1.5), squeeze=False
        )
        axes = axes[0]
    else:
        fig = axes[0].figure
    y = np.arange(len(rows))
    for ax, (key, title, kind) in zip(axes, panels):
        values = np.array([np.nan if v is None else v for v in row_values(record, rows, key)], np.float64)
        colour = np.asarray(_DARK[PANELS.index((key, title, kind))]) / 255
        ax.barh(y, np.where(np.isfinite(values), values, np.nan), color=colour)
        if kind == "log":
            ax.set_xscale("log")
        elif kind == "fraction":
            ax.set_xlim(0, 1)
        else:
            ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(title)
    axes[0].set_yticks(y, [label for label, _, _ in rows])
    axes[0].invert_yaxis()
    fig.suptitle(f"step {record['step']} (epoch {record['epoch']})")
    fig.tight_layout()
    return fig
