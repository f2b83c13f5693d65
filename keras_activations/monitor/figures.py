"""The figures of records: read from the device, computed on the host.

For each record `GradientMonitor` takes the raw accumulators of its window
(`RecordProgram.read`):

1. When the window's snapshot step already read and reset them
   (`DeviceState.finalizes`: one step per execution, windows of known
   length, one device), it handed them over with its logs: one float64
   vector, and no program runs. Otherwise a `tf.function` (in
   cross-replica context, not XLA) reads and resets them and returns the
   same vector. It only reads and resets, about 80 graph nodes for an
   8-layer MLP: the executor's cost per node, not the arithmetic, is what a
   record program costs on a CPU.
2. The host keeps the raw vectors of several records and computes their
   figures together (`RecordProgram.figures`), in float64 NumPy, a few
   whole-array operations for all records, variables and layers at once:
   norms, the cosine with the previous record, dead units, saturation,
   activation mean and standard deviation, histogram edges; one packed
   vector per record.

The host writes the events of those records together (`write_events`, see
`events`) and unpacks a history record from a vector only when
`GradientMonitor.history` is read (`record`). What is written and what
`history` holds are the same numbers.
"""

import math

import numpy as np
import tensorflow as tf

from keras_activations.monitor import plots


def _edges(lohi, bins):
    """`[..., bins + 1]` equal-width edges from `[..., 2]` ranges; the last
    edge is exactly the range's right end."""
    lohi = np.asarray(lohi, np.float64)
    lo, hi = lohi[..., :1], lohi[..., 1:]
    inner = lo + (hi - lo) * (np.arange(bins, dtype=np.float64) / bins)
    return np.concatenate([inner, hi], axis=-1)


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
        self._histogram_tags = tuple(
            [f"gradients/{p}" for p in self.var_paths]
            + [f"activations/{n}" for n in self.site_names]
        )
        self.layout = None
        self._fn = None
        self._raw_at = None
        self._scalars = None
        self._plan = self._site_plan()

    # ---- device -------------------------------------------------------------

    def read(self, raw=None):
        """The raw accumulators of a window as a float64 NumPy vector, laid
        out by `DeviceState.raw_layout`.

        Args:
            raw: The vector the window's snapshot step already read and
                reset (`DeviceState.finalizes`), if it did; else the record
                program reads and resets the accumulators.
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
        return raw.numpy()

    def raw_value(self, raw, key):
        """The first number of `key` in a raw vector (`dstep`, `snap_dstep`)."""
        if self._raw_at is None:
            self._raw_at = {k: offset for k, offset, _, _ in self.state.raw_layout}
        return raw[self._raw_at[key]]

    def _split(self, raws):
        """`{key: [records, *shape]}` views of raw vectors `[records, n]`."""
        b = raws.shape[0]
        return {
            key: raws[:, offset : offset + size].reshape((b,) + shape)
            for key, offset, shape, size in self.state.raw_layout
        }

    def figures(self, raws, window_starts, prev_valids):
        """Every figure of several records, in float64 NumPy, one packed
        vector per record: `[records, figures]` (`unpack` gives them by key).

        A few whole-array operations for all records, variables and layers
        at once: norms, the cosine with the previous record, dead units,
        saturation, activation mean and standard deviation, histogram
        edges. (NumPy's cost is per call, and right after a training step,
        with the caches full of the step's data, each call costs several
        times what it costs in a loop: hence few calls, for many records.)

        Args:
            raws: `[records, n]` raw vectors (`read`).
            window_starts: `[records]` device step counts when each window
                began.
            prev_valids: `[records]` whether an earlier record took a
                snapshot (the cosine needs one).
        """
        raw = self._split(np.asarray(raws, np.float64))
        b = len(window_starts)
        bins = self.bins
        snap = raw["snap_dstep"].reshape(b) > np.asarray(window_starts)
        v = {"has_snapshot": snap.astype(np.float64), "dstep": raw["dstep"].reshape(b)}
        lohi = []
        with np.errstate(all="ignore"):
            sumsq = 2.0 * raw["sumsq"]
            global_sq = np.sum(sumsq[:, : self.n_variables], axis=1)
            v["global_norm"] = np.where(
                np.isfinite(global_sq), np.sqrt(global_sq), np.nan
            )
            if self.var_pos:
                w = len(self.var_pos)
                sq = sumsq[:, self.var_pos]
                v["norm"] = np.sqrt(sq)
                v["nonfinite"] = raw["nonfinite"][:, self.var_pos]
                v["gcounts"] = np.round(raw["ghist"][:, :w])
                lohi.append(raw["glohi"][:, :w])
            if self.grad_layers:
                m = self._owner_matrix.T
                v["layer_norm"] = np.sqrt(sq @ m)
                if "dots" in raw:
                    dot = raw["dots"][:, 0] @ m
                    denom = np.sqrt((raw["dots"][:, 1] @ m) * (sq @ m))
                    ok = (np.asarray(prev_valids, bool) & snap)[:, None]
                    ok = ok & (denom > 0) & np.isfinite(denom)
                    v["cosine"] = dot / np.where(ok, denom, 1.0)
                    v["cosine_ok"] = ok.astype(np.float64)
            if self.sites:
                stats, hist, site_lohi, dead = self._site_raw(raw, b)
                saturated, pairs, s1, s2 = np.moveaxis(stats, 2, 0)
                safe = np.where(pairs > 0, pairs, 1.0)
                mean = s1 / safe
                v["pairs"] = pairs
                v["saturation"] = saturated / safe
                v["mean"] = mean
                v["std"] = np.sqrt(np.maximum(s2 / safe - mean * mean, 0.0))
                if self.tracked:
                    units = np.array([self.units[i] for i in self.tracked], np.float64)
                    v["dead"] = np.round(dead)
                    v["dead_fraction"] = np.where(
                        units > 0, v["dead"] / np.where(units > 0, units, 1.0), 0.0
                    )
                v["acounts"] = np.round(hist)
                lohi.append(site_lohi)
            if lohi:  # every histogram's edges at once
                edges = _edges(np.concatenate(lohi, axis=1), bins)
                if self.var_pos:
                    v["gedges"] = edges[:, :w]
                if self.sites:
                    v["aedges"] = edges[:, edges.shape[1] - len(self.sites) :]
        return self._pack(v, b)

    def _pack(self, values, records):
        """`values` (`{key: [records, *shape]}`) copied into one vector per
        record, laid out by `layout` (made from the first records' shapes:
        every record has the same keys)."""
        if self.layout is None:
            layout, offset = {}, 0
            for key, value in values.items():
                shape = np.shape(value)[1:] or (1,)
                n = int(np.prod(shape))
                layout[key] = (offset, shape, n)
                offset += n
            self.layout, self._size = layout, offset
        out = np.empty((records, self._size))
        for key, (offset, shape, n) in self.layout.items():
            out[:, offset : offset + n] = np.reshape(values[key], (records, n))
        return out

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

    def _site_raw(self, raw, records):
        """`(stats [B, S, 4], hist [B, S, bins], lohi [B, S, 2], dead [B, T])`
        of the sites from the raw values of B records: `[saturated, pairs,
        sum, sum of squares]`, the snapshot histogram and its range, and the
        tracked sites' dead units (a unit is dead when no step of the window
        fired it)."""
        plan = self._plan
        n = len(self.sites)
        stats = np.zeros([records, n, 4])
        hist = np.zeros([records, n, self.bins])
        lohi = np.zeros([records, n, 2])
        if plan["packed"]:
            at, rows = plan["packed"], plan["rows"]
            # `site_sums` holds half the sums of squares (`tf.nn.l2_loss`).
            stats[:, at] = raw["site_sums"][:, rows] * [1.0, 1.0, 1.0, 2.0]
            hist[:, at] = raw["site_hist"][:, rows]
            lohi[:, at] = raw["site_lohi"][:, rows]
        for i, key in plan["own"]:
            stats[:, i] = raw[f"stats/{key}"]
            hist[:, i] = raw[f"hist/{key}"]
            lohi[:, i] = raw[f"lohi/{key}"]
        dead = np.zeros([records, len(self.tracked)])
        segments = plan["segments"]
        packed = segments >= 0
        if packed.any():
            quiet = ~(raw["peak"] > self.state.dead_tolerance)  # NaN: not fired
            per_slice = np.add.reduceat(quiet, plan["starts"], axis=1, dtype=np.int64)
            dead[:, packed] = per_slice[:, segments[packed]]
        for t in np.flatnonzero(~packed):  # a site with its own `alive` counts
            alive = raw[f"alive/{id(self.sites[self.tracked[t]])}"]
            dead[:, t] = np.sum(alive.reshape(records, -1) <= 0, axis=1)
        return stats, hist, lohi, dead

    # ---- host ---------------------------------------------------------------

    def unpack(self, flat):
        """`{key: array}` views of a packed vector (`[figures]`), or of
        several (`[records, figures]`: each array gets a leading axis)."""
        lead = flat.shape[:-1]
        return {
            key: flat[..., offset : offset + n].reshape(lead + shape)
            for key, (offset, shape, n) in self.layout.items()
        }

    def _scalar_plan(self):
        """Every scalar a record may hold, in event order, from the packed
        layout: `(tag, layer, key, column, condition)`. A layer's scalar
        (`layer` not None) is `key` of its history entry. The value is
        `packed[column]`; it exists when `condition` is -1 or
        `packed[condition] > 0` (the rules of docs/CONTRACTS.md)."""
        if self._scalars is not None:
            return self._scalars
        layout = self.layout

        def at(key, i=0):
            return layout[key][0] + i

        plan = [("gradient_norm/global", None, None, at("global_norm"), -1)]
        for key, figure in (("gradient_norm", "norm"), ("nonfinite_gradients", "nonfinite")):
            for j, path in enumerate(self.var_paths):
                plan.append((f"{key}/{path}", None, None, at(figure, j), -1))
        grad_index = {name: k for k, name in enumerate(self.grad_layers)}
        site_index = {name: i for i, name in enumerate(self.site_names)}
        tracked = {i: t for t, i in enumerate(self.tracked)}
        for name in self.layer_names:
            entries = []
            k = grad_index.get(name)
            if k is not None:
                entries.append(("gradient_norm", at("layer_norm", k), -1))
                if "cosine" in layout:
                    entries.append(("gradient_cosine", at("cosine", k), at("cosine_ok", k)))
            i = site_index.get(name)
            if i is not None:
                pairs = at("pairs", i)
                if i in tracked:
                    entries.append(("dead_units", at("dead", tracked[i]), -1))
                    if self.units[i]:
                        entries.append(("dead_fraction", at("dead_fraction", tracked[i]), -1))
                if self.sites[i].derivative is not None:
                    entries.append(("saturation", at("saturation", i), pairs))
                entries.append(("activation_mean", at("mean", i), pairs))
                entries.append(("activation_std", at("std", i), pairs))
            plan += [(f"{key}/{name}", name, key, c, cond) for key, c, cond in entries]
        self._scalars = plan
        self._scalar_tags = np.array([tag for tag, *_ in plan], object)
        self._scalar_columns = np.array([c for *_, c, _ in plan], np.int64)
        self._scalar_conditions = np.array([cond for *_, cond in plan], np.int64)
        return plan

    def scalars(self, flats):
        """`(values, present)`, both `[records, scalars]`: every scalar of
        `_scalar_plan` per record, and whether it exists."""
        self._scalar_plan()
        values = flats[:, self._scalar_columns]
        present = np.ones(values.shape, bool)
        conditional = self._scalar_conditions >= 0
        present[:, conditional] = flats[:, self._scalar_conditions[conditional]] > 0
        return values, present

    def dead(self, flats):
        """`{layer: (dead fraction [records], dead units [records], units)}`
        of the tracked sites, from packed vectors `[records, figures]`."""
        f = self.unpack(flats)
        return {
            self.site_names[i]: (f["dead_fraction"][:, t], f["dead"][:, t], self.units[i])
            for t, i in enumerate(self.tracked)
        }

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
        for i, name in enumerate(self.site_names):
            entry = record["layers"][name]
            entry["units"] = int(self.units[i])
            if snap:
                entry["activation_histogram"] = {
                    "edges": f["aedges"][i].copy(),
                    "counts": np.rint(f["acounts"][i]).astype(np.int64),
                }
        for _, name, key, column, condition in self._scalar_plan():
            if name is not None and (condition < 0 or flat[condition] > 0):
                value = float(flat[column])
                record["layers"][name][key] = int(value) if key == "dead_units" else value
        return record

    def write_events(self, file, encoder, flats, steps, wall_times, image=True):
        """Writes records' TensorBoard values to an `events.EventFile`, one
        event per record.

        Args:
            file: The `events.EventFile`.
            encoder: The fit's `events.Encoder`.
            flats: `[records, figures]` packed vectors (`figures`).
            steps: `[records]` their steps.
            wall_times: `[records]` when each record's window ended.
            image: Whether to write the depth-profile picture.
        """
        seen = file.seen
        values, present = self.scalars(flats)
        out = [[part] for part in encoder.scalar_rows(
            tuple(self._scalar_tags), values, present, seen
        )]
        f = self.unpack(flats)
        snaps = np.flatnonzero(f["has_snapshot"][:, 0] > 0)
        if snaps.size and self._histogram_tags:
            rows = _rows(
                [f.get("gedges"), f.get("aedges")], [f.get("gcounts"), f.get("acounts")]
            )
            for i, part in zip(
                snaps, encoder.histogram_rows(self._histogram_tags, rows[snaps], seen)
            ):
                out[i].append(part)
        if image:
            pictures = plots.depth_profiles(*self._depth_values(f, len(flats)))
            for i, picture in enumerate(pictures):
                out[i].append(
                    encoder.image("depth_profile", picture, seen, palette=plots.PALETTE)
                )
        for i, parts in enumerate(out):
            file.write(steps[i], parts, wall_times[i])

    def _depth_values(self, f, records):
        """`[records, layers]` gradient norms, dead fractions and activation
        means in depth order, NaN where a layer has none."""
        n = len(self.layer_names)
        out = [np.full((records, n), np.nan) for _ in range(3)]
        index = {name: d for d, name in enumerate(self.layer_names)}
        if self.grad_layers:
            out[0][:, [index[name] for name in self.grad_layers]] = f["layer_norm"]
        if self.tracked:
            fractions = np.where(
                [self.units[i] > 0 for i in self.tracked], f["dead_fraction"], np.nan
            )
            out[1][:, [index[self.site_names[i]] for i in self.tracked]] = fractions
        if self.sites:
            out[2][:, [index[name] for name in self.site_names]] = np.where(
                f["pairs"] > 0, f["mean"], np.nan
            )
        return out


def _rows(edges, counts):
    """`[records, n, bins, 3]` rows `[left edge, right edge, count]` of the
    histograms whose `[records, m, bins + 1]` edges and `[records, m, bins]`
    counts are listed (arrays that may be missing, `None`)."""
    edges = [e for e in edges if e is not None]
    counts = [c for c in counts if c is not None]
    edges = np.concatenate(edges, axis=1)
    counts = np.concatenate(counts, axis=1)
    return np.stack([edges[..., :-1], edges[..., 1:], counts], axis=-1)
