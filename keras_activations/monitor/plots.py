"""The depth-profile picture of a record: one row per layer, drawn with NumPy.

Rows go from the input (top) to the output (bottom); a layer with weights
and its activation site are one row (`depth_rows`). One panel per figure,
side by side, each with its title, its scale at both ends and the value of
every row printed beside its bar:

1. gradient norm, on a log scale (blue; grey lines at every power of ten),
2. dead fraction, from 0 to 1 (red; grey lines at 0.25, 0.5, 0.75),
3. activation mean, around a zero line, scaled to the largest |mean|
   (green),
4. update ratio, on a log scale (purple), when the record holds it.

A missing value (a layer without weights, or without an activation site)
is printed as `-`; a non-finite one as `nan` or `inf`, without a bar.
`depth_profile` draws the picture as palette indices (a palette PNG encodes
about 2x faster than RGB, and is smaller); its text comes from a glyph atlas
(`font.py`). `plot_record` draws the same figure with matplotlib, for
notebooks and reports.
"""

import math

import numpy as np

from keras_activations.monitor import font

# (record key, title, scale) of each panel, left to right; a panel is drawn
# when the record's layers hold its key.
PANELS = (
    ("gradient_norm", "gradient norm", "log"),
    ("dead_fraction", "dead fraction", "fraction"),
    ("activation_mean", "activation mean", "signed"),
    ("update_ratio", "update ratio", "log"),
)
_VALUE_CHARS = {"log": 7, "fraction": 4, "signed": 6}
_NAME_CHARS = (6, 20)  # the label column's width in characters, at least and at most
_BAR_CHARS = 10  # a bar's full length, in character cells
_INK = np.array((35, 35, 35), np.float64)
_WHITE = np.array((255, 255, 255), np.float64)
_GRID = (222, 222, 222)
_AXIS = (110, 110, 110)
_COLORS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))
# Palette: index 0 is the background and 1..7 the text's coverage levels
# (`font.render` returns palette indices), then grid, axis, panel colours.
PALETTE = np.concatenate(
    [
        np.rint(_WHITE + (_INK - _WHITE) * (np.arange(font.LEVELS)[:, None] / (font.LEVELS - 1))),
        np.array((_GRID, _AXIS) + _COLORS, np.float64),
    ]
).astype(np.uint8)
BG, GRID, AXIS, COLOR = 0, font.LEVELS, font.LEVELS + 1, font.LEVELS + 2


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


def _scale(values, kind, length):
    """`(start, end, ground, left label, right label)` of a panel: each
    row's bar as pixel columns `[start, end)` of its `length`, the panel's
    background row (grid and axis) and its scale's end labels."""
    v = np.array([np.nan if x is None else x for x in values], np.float64)
    finite = np.isfinite(v)
    ground = np.full(length, BG, np.uint8)
    start = np.zeros(len(v), np.int64)
    if kind == "log":
        positive = finite & (v > 0)
        logs = np.log10(np.where(positive, v, 1.0))
        lo = np.floor(logs[positive].min()) if positive.any() else -1.0
        hi = np.ceil(logs[positive].max()) if positive.any() else 0.0
        hi = max(hi, lo + 1.0)
        at = np.rint((np.arange(lo + 1, hi) - lo) / (hi - lo) * (length - 1)).astype(np.int64)
        ground[at] = GRID
        ground[0] = AXIS
        end = np.where(positive, np.maximum(np.rint((logs - lo) / (hi - lo) * length), 1), 0)
        labels = (f"1e{int(lo)}", f"1e{int(hi)}")
    elif kind == "fraction":
        ground[[round(f * (length - 1)) for f in (0.25, 0.5, 0.75)]] = GRID
        ground[0] = AXIS
        end = np.where(finite, np.rint(np.clip(v, 0.0, 1.0) * length), 0)
        labels = ("0", "1")
    else:
        top = np.abs(v[finite]).max() if finite.any() else 0.0
        top = top if top > 0 else 1.0
        half = length // 2
        ground[half] = AXIS
        tip = half + np.rint(np.where(finite, v, 0.0) / top * half).astype(np.int64)
        start = np.where(tip < half, tip, half + 1)  # the zero line stays visible
        end = np.where(tip < half, half, tip + 1)
        word = f"{top:.2g}"
        labels = ("", "+/-" + (word if "e" not in word else _sci(top)))
    return start.astype(np.int64), end.astype(np.int64), ground, labels


def _place(line, column, text):
    """Writes `text` into the character list `line` from `column` on."""
    line[column : column + len(text)] = text


def depth_profile(record, rows=None):
    """Draws a record's depth profile as indices into `PALETTE`.

    Every text of the picture sits on a grid of character cells: its lines
    (title, panel titles, scales, one line per row) are rendered in one
    `font.render` call, then the grid lines and bars are drawn over the
    panels' bar columns.

    Args:
        record: One `GradientMonitor` record.
        rows: `depth_rows` of the monitored model, or `None` to pair the
            record's layers by their figures (`record_rows`).

    Returns:
        A `uint8` array `[height, width]`: 16 pixels a line (3 header lines,
        then one per row), about 500 pixels wide with three panels.

    Example:

    >>> pixels = depth_profile(monitor.history[-1])
    >>> rgb = PALETTE[pixels]
    """
    rows = record_rows(record) if rows is None else list(rows)
    entries = list(record["layers"].values())
    panels = [p for p in PANELS if any(p[0] in e for e in entries)]
    n = len(rows)
    names = min(max([len(label) for label, _, _ in rows] + [_NAME_CHARS[0]]), _NAME_CHARS[1])
    columns = []  # (first character column of the bar, panel)
    column = names + 2
    for panel in panels:
        columns.append((column, panel))
        column += _BAR_CHARS + _VALUE_CHARS[panel[2]] + 2
    width = max(column, 40)
    lines = [[" "] * width for _ in range(3 + n)]
    _place(lines[0], 1, f"step {record['step']}  epoch {record['epoch']}  (input at the top)")
    _place(lines[1], 1, "layer")
    for k, (label, _, _) in enumerate(rows):
        _place(lines[3 + k], 1, label if len(label) <= names else label[: names - 1] + "~")
    drawn = []
    for column, (key, title, kind) in columns:
        values = row_values(record, rows, key)
        start, end, ground, (left, right) = _scale(values, kind, _BAR_CHARS * font.cell()[1])
        _place(lines[1], column, title)
        _place(lines[2], column, left)
        _place(lines[2], column + _BAR_CHARS - len(right), right)
        chars = _VALUE_CHARS[kind]
        for k, v in enumerate(values):
            text = _text(v, kind)[:chars]
            _place(lines[3 + k], column + _BAR_CHARS + 1 + chars - len(text), text)
        drawn.append((column, PANELS.index((key, title, kind)), start, end, ground))
    ch, cw = font.cell()
    row_h = ch + 3
    canvas = np.zeros((3 + n, row_h, width * cw), np.uint8)  # BG is 0
    canvas[:, 1 : 1 + ch] = font.render(["".join(line) for line in lines], width, "left")
    bar = _BAR_CHARS * cw
    cols = np.arange(bar)
    for column, index, start, end, ground in drawn:
        x = column * cw
        canvas[3:, :, x : x + bar] = ground
        inside = (cols >= start[:, None]) & (cols < end[:, None])
        canvas[3:, 3 : row_h - 3, x : x + bar] = np.where(inside, np.uint8(COLOR + index), ground)[:, None, :]
    return canvas.reshape((3 + n) * row_h, width * cw)


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
        colour = np.asarray(_COLORS[PANELS.index((key, title, kind))]) / 255
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
