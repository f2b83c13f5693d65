"""The figures of a record: read from the device, computed on the host.

Once per record `GradientMonitor` calls a `RecordProgram`:

1. a `tf.function` (in cross-replica context, not XLA) reads and resets the
   step accumulators (`DeviceState.read_and_reset`) and returns their raw
   values in ONE float64 vector (one device-to-host copy). It only reads and
   resets, about 80 graph nodes for an 8-layer MLP: the executor's cost per
   node, not the arithmetic, is what a record program costs on a CPU (the
   program that computed the figures on the device had 670 nodes and took
   2.5 times as long). When the window's snapshot step already read and
   reset them (`DeviceState.finalizes`: one step per execution, windows of
   known length, one device), it hands them over with its logs and no
   program runs;
2. NumPy computes every figure of the record from them in float64, a few
   vectorized operations for all variables and layers at once: norms, the
   cosine with the previous record, dead units, saturation, activation mean
   and standard deviation, histogram edges (`RecordProgram.figures`), packed
   in one vector.

The host writes the events from that vector (`write_events`, see `events`)
and unpacks a history record from it only when `GradientMonitor.history`
is read (`record`). What is written and what `history` holds are the same
numbers.
"""

import math

import numpy as np
import tensorflow as tf

from keras_activations.monitor import plots


def _edges(lohi, bins):
    """`[m, bins + 1]` equal-width edges from `[m, 2]` ranges; the last edge
    is exactly the range's right end."""
    lohi = np.asarray(lohi, np.float64)
    lo, hi = lohi[:, :1], lohi[:, 1:]
    inner = lo + (hi - lo) * (np.arange(bins, dtype=np.float64) / bins)[None, :]
    return np.concatenate([inner, hi], axis=1)


def _membership(rows, cols, pairs):
    """0/1 float64 matrix `[rows, cols]` with ones at `pairs`."""
    m = np.zeros((rows, cols), np.float64)
    for r, c in pairs:
        m[r, c] = 1.0
    return m


class RecordProgram:
    """Computes and packs the figures of one record; unpacks and writes them.

    Args:
        state: The `accumulators.DeviceState` of the fit.
        variables: `(variable, owner name, watched)` triples (`sites.select`).
        watched: `(name, layer)` pairs of watched layers.
        sites: Activation sites with state, keyed by record name.
        order: Layer names in depth order (input to output).
        bins: Histogram buckets.
    """

    def __init__(self, state, variables, watched, sites, order, bins):
        self.state = state
        self.bins = int(bins)
        depth = {name: d for d, name in enumerate(order)}
        self.layer_names = sorted(
            (name for name, _ in watched), key=lambda n: depth.get(n, len(depth))
        )
        self.depth = {n: depth.get(n, len(depth)) for n in self.layer_names}
        # Watched variables, in the order of the accumulators' rows.
        self.var_pos = list(state.watched_pos)
        self.var_paths = [variables[i][0].path for i in self.var_pos]
        self.var_sizes = [
            int(np.prod(variables[i][0].shape)) if len(variables[i][0].shape) else 1
            for i in self.var_pos
        ]
        owners = [variables[i][1] for i in self.var_pos]
        self.grad_layers = [n for n in self.layer_names if n in set(owners)]
        self._owner_matrix = _membership(
            len(self.grad_layers),
            len(self.var_pos),
            [
                (self.grad_layers.index(o), j)
                for j, o in enumerate(owners)
                if o in self.grad_layers
            ],
        )
        self.n_variables = len(variables)
        self.site_names = [n for n in self.layer_names if n in sites]
        self.sites = [sites[n] for n in self.site_names]
        self.units = [
            s.units if s.pieces is None else s.units * s.pieces for s in self.sites
        ]
        self.tracked = [i for i, s in enumerate(self.sites) if s.track_dead]
        self._variable_tags = [f"gradient_norm/{p}" for p in self.var_paths] + [
            f"nonfinite_gradients/{p}" for p in self.var_paths
        ]
        self._histogram_tags = tuple(
            [f"gradients/{p}" for p in self.var_paths]
            + [f"activations/{n}" for n in self.site_names]
        )
        self.layout = None
        self._fn = None
        self._plan = self._site_plan()

    # ---- device -------------------------------------------------------------

    def __call__(self, window_start, prev_valid, raw=None):
        """Reads and resets the accumulators; returns the record's figures
        packed in a NumPy vector (`unpack` gives them by key).

        Args:
            window_start: Device step count when the window began.
            prev_valid: Whether an earlier record took a snapshot (the
                cosine needs one).
            raw: The raw accumulators the window's snapshot step already
                read and reset (`DeviceState.finalizes`), if it did; else
                the record program reads them.
        """
        if raw is None:
            if self._fn is None:
                # Not XLA: measured slower here than TensorFlow's executor.
                # The concrete function is called directly: a third less
                # overhead.
                fn = tf.function(
                    self.state.read_packed, autograph=False, jit_compile=False
                )
                with self.state.strategy.scope():
                    self._fn = fn.get_concrete_function()
            with self.state.strategy.scope():
                raw = self._fn()
        raw = self._split(raw.numpy())
        return self.figures(raw, window_start, prev_valid)

    def _split(self, raw):
        return {
            key: raw[offset : offset + size].reshape(shape)
            for key, offset, shape, size in self.state.raw_layout
        }

    def figures(self, raw, window_start, prev_valid):
        """Every figure of a record, in float64 NumPy, packed in one vector.

        A few vectorized operations for all variables and layers at once:
        norms, the cosine with the previous record, dead units, saturation,
        activation mean and standard deviation, histogram edges. (A record
        runs right after a training step has filled the caches with its
        own data, where each NumPy call costs several times what it costs
        in a loop: hence few, whole-array calls.)
        """
        bins = self.bins
        snap = bool(raw["snap_dstep"] > window_start)
        v = {"has_snapshot": float(snap), "dstep": raw["dstep"]}
        lohi = []
        with np.errstate(all="ignore"):
            sumsq = 2.0 * raw["sumsq"]
            global_sq = float(np.sum(sumsq[: self.n_variables]))
            v["global_norm"] = (
                math.sqrt(global_sq) if math.isfinite(global_sq) else math.nan
            )
            if self.var_pos:
                w = len(self.var_pos)
                sq = sumsq[self.var_pos]
                v["norm"] = np.sqrt(sq)
                v["nonfinite"] = raw["nonfinite"][self.var_pos]
                v["gcounts"] = np.round(raw["ghist"][:w])
                lohi.append(raw["glohi"][:w])
            if self.grad_layers:
                m = self._owner_matrix
                v["layer_norm"] = np.sqrt(m @ sq)
                if "dots" in raw:
                    dot = m @ raw["dots"][0]
                    denom = np.sqrt((m @ raw["dots"][1]) * (m @ sq))
                    ok = (bool(prev_valid) and snap) & (denom > 0) & np.isfinite(denom)
                    v["cosine"] = dot / np.where(ok, denom, 1.0)
                    v["cosine_ok"] = ok
            if self.sites:
                stats, hist, site_lohi, dead = self._site_raw(raw)
                saturated, pairs, s1, s2 = stats.T
                safe = np.where(pairs > 0, pairs, 1.0)
                mean = s1 / safe
                v["pairs"] = pairs
                v["saturation"] = saturated / safe
                v["mean"] = mean
                v["std"] = np.sqrt(np.maximum(s2 / safe - mean * mean, 0.0))
                if self.tracked:
                    v["dead"] = dead
                v["acounts"] = np.round(hist)
                lohi.append(site_lohi)
            if lohi:  # every histogram's edges at once
                edges = _edges(np.concatenate(lohi) if len(lohi) > 1 else lohi[0], bins)
                if self.var_pos:
                    v["gedges"] = edges[:w]
                if self.sites:
                    v["aedges"] = edges[len(edges) - len(self.sites) :]
        return self._pack(v)

    def _pack(self, values):
        """`values` copied into one vector, laid out by `layout` (made from
        the first record's shapes: every record has the same keys)."""
        if self.layout is None:
            layout, offset = {}, 0
            for key, value in values.items():
                shape = np.shape(value) or (1,)
                n = int(np.prod(shape))
                layout[key] = (offset, shape, n)
                offset += n
            self._buffer = np.zeros(offset)
            self._views = [
                (key, self._buffer[o : o + n].reshape(shape))
                for key, (o, shape, n) in layout.items()
            ]
            self.layout = layout
        for key, view in self._views:
            view[...] = values[key]
        return self._buffer.copy()

    def _site_plan(self):
        """Where each site's raw values are (sites in `self.sites` order,
        tracked sites in `self.tracked` order): the packed sites' rows of
        the packed variables, the others' own keys, and for each tracked
        site its slice of `peak` (its index in `starts`) or -1."""
        state = self.state
        slices = sorted(state.peak_slices.values())  # they tile `peak`
        slice_index = {start: j for j, (start, _) in enumerate(slices)}
        plan = {
            "packed": [], "rows": [], "own": [], "segments": [],
            "starts": np.array([start for start, _ in slices], np.int64),
        }
        for i, site in enumerate(self.sites):
            row = state.rows.get(id(state.sites[id(site)]))
            if row is None:  # its own variables (several replicas, Maxout)
                plan["own"].append((i, id(site)))
            else:
                plan["packed"].append(i)
                plan["rows"].append(row)
        for i in self.tracked:
            piece = state.peak_slices.get(id(state.sites[id(self.sites[i])]))
            plan["segments"].append(-1 if piece is None else slice_index[piece[0]])
        plan["segments"] = np.array(plan["segments"], np.int64)
        return plan

    def _site_raw(self, raw):
        """`(stats [S, 4], hist [S, bins], lohi [S, 2], dead [T])` of the
        sites from the raw values: `[saturated, pairs, sum, sum of squares]`,
        the snapshot histogram and its range, and the tracked sites' dead
        units (a unit is dead when no step of the window fired it)."""
        plan = self._plan
        n = len(self.sites)
        stats = np.zeros([n, 4])
        hist = np.zeros([n, self.bins])
        lohi = np.zeros([n, 2])
        if plan["packed"]:
            at, rows = plan["packed"], plan["rows"]
            # `site_sums` holds half the sums of squares (`tf.nn.l2_loss`).
            stats[at] = raw["site_sums"][rows] * [1.0, 1.0, 1.0, 2.0]
            hist[at] = raw["site_hist"][rows]
            lohi[at] = raw["site_lohi"][rows]
        for i, key in plan["own"]:
            stats[i] = raw[f"stats/{key}"]
            hist[i] = raw[f"hist/{key}"]
            lohi[i] = raw[f"lohi/{key}"]
        dead = np.zeros(len(self.tracked))
        segments = plan["segments"]
        packed = segments >= 0
        if packed.any():
            quiet = ~(raw["peak"] > self.state.dead_tolerance)  # NaN: not fired
            per_slice = np.add.reduceat(quiet, plan["starts"], dtype=np.int64)
            dead[packed] = per_slice[segments[packed]]
        for t in np.flatnonzero(~packed):  # a site with its own `alive` counts
            dead[t] = np.sum(raw[f"alive/{id(self.sites[self.tracked[t]])}"] <= 0)
        return stats, hist, lohi, dead

    # ---- host ---------------------------------------------------------------

    def unpack(self, flat):
        """`{key: array}` views of a packed vector."""
        out = {}
        for key, (offset, shape, n) in self.layout.items():
            out[key] = flat[offset : offset + n].reshape(shape)
        return out

    def dead(self, figures):
        """`{layer: (dead fraction, dead units, units)}` of tracked sites."""
        out = {}
        for k, i in enumerate(self.tracked):
            dead = int(round(float(figures["dead"][k])))
            units = self.units[i]
            out[self.site_names[i]] = (dead / units if units else 0.0, dead, units)
        return out

    def layer_values(self, figures):
        """`{layer: {key: value}}` of the per-layer scalars, `None` where a
        figure does not exist (the rules of docs/CONTRACTS.md)."""
        layers = {name: {} for name in self.layer_names}
        for k, name in enumerate(self.grad_layers):
            layers[name]["gradient_norm"] = float(figures["layer_norm"][k])
            ok = "cosine_ok" in figures and figures["cosine_ok"][k] > 0
            layers[name]["gradient_cosine"] = (
                float(figures["cosine"][k]) if ok else None
            )
        dead = self.dead(figures) if self.tracked else {}
        for i, (name, site) in enumerate(zip(self.site_names, self.sites)):
            entry = layers[name]
            entry["units"] = int(self.units[i])
            if name in dead:
                fraction, n_dead, units = dead[name]
                entry["dead_units"] = n_dead
                entry["dead_fraction"] = fraction if units else None
            if figures["pairs"][i] > 0:
                if site.derivative is not None:
                    entry["saturation"] = float(figures["saturation"][i])
                entry["activation_mean"] = float(figures["mean"][i])
                entry["activation_std"] = float(figures["std"][i])
        return layers

    def record(self, flat, *, step, epoch, steps):
        """Unpacks one record (docs/CONTRACTS.md, "GradientMonitor history")."""
        f = self.unpack(flat)
        snap = f["has_snapshot"][0] > 0
        record = {
            "step": int(step),
            "epoch": int(epoch),
            "steps": int(steps),
            "global_norm": float(f["global_norm"][0]),
            "variables": {},
            "layers": {},
        }
        for j, path in enumerate(self.var_paths):
            record["variables"][path] = {
                "norm": float(f["norm"][j]),
                "nonfinite": int(round(float(f["nonfinite"][j]))),
                "size": self.var_sizes[j],
                "histogram": (
                    {
                        "edges": f["gedges"][j].copy(),
                        "counts": np.rint(f["gcounts"][j]).astype(np.int64),
                    }
                    if snap
                    else None
                ),
            }
        values = self.layer_values(f)
        site_index = {name: i for i, name in enumerate(self.site_names)}
        for name in self.layer_names:
            entry = {
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
            entry.update(values[name])
            i = site_index.get(name)
            if i is not None and snap:
                entry["activation_histogram"] = {
                    "edges": f["aedges"][i].copy(),
                    "counts": np.rint(f["acounts"][i]).astype(np.int64),
                }
            record["layers"][name] = entry
        return record

    def write_events(self, file, encoder, flat, step, image=True):
        """Writes one record's TensorBoard values to an `events.EventFile`."""
        f = self.unpack(flat)
        seen = file.seen
        snap = f["has_snapshot"][0] > 0
        tags = ["gradient_norm/global"] + self._variable_tags
        none = np.zeros([0])
        numbers = [f["global_norm"], f.get("norm", none), f.get("nonfinite", none)]
        values = self.layer_values(f)
        layer_tags, layer_numbers = [], []
        for name in self.layer_names:
            for key, value in values[name].items():
                if value is not None and key != "units":
                    layer_tags.append(f"{key}/{name}")
                    layer_numbers.append(value)
        tags += layer_tags
        numbers.append(layer_numbers)
        out = [encoder.scalars(tuple(tags), np.concatenate(numbers), seen)]
        if snap:
            out.append(
                encoder.histograms(
                    self._histogram_tags,
                    _rows(
                        [f.get("gedges"), f.get("aedges")],
                        [f.get("gcounts"), f.get("acounts")],
                    ),
                    seen,
                )
            )
        if image:
            layout = plots.depth_profile_layout(
                *[
                    [values[n].get(key) for n in self.layer_names]
                    for key in ("gradient_norm", "dead_fraction", "activation_mean")
                ]
            )
            out.append(
                encoder.image(
                    "depth_profile",
                    plots.draw_indexed(layout),
                    seen,
                    palette=plots.PALETTE,
                )
            )
        file.write(step, out)


def _rows(edges, counts):
    """`[n, bins, 3]` rows `[left edge, right edge, count]` of the histograms
    whose `[m, bins + 1]` edges and `[m, bins]` counts are listed (arrays
    that may be missing, `None`)."""
    edges = [e for e in edges if e is not None]
    counts = [c for c in counts if c is not None]
    edges = np.concatenate(edges) if edges else np.zeros([0, 1])
    counts = np.concatenate(counts) if counts else np.zeros([0, 0])
    return np.stack([edges[:, :-1], edges[:, 1:], counts], axis=2)
