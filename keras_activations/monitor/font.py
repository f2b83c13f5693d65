"""Text for the monitor's pictures: a monospace glyph atlas, drawn by NumPy
indexing.

The printable ASCII characters are rendered once per process with
matplotlib's FreeType binding in DejaVu Sans Mono (a font matplotlib ships,
so nothing is looked up or downloaded), antialiased, and cut into cells of
one advance each. A string is then the cells of its characters side by side:
many strings of one width are one fancy-indexing operation, about 100x
faster than rendering each string with FreeType (0.5 ms a string here).
"""

import functools
import os

import numpy as np

SIZE_POINTS = 8.5  # at 96 dpi: 7-pixel cells, 13 pixels high
DPI = 96
LEVELS = 8  # coverage levels of the antialiased glyphs: 0 (none) .. 7 (ink)
_FIRST, _LAST = 32, 126  # " " .. "~"


@functools.lru_cache(maxsize=None)
def atlas():
    """The glyphs of characters 32..126 as coverage levels.

    Returns:
        A `uint8` array `[95, height, width]` of values `0..LEVELS - 1`
        (`width` is the font's advance: 7 pixels).
    """
    import matplotlib
    from matplotlib import ft2font

    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSansMono.ttf")
    font = ft2font.FT2Font(path)
    font.set_size(SIZE_POINTS, DPI)
    advance = int(round(font.load_char(ord("0")).horiAdvance / 64))
    chars = [chr(c) for c in range(_FIRST, _LAST + 1)]
    # Every character between spaces: an overhang of its ink (rare at this
    # size) falls on a space, not on the next character's cell.
    font.set_text("  " + " ".join(chars), 0.0)
    font.draw_glyphs_to_bitmap(antialiased=True)
    image = np.asarray(font.get_image(), np.uint16)
    width = (2 * len(chars) + 1) * advance
    if image.shape[1] < width:
        image = np.pad(image, ((0, 0), (0, width - image.shape[1])))
    cells = np.stack([image[:, (2 + 2 * k) * advance : (3 + 2 * k) * advance] for k in range(len(chars))])
    return ((cells * (LEVELS - 1) + 127) // 255).astype(np.uint8)


def cell():
    """`(height, width)` of one character in pixels."""
    return atlas().shape[1:]


def render(strings, width, align="right"):
    """Strings of `width` characters (padded, or cut at the end), as
    coverage levels.

    Args:
        strings: Sequence of `str`; characters outside printable ASCII are
            drawn as `?`.
        width: Characters per string.
        align: `"right"` or `"left"`: where a shorter string goes.

    Returns:
        A `uint8` array `[len(strings), height, width * cell width]`.
    """
    glyphs = atlas()
    n = len(strings)
    pad = str.rjust if align == "right" else str.ljust
    text = "".join(pad(s, width)[:width] for s in strings)
    codes = np.frombuffer(text.encode("ascii", "replace"), np.uint8).reshape(n, width)
    codes = np.clip(codes.astype(np.int64) - _FIRST, 0, _LAST - _FIRST)
    h, w = glyphs.shape[1:]
    return glyphs[codes].transpose(0, 2, 1, 3).reshape(n, h, width * w)
