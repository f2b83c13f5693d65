"""The record: the one schema `history`, the event files and the CSV derive
from (docs/CONTRACTS.md, "GradientMonitor history").

`Layout.record` turns what `State.read` returned for a window into a
record. Each figure is computed once, here, in float64 NumPy.
"""

import numpy as np

# The per-layer figures of a record that are scalars (TensorBoard tag
# `<key>/<layer>`, CSV columns), in order.
LAYER_SCALARS = (
    "gradient_norm",
    "gradient_cosine",
    "dead_units",
    "dead_fraction",
    "saturation",
    "activation_mean",
    "activation_std",
)


def edges(lohi, bins):
    """`bins + 1` equal-width edges over `[lo, hi]`; the last is `hi`."""
    lo, hi = (float(v) for v in lohi)
    out = lo + (hi - lo) * (np.arange(bins + 1, dtype=np.float64) / bins)
    out[-1] = hi
    return out


def _histogram(counts, lohi):
    counts = np.asarray(counts)
    return {"edges": edges(lohi, counts.shape[-1]), "counts": np.rint(counts).astype(np.int64)}


def _norm(sumsq):
    sumsq = float(sumsq)
    return float(np.sqrt(sumsq)) if np.isfinite(sumsq) else float("nan")


def _cosine(dot, prev_sq, cur_sq):
    denom = np.sqrt(prev_sq * cur_sq)
    if not (denom > 0 and np.isfinite(denom) and np.isfinite(dot)):
        return None
    return float(dot / denom)


def _site_figures(site, fired, stats):
    """`units, dead_units, dead_fraction, saturation, activation_mean,
    activation_std` of a site over a window."""
    units = int(site.units * (site.pieces or 1))
    saturated, pairs, s1, s2 = (float(v) for v in stats)
    out = {"units": units}
    if site.track_dead:
        dead = int(np.sum(np.asarray(fired) <= 0))
        out["dead_units"] = dead
        out["dead_fraction"] = dead / units if units else 0.0
    if pairs > 0:
        mean = s1 / pairs
        out["activation_mean"] = mean
        with np.errstate(invalid="ignore"):
            out["activation_std"] = float(np.sqrt(max(s2 / pairs - mean * mean, 0.0)))
        if site.track_dead and site.pieces is None:
            out["saturation"] = saturated / pairs
    return out


class Layout:
    """What a record of one `State` holds.

    Args:
        state: The monitor's `state.State`.
        watched: `(name, layer)` pairs of watched layers.
        order: Layer names in depth order (input to output).
    """

    def __init__(self, state, watched, order):
        depth = {name: d for d, name in enumerate(order)}
        self.layer_names = sorted(
            (name for name, _ in watched), key=lambda n: depth.get(n, len(depth))
        )
        self.depth = {n: i for i, n in enumerate(self.layer_names)}
        self.bins = state.bins
        variables = state.variables
        self.variables = [
            (j, i, variables[i][0].path, variables[i][1], int(np.prod(variables[i][0].shape)))
            for j, i in enumerate(state.watched)
        ]
        self.n_variables = len(variables)
        names = dict(watched)
        self.sites = [
            (names_key, s.site)
            for names_key, s in state.sites.items()
        ]
        self.site_names = {}
        layer_name = {id(layer): name for name, layer in watched}
        for key, site in self.sites:
            self.site_names[key] = layer_name.get(key, site.name)
        del names

    def record(self, raw, *, step, epoch, steps, start, prev_valid):
        """The record of a window.

        Args:
            raw: `State.read()`'s arrays.
            step: The record's step label (the window's last step).
            epoch: The epoch of the window's end.
            steps: Steps in the window.
            start: The device step count before the window's first step.
            prev_valid: Whether an earlier record took a gradient snapshot
                (the cosine needs one).
        """
        count = int(raw["count"])

        def label(c):
            return int(step - (count - int(c)))

        applied = int(raw["grad_count"]) > start
        snapshot = applied and int(raw["gsnap_count"]) == int(raw["grad_count"])
        sumsq = np.asarray(raw["sumsq"], np.float64)
        record = {
            "step": int(step),
            "epoch": int(epoch),
            "steps": int(steps),
            "gradient_step": label(raw["grad_count"]) if applied else None,
            "global_norm": _norm(np.sum(sumsq[: self.n_variables])) if applied else None,
            "variables": {},
            "layers": {},
        }
        for name in self.layer_names:
            record["layers"][name] = {
                "depth": self.depth[name],
                "gradient_norm": None,
                "gradient_cosine": None,
                "units": None,
                "dead_units": None,
                "dead_fraction": None,
                "saturation": None,
                "activation_mean": None,
                "activation_std": None,
                "activation_histogram": None,
            }
        per_layer = {}
        for j, i, path, owner, size in self.variables:
            record["variables"][path] = {
                "norm": _norm(sumsq[i]) if applied else None,
                "nonfinite": int(round(float(raw["nonfinite"][i]))),
                "size": size,
                "histogram": _histogram(raw["ghist"][j], raw["glohi"][j]) if snapshot else None,
            }
            if owner in record["layers"]:
                per_layer.setdefault(owner, []).append((j, i))
        for name, items in per_layer.items():
            entry = record["layers"][name]
            if applied:
                entry["gradient_norm"] = _norm(sum(sumsq[i] for _, i in items))
            if snapshot and prev_valid:
                dot, prev_sq, cur_sq = (
                    float(np.sum(raw["dots"][r][[j for j, _ in items]])) for r in range(3)
                )
                entry["gradient_cosine"] = _cosine(dot, prev_sq, cur_sq)
        last = int(raw["snap_count"]) == count
        for key, site in self.sites:
            entry = record["layers"].get(self.site_names[key])
            if entry is None:
                continue
            entry.update(_site_figures(site, raw[f"fired/{key}"], raw[f"stats/{key}"]))
            if last:
                entry["activation_histogram"] = _histogram(raw[f"hist/{key}"], raw[f"lohi/{key}"])
        return record
