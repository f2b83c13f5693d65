"""Device-side state of `GradientMonitor`: fixed-shape accumulators.

The training step only updates these variables (no `tf.summary` op runs
inside it, so it stays XLA- and replica-safe); once per record the callback
runs `figures.RecordProgram`, a separate compiled function (not XLA, in
cross-replica context) that reads them and resets the sums
(`DeviceState.read_and_reset`), unless the window's snapshot step did so
itself (`DeviceState.finalizes`); the host computes the figures and writes
the events.

Per step, for every trainable variable: half its gradient's sum of
squares (`tf.nn.l2_loss`, one fused reduction) and, only when their sum is
not finite, the count of NaN/inf elements; the optimizer then reads the
gradients after these reads (`callback._after`), so it still updates in
place. Per step, for every activation site (on one device, at the end of
the step, `end_step`): per unit the largest `|f'(x)|` (a running maximum
over the window: a unit is dead when it stays <= `dead_tolerance`), the
count of unit-example pairs with `|f'(x)| < saturation_tolerance`, and
the count, sum and sum of squares of the outputs; every site's figures go
into two packed variables. On a CPU a ReLU-family site's figures are one
pass of the monitor's compiled op (`native`); the rest are plain
TensorFlow reductions, chosen by measurement on a 2-core CPU: XLA clusters
waited for the thread pool the step's matrix products keep busy,
TensorFlow's comparison ops are not vectorized (the counts use `sign`
instead), and a derivative read from the activation's output (`Derivative.of_output`, e.g. ReLU, sigmoid, tanh)
leaves the activation fused into its layer's matrix product.

Only on *snapshot* steps (the last step of a record window, which runs a
train function of its own that the callback picks, `DeviceState.snapshot`):
a histogram of each watched variable's gradient and of each site's output,
the dot product of each watched gradient with the previous record's, and a
copy of the gradient for the next record's (`_cosine_snapshot`).
Histogram edges are `bins` equal-width buckets spanning the snapshot's own
[min, max] (finite values only), so a histogram is exact for its step, like
TensorBoard's own; counting is O(n) in time and memory (on a CPU the
compiled kernel of `native`, else `tf.histogram_fixed_width`, or a segment
sum under XLA; never a one-hot).

Variables are created outside the traced step, owned by the callback and
never tracked by the model. Under a `tf.distribute` strategy they are
`ON_READ` variables: sums over the examples each replica saw use
`aggregation=SUM`; figures of the all-reduced gradient, identical on every
replica, use `ONLY_FIRST_REPLICA`. Histogram edges of activations are the
min/max over all replicas (an all-reduce per step, only when there is more
than one replica), so the records equal a single-device run's.
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2

from keras_activations.builtin_derivatives import StepOfOutput
from keras_activations.monitor import native

_SUM = tf.VariableAggregation.SUM
_FIRST = tf.VariableAggregation.ONLY_FIRST_REPLICA


def _state_variable(value, aggregation, name):
    return tf.Variable(
        value,
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=aggregation,
        name=name,
    )


def cond(pred, true_fn, false_fn):
    """`tf.cond` that runs only the branch taken.

    Inside a `tf.function` TensorFlow lowers `tf.cond` to Switch/Merge
    nodes, and its executor then visits every node of the branch not taken
    as a dead node, on every step. The monitor's conditionals guard rare
    work with hundreds of nodes (recounting non-finite gradients, NaN-safe
    site figures, filtered histograms): visiting them cost more than the
    figures themselves (0.15 ms a step measured here). This leaves the `If`
    op unlowered: a call of the branch taken. XLA compiles either form.
    """
    if tf.executing_eagerly():
        return tf.cond(pred, true_fn, false_fn)
    graph = tf.compat.v1.get_default_graph()
    known = len(graph.get_operations())
    out = tf.cond(pred, true_fn, false_fn)
    keep = attr_value_pb2.AttrValue(b=False)
    for op in graph.get_operations()[known:]:
        if op.type in ("If", "StatelessIf"):
            op._set_attr("_lower_using_switch_merge", keep)
    return out


def histogram(x, bins, use_segment_sum, safe):
    """Equal-width histogram of `x` over its own range.

    Args:
        x: A float32 tensor.
        bins: Number of buckets.
        use_segment_sum: Count with `unsorted_segment_sum` (XLA-compatible)
            instead of `tf.histogram_fixed_width`.
        safe: Whether `x` may hold NaN/inf; they are left out.

    Returns:
        `(counts, lohi)`: float64 counts of shape `(bins,)` and the float32
        `[left, right]` edges of the whole histogram.
    """
    flat = tf.reshape(x, [-1])
    if safe:
        finite = tf.math.is_finite(flat)
        lo = tf.reduce_min(tf.where(finite, flat, np.inf))
        hi = tf.reduce_max(tf.where(finite, flat, -np.inf))
        any_finite = lo <= hi
        lo = tf.where(any_finite, lo, 0.0)
        hi = tf.where(any_finite, hi, 0.0)
        values = tf.where(finite, flat, lo)
        n_bad = tf.size(flat) - tf.reduce_sum(tf.cast(finite, tf.int32))
    else:
        lo = tf.reduce_min(flat)
        hi = tf.reduce_max(flat)
        values = flat
        n_bad = None
    hi = tf.where(hi > lo, hi, lo + tf.maximum(tf.abs(lo), 1.0) * 1e-3)
    return _count(values, lo, hi, bins, use_segment_sum, n_bad)


def histograms(xs, bins, use_segment_sum, finite):
    """`histogram` of each float32 tensor in `xs`, stacked: `([k, bins],
    [k, 2])`.

    On a CPU without XLA, one call of the monitor's compiled kernel
    (`native`), which leaves non-finite values out itself. Otherwise
    TensorFlow's ops: `finite` (a boolean tensor) says that no value is
    NaN/inf, as the caller knows from a finite sum of squares; then each
    histogram is three passes (min, max, count) instead of the eight with
    temporaries that leaving non-finite values out takes, which only run
    when needed.
    """
    kernel = None if use_segment_sum else native.histograms_op()
    if kernel is not None:
        return kernel(list(xs), bins=bins)

    def take(safe):
        def fn():
            pairs = [histogram(x, bins, use_segment_sum, safe) for x in xs]
            return tf.stack([h for h, _ in pairs]), tf.stack([r for _, r in pairs])

        return fn

    return cond(finite, take(False), take(True))


def _count(values, lo, hi, bins, use_segment_sum, n_bad=None):
    if use_segment_sum:
        scaled = (values - lo) * (bins / (hi - lo))
        index = tf.clip_by_value(tf.cast(scaled, tf.int32), 0, bins - 1)
        counts = tf.math.unsorted_segment_sum(
            tf.ones_like(values), index, bins
        )
    else:
        counts = tf.histogram_fixed_width(
            values, tf.stack([lo, hi]), nbins=bins
        )
    counts = tf.cast(counts, tf.float64)
    if n_bad is not None:
        counts -= tf.one_hot(0, bins, dtype=tf.float64) * tf.cast(
            n_bad, tf.float64
        )
    return counts, tf.stack([lo, hi])


def _derivative_input(site, x, y):
    """`(u, y, derivative)` with `derivative(u) = f'(x)`: the output form
    when the site has one (`x` is then None)."""
    if x is None:
        return y, y, site.of_output
    return x, y, site.derivative


def _positive_counts(kernel, y32, axes):
    """`kernel` (`native.positive_counts_op`) on `y32` viewed as `[outer,
    units, inner]`: `(fired, [pairs, sum, half sum of squares], positive)`,
    or `None` when the dimensions after the unit axis are not static."""
    rank = len(y32.shape)
    axis = next(a for a in range(rank) if a not in axes)
    rest = y32.shape[axis:]
    if any(d is None for d in rest):
        return None
    inner = int(np.prod(rest[1:]))  # 1 when the unit axis is last
    fired, sums = kernel(tf.reshape(y32, [-1, int(rest[0]), inner]))
    return fired, [sums[0], sums[1], sums[2]], sums[3]


def _site_figures(x, y, derivative, axes, saturation_tolerance, kernel=None):
    """One step's figures of an activation site.

    With `kernel` (`native.positive_counts_op`), a ReLU-family site (a
    `StepOfOutput` derivative) takes one pass of the monitor's op over its
    outputs; otherwise, and for every other site, plain TensorFlow ops.

    Returns `(peak, saturated, sums)`: per unit the largest `|f'(x)|` over
    the step's examples and the count of unit-example pairs with
    `|f'(x)| < saturation_tolerance` (both `None` without a derivative), and
    float32 `[pairs, sum, half the sum of squares]` of the outputs (the
    halving of `tf.nn.l2_loss` is undone once per record). Each figure is
    one reduction; the only temporaries the size of the site are those of
    `|f'(x)|` itself. The count uses float ops only (TensorFlow's
    comparison ops are not vectorized on CPU); a NaN derivative makes it
    NaN, and `end_step` then recounts with `_nan_safe_figures`.
    """
    y32 = tf.cast(y, tf.float32)
    if isinstance(derivative, StepOfOutput) and kernel is not None:
        counted = _positive_counts(kernel, y32, axes)
        if counted is not None:
            fired, sums, positive = counted
            return _step_figures(derivative, fired, positive, sums, saturation_tolerance)
    sums = [tf.cast(tf.size(y32), tf.float32), tf.reduce_sum(y32), tf.nn.l2_loss(y32)]
    if derivative is None:
        return None, None, sums
    if isinstance(derivative, StepOfOutput):  # x is the output: y <= 0 or > 0
        # Per unit, the count of examples with y > 0 (NaN stays NaN, for
        # `end_step`'s check): a unit fired when it is positive, and then
        # its largest |f'| is `above`. One pass over the output gives both
        # the dead units and the saturated count.
        sign = tf.sign(y32)
        if derivative.below != 0:  # outputs can be negative
            sign = tf.maximum(sign, 0.0)
        fired = tf.reduce_sum(sign, axis=axes)
        positive = tf.reduce_sum(fired)
        return _step_figures(derivative, fired, positive, sums, saturation_tolerance)
    d = tf.abs(tf.cast(derivative(tf.cast(x, tf.float32)), tf.float32))
    peak = tf.reduce_max(d, axis=axes)
    # `maximum`, not `relu`: see `builtin_derivatives.positive_step`.
    saturated = tf.reduce_sum(tf.maximum(tf.sign(saturation_tolerance - d), 0.0))
    return peak, saturated, sums


def _step_figures(derivative, fired, positive, sums, saturation_tolerance):
    """`_site_figures` of a `StepOfOutput` site from its per-unit counts of
    positive outputs `fired` and their sum `positive` (NaN stays NaN)."""
    top = tf.sign(fired)  # 0 or 1 (counts are >= 0), NaN stays NaN
    peak = derivative.below + (derivative.above - derivative.below) * top
    saturated = tf.constant(0.0)
    if derivative.below < saturation_tolerance:
        saturated += sums[0] - positive
    if derivative.above < saturation_tolerance:
        saturated += positive
    return peak, saturated, sums


def _nan_safe_figures(x, derivative, axes, saturation_tolerance):
    """`_site_figures`'s peak and count with NaN derivatives left out: a
    NaN derivative has neither "fired" nor saturated."""
    d = tf.abs(tf.cast(derivative(tf.cast(x, tf.float32)), tf.float32))
    peak = tf.reduce_max(tf.where(tf.math.is_nan(d), tf.zeros_like(d), d), axis=axes)
    saturated = tf.reduce_sum(tf.cast(d < saturation_tolerance, tf.float32))
    return peak, saturated


class _SiteState:
    """A site's window state. A packed site (`packed`) keeps it in
    `DeviceState`'s packed variables; the others (several replicas, Maxout)
    in variables of their own."""

    def __init__(self, site, bins, track_dead, packed):
        self.site = site
        self.track_dead = track_dead
        self.packed = packed
        if packed:
            return
        n_alive = 1
        if track_dead:
            n_alive = site.units * (site.pieces or 1)
        self.alive = _state_variable(
            tf.zeros([n_alive], tf.float32), _SUM, "alive"
        )
        # [saturated pairs, pairs, sum of outputs, sum of squares]
        self.stats = _state_variable(tf.zeros([4], tf.float64), _SUM, "stats")
        self.hist = _state_variable(tf.zeros([bins], tf.float64), _SUM, "hist")
        self.lohi = _state_variable(tf.zeros([2], tf.float32), _FIRST, "lohi")


class DeviceState:
    """Accumulators of one `fit`, and the ops that update and read them.

    Args:
        strategy: The model's `tf.distribute` strategy.
        variables: `(variable, owner name, watched)` triples
            (`sites.select`), in `model.trainable_variables` order.
        sites: Activation sites with `units` set.
        bins: Histogram buckets.
        dead_tolerance: A unit is alive in a step when `f'(x)` exceeds it
            for some example.
        saturation_tolerance: A unit-example pair is saturated when `f'(x)`
            is below it.
        use_segment_sum: Count histograms with an XLA-compatible op.
        var_key: Function mapping a variable to the optimizer's key.
        one_snapshot: Whether every record window has at most one snapshot
            step (one step per execution and windows of known length): the
            snapshot then keeps its gradient for the next record's cosine
            directly, without the `cur` copy (`_cosine_snapshot`).

    Attributes:
        snapshot: Whether the step being traced is a snapshot step. The
            callback compiles a second train function for snapshot steps
            and sets this while calling it, so the other steps' function
            holds none of the snapshot's work (a conditional in one
            function would cost its dead nodes on every step).
    """

    def __init__(
        self,
        strategy,
        variables,
        sites,
        bins,
        dead_tolerance,
        saturation_tolerance,
        use_segment_sum,
        var_key,
        one_snapshot=False,
    ):
        self.strategy = strategy
        self.one_snapshot = bool(one_snapshot)
        self.snapshot = False
        self.replicas = strategy.num_replicas_in_sync
        self.bins = bins
        self.dead_tolerance = float(dead_tolerance)
        self.saturation_tolerance = float(saturation_tolerance)
        self.use_segment_sum = use_segment_sum
        self.var_key = var_key
        self.variables = variables
        self.key_to_pos = {var_key(v): i for i, (v, _, _) in enumerate(variables)}
        self.watched_pos = [i for i, (_, _, w) in enumerate(variables) if w]
        n = len(variables)
        with strategy.scope():
            self.dstep = _state_variable(
                tf.zeros([], tf.int64), _FIRST, "dstep"
            )
            self.snap_dstep = _state_variable(
                tf.zeros([], tf.int64), _FIRST, "snap_dstep"
            )
            # Half the sums of squares (`tf.nn.l2_loss`), of the snapshot.
            self.sumsq = _state_variable(
                tf.zeros([max(n, 1)], tf.float32), _FIRST, "sumsq"
            )
            self.nonfinite = _state_variable(
                tf.zeros([max(n, 1)], tf.float64), _FIRST, "nonfinite"
            )
            w = max(len(self.watched_pos), 1)
            self.ghist = _state_variable(
                tf.zeros([w, bins], tf.float64), _FIRST, "ghist"
            )
            self.glohi = _state_variable(
                tf.zeros([w, 2], tf.float32), _FIRST, "glohi"
            )
            self.cur = []
            self.prev = []
            for i in self.watched_pos:
                shape = tuple(variables[i][0].shape)
                if not self.one_snapshot:
                    self.cur.append(
                        _state_variable(tf.zeros(shape, tf.float32), _FIRST, "g")
                    )
                self.prev.append(
                    _state_variable(tf.zeros(shape, tf.float32), _FIRST, "gp")
                )
            # Sums of squares of `prev`: kept, not recomputed per record.
            self.prev_sumsq = _state_variable(
                tf.zeros([w], tf.float32), _FIRST, "prev_sumsq"
            )
            # The snapshot's dot product of each watched gradient with
            # `prev` (the previous record's), and the sums of squares of
            # that `prev`: the cosine's parts.
            self.dots = _state_variable(
                tf.zeros([2, w], tf.float32), _FIRST, "dots"
            )
            # Device step count when the current record window began.
            self.window_dstep = _state_variable(
                tf.zeros([], tf.int64), _FIRST, "window_dstep"
            )
            self.sites = {}
            for site in sites:
                # Measured for every site with a known derivative, whatever
                # its activation's defaults say: a LeakyReLU with slope 0,
                # an ELU with alpha 0 or a PReLU whose slope reached 0 die.
                track_dead = site.pieces is not None or site.derivative is not None
                site.track_dead = track_dead
                # On one device, the sites' window sums live in packed
                # variables, updated once per step (`end_step`): per unit
                # the largest |f'(x)| of the window, and per site the four
                # sums. Maxout sites count winners (`record_site`).
                packed = self.replicas == 1 and site.pieces is None
                self.sites[id(site)] = _SiteState(site, bins, track_dead, packed)
            self.packed = []
            self.peak_slices = {}
            offset = 0
            for site in sites:
                state = self.sites[id(site)]
                if state.packed:
                    if site.derivative is not None:
                        self.peak_slices[id(state)] = (offset, site.units)
                        offset += site.units
                    self.packed.append(state)
            self.rows = {id(state): i for i, state in enumerate(self.packed)}
            self.peak = _state_variable(
                tf.zeros([max(offset, 1)], tf.float32), _FIRST, "peak"
            )
            self.site_sums = _state_variable(
                tf.zeros([max(len(self.packed), 1), 4], tf.float64),
                _FIRST,
                "site_sums",
            )
            # The packed sites' snapshot histograms, one row per site.
            rows = max(len(self.packed), 1)
            self.site_hist = _state_variable(
                tf.zeros([rows, bins], tf.float64), _SUM, "site_hist"
            )
            self.site_lohi = _state_variable(
                tf.zeros([rows, 2], tf.float32), _FIRST, "site_lohi"
            )
        self.raw_layout = None  # of `read_packed`, once traced
        self._pending = []  # (state, axes, x, y) of the step's sites
        self._deferring = False

    # ---- inside the training step -------------------------------------

    def begin_step(self):
        self.dstep.assign_add(1)
        self._pending = []
        self._deferring = True

    def end_step(self):
        """Computes the figures of the step's activation sites, deferred by
        `record_site`, and adds them to the packed window sums.

        Plain TensorFlow ops, a few reductions per site (see
        `_site_figures`); two variable updates for all sites; histograms
        only on a snapshot step (`snapshot`). XLA clusters were
        measured slower here: on a CPU their kernels wait for the thread
        pool that the step's matrix products keep busy.
        """
        pending, self._pending, self._deferring = self._pending, [], False
        if not pending:
            return
        graph = tf.compat.v1.get_default_graph()
        here, rest = {}, []
        for entry in pending:
            state, y = entry[0], entry[3]
            if getattr(y, "graph", graph) is graph and id(state) not in here:
                here[id(state)] = entry
            else:
                rest.append(entry)
        # A site made in a nested graph, or a layer called twice in a step
        # (its later calls): added to its own sums, now.
        for state, _, x, y in rest:
            self.record_site(state.site, x, y)
        if not here:
            return
        tolerance = self.saturation_tolerance
        kernel = None if self.use_segment_sum else native.positive_counts_op()
        figures = {  # id(state): `_site_figures`, of the sites called
            key: _site_figures(
                *_derivative_input(state.site, x, y), axes, tolerance, kernel
            )
            for key, (state, axes, x, y) in here.items()
        }
        peak, saturated = self._pack_peaks(figures)
        if peak is not None:

            def nan_safe():  # only when a derivative was NaN
                safe = {}
                for key, (state, axes, x, y) in here.items():
                    if key in self.peak_slices:
                        u, _, derivative = _derivative_input(state.site, x, y)
                        safe[key] = _nan_safe_figures(u, derivative, axes, tolerance)
                return self._pack_peaks(safe)

            peak, saturated = cond(
                tf.reduce_any(tf.math.is_nan(peak)),
                nan_safe,
                lambda: (peak, saturated),
            )
            self.peak.assign(tf.maximum(self.peak.read_value(), peak))
        zeros = [tf.constant(0.0)] * 3  # a site not called in this step
        sums = [
            v
            for state in self.packed
            for v in (figures[id(state)][2] if id(state) in figures else zeros)
        ]
        sums = tf.reshape(tf.stack(sums), [-1, 3])
        self.site_sums.assign_add(
            tf.cast(tf.concat([saturated[:, None], sums], axis=1), tf.float64)
        )

        # Every output is finite when the sum of their squares is.
        finite = tf.math.is_finite(tf.reduce_sum(sums[:, 2]))

        if self.snapshot:
            hists, lohis = histograms(
                [tf.cast(entry[3], tf.float32) for entry in here.values()],
                self.bins,
                self.use_segment_sum,
                finite,
            )
            rows = [self.rows[key] for key in here]
            if rows == list(range(len(self.packed))):  # every site called
                self.site_hist.assign(hists)
                self.site_lohi.assign(lohis)
            else:
                self._set_histograms(rows, hists, lohis)

    def _set_histograms(self, rows, hists, lohis):
        """Sets rows `rows` of the packed sites' snapshot histograms."""
        index = tf.constant([[r] for r in rows], tf.int32)
        for var, value in ((self.site_hist, hists), (self.site_lohi, lohis)):
            var.assign(tf.tensor_scatter_nd_update(var.read_value(), index, value))

    def _pack_peaks(self, figures):
        """`(peak, saturated)` of the packed sites from `{id(state): (peak,
        count, ...)}`: the tracked sites' per-unit peaks concatenated (`None`
        when no site is tracked) and every site's count stacked; zeros for
        a site not in `figures` (not called in this step)."""
        peaks, counts = [], []
        for state in self.packed:
            fig = figures.get(id(state))
            count = None if fig is None else fig[1]
            counts.append(tf.constant(0.0) if count is None else count)
            if id(state) in self.peak_slices:
                units = self.peak_slices[id(state)][1]
                peaks.append(tf.zeros([units]) if fig is None else fig[0])
        peak = tf.concat(peaks, axis=0) if peaks else None
        return peak, tf.stack(counts)

    def record_gradients(self, grads_and_vars):
        """Accumulates figures of the applied gradients (replica context).

        Every step: each gradient's sum of squares (one fused reduction,
        `tf.nn.l2_loss`) and, only when their sum is not finite, the count
        of NaN/inf elements. On a snapshot step (`snapshot`): the sums of
        squares (the norms), the histograms and a copy of the watched
        gradients (for the cosine).

        Returns:
            Ops that finish every read of the gradients: the caller makes
            the optimizer read them after these (`callback._after`).
        """
        grads = {}
        for g, v in grads_and_vars:
            if g is None:
                continue
            pos = self.key_to_pos.get(self.var_key(v))
            if pos is None:
                continue
            if isinstance(g, tf.IndexedSlices):
                g = tf.convert_to_tensor(g)
            grads[pos] = tf.cast(tf.stop_gradient(g), tf.float32)
        if not grads:
            return []
        positions = sorted(grads)
        n = max(len(self.variables), 1)
        sq = [tf.constant(0.0, tf.float32)] * n
        for i in positions:
            sq[i] = tf.nn.l2_loss(grads[i])  # half the sum of squares
        sumsq = tf.stack(sq)

        def count_nonfinite():  # only when a sum of squares is NaN/inf
            bad = [tf.constant(0.0, tf.float64)] * n
            for i in positions:
                bad[i] = tf.reduce_sum(
                    tf.cast(tf.logical_not(tf.math.is_finite(grads[i])), tf.float64)
                )
            self.nonfinite.assign_add(tf.stack(bad))
            return tf.constant(True)

        finite = tf.math.is_finite(tf.reduce_sum(sumsq))
        done = [cond(finite, lambda: tf.constant(True), count_nonfinite)]

        def snapshot():
            ops = self._cosine_snapshot(grads, sumsq) + [
                self.sumsq.assign(sumsq, read_value=False)
            ]
            present = [i for i in self.watched_pos if i in grads]
            if present:
                hists, lohis = histograms(
                    [grads[i] for i in present], self.bins, self.use_segment_sum, finite
                )
                if len(present) < len(self.watched_pos):
                    # Rows of watched variables without a gradient are zeros.
                    rows = [[self.watched_pos.index(i)] for i in present]
                    w = len(self.watched_pos)
                    hists = tf.scatter_nd(rows, hists, [w, self.bins])
                    lohis = tf.scatter_nd(rows, lohis, [w, 2])
                ops.append(self.ghist.assign(hists, read_value=False))
                ops.append(self.glohi.assign(lohis, read_value=False))
            elif self.watched_pos:
                self.ghist.assign(tf.zeros_like(self.ghist))
                self.glohi.assign(tf.zeros_like(self.glohi))
            for j, i in enumerate(self.watched_pos):
                if i in grads and self.cur:
                    g = tf.reshape(grads[i], self.cur[j].shape)
                    ops.append(self.cur[j].assign(g, read_value=False))
            self.snap_dstep.assign(self.dstep.read_value())
            return tf.group(*ops)  # every read of the gradients

        if self.snapshot:
            done.append(snapshot())
        return done

    def _cosine_snapshot(self, grads, sumsq):
        """The snapshot's dot products with the previous record's gradient.

        `prev` holds the gradient of the last snapshot of an earlier window.
        With `one_snapshot`, the snapshot reads it and then replaces it with
        its own gradient (one copy). Otherwise a window may have several
        snapshot steps (e.g. the steps of one execution): each keeps its
        gradient in `cur`, and the window's first moves `cur` (still that of
        the last window with a snapshot) into `prev` first. Either way the
        record reads the last snapshot's `g . prev` and the sums of squares
        of that `prev` (`dots`). Ordered by TensorFlow's automatic control
        dependencies: each variable's reads come before its writes.
        """
        if not self.watched_pos:
            return []
        ops = []
        if not self.one_snapshot:
            first = self.snap_dstep.read_value() <= self.window_dstep.read_value()

            def roll():
                old = tf.gather(self.sumsq.read_value(), self.watched_pos)
                for prev, cur in zip(self.prev, self.cur):
                    prev.assign(cur.read_value())
                self.prev_sumsq.assign(2.0 * old)
                return tf.constant(True)

            cond(first, roll, lambda: tf.constant(True))
        dots = [tf.constant(0.0, tf.float32)] * len(self.watched_pos)
        for j, i in enumerate(self.watched_pos):
            if i in grads:
                prev = self.prev[j].read_value()
                dots[j] = tf.reduce_sum(tf.reshape(grads[i], prev.shape) * prev)
        parts = tf.stack([tf.stack(dots), self.prev_sumsq.read_value()])
        ops.append(self.dots.assign(parts, read_value=False))
        if self.one_snapshot:
            for j, i in enumerate(self.watched_pos):
                if i in grads:
                    g = tf.reshape(grads[i], self.prev[j].shape)
                    ops.append(self.prev[j].assign(g, read_value=False))
            now = 2.0 * tf.gather(sumsq, self.watched_pos)
            ops.append(self.prev_sumsq.assign(now, read_value=False))
        return ops

    def record_site(self, site, x, y):
        """Accumulates figures of one activation site (replica context)."""
        state = self.sites.get(id(site))
        if state is None:
            return
        rank = len(y.shape)
        if rank < 2:
            return
        axis = site.unit_axis % rank
        axes = [a for a in range(rank) if a != axis]
        if state.packed and self._deferring:
            # Computed with the step's other sites in `end_step` (after the
            # backward pass has read the tape); the rest (several replicas,
            # Maxout, a site in a nested graph) below. `x` is None when the
            # derivative is read from the output.
            if site.of_output is not None:
                x = None
            self._pending.append((state, axes, x, y))
            return
        y = tf.stop_gradient(y)
        derivative = site.derivative
        if x is None:  # deferred with the output form (`end_step`)
            x, derivative = y, site.of_output
        x = tf.stop_gradient(x)
        y32 = tf.cast(y, tf.float32)
        s1 = tf.reduce_sum(y32)
        s2 = tf.reduce_sum(tf.square(y32))
        pairs = tf.cast(tf.size(y32), tf.float32)
        saturated = tf.constant(0.0, tf.float32)
        if site.pieces is not None:
            winner = site.layer.winning_piece(x)
            won = tf.stack(
                [
                    tf.reduce_any(tf.equal(winner, p), axis=axes)
                    for p in range(site.pieces)
                ],
                axis=-1,
            )
            state.alive.assign_add(tf.reshape(tf.cast(won, tf.float32), [-1]))
        elif state.packed:  # a packed site: into the packed sums
            self._add_to_packed(state, x, derivative, axes, [pairs, s1, s2])
        elif derivative is not None:
            # |f'|: a negative slope (abs, leaky with slope < 0) is alive; a
            # NaN derivative neither fires nor saturates.
            peak, saturated = _nan_safe_figures(
                x, derivative, axes, self.saturation_tolerance
            )
            if state.track_dead:
                fired = peak > self.dead_tolerance
                state.alive.assign_add(tf.cast(fired, tf.float32))
        if not state.packed:
            state.stats.assign_add(
                tf.cast(tf.stack([saturated, pairs, s1, s2]), tf.float64)
            )
        finite = tf.logical_and(tf.math.is_finite(s1), tf.math.is_finite(s2))
        bins = self.bins
        segment = self.use_segment_sum
        if not self.snapshot:
            return
        if self.replicas > 1:
            # Edges from every replica's range (an all-reduce, on snapshot
            # steps only): the counts then add up across replicas.
            lo, hi = self._global_range(y32)
            flat = tf.reshape(y32, [-1])
            ok = tf.math.is_finite(flat)
            values = tf.where(ok, flat, lo)
            n_bad = tf.size(flat) - tf.reduce_sum(tf.cast(ok, tf.int32))
            counts, lohi = _count(values, lo, hi, bins, segment, n_bad)
        else:
            hists, lohis = histograms([y32], bins, segment, finite)
            counts, lohi = hists[0], lohis[0]
        if state.packed:
            self._set_histograms([self.rows[id(state)]], counts[None], lohi[None])
        else:
            state.hist.assign(counts)
            state.lohi.assign(lohi)

    def _add_to_packed(self, state, x, derivative, axes, sums):
        """Adds a packed site's call outside `end_step` (a nested graph, a
        layer's second call in a step) to the packed window state: its
        per-unit peak into `peak`, its counts and sums into `site_sums`.
        NaN derivatives neither fire nor saturate, as in `end_step`."""
        pairs, s1, s2 = sums
        saturated = tf.constant(0.0, tf.float32)
        if derivative is not None:
            peak, saturated = _nan_safe_figures(
                x, derivative, axes, self.saturation_tolerance
            )
            if id(state) in self.peak_slices:
                offset, units = self.peak_slices[id(state)]
                total = int(self.peak.shape[0])
                peak = tf.pad(tf.reshape(peak, [units]), [[offset, total - offset - units]])
                self.peak.assign(tf.maximum(self.peak.read_value(), peak))
        # `site_sums` holds half sums of squares, like `tf.nn.l2_loss`.
        row = tf.stack([saturated, pairs, s1, 0.5 * s2])
        self.site_sums.assign_add(
            tf.scatter_nd(
                [[self.rows[id(state)]]],
                tf.cast(row, tf.float64)[None],
                self.site_sums.shape,
            )
        )

    def _global_range(self, y32):
        """[min, max] of finite values over all replicas (replica context)."""
        flat = tf.reshape(y32, [-1])
        ok = tf.math.is_finite(flat)
        lo = tf.reduce_min(tf.where(ok, flat, np.inf))
        hi = tf.reduce_max(tf.where(ok, flat, -np.inf))
        ctx = tf.distribute.get_replica_context()
        mine = tf.one_hot(ctx.replica_id_in_sync_group, self.replicas) > 0
        both = tf.stack(
            [
                tf.where(mine, lo, tf.zeros_like(lo)),
                tf.where(mine, hi, tf.zeros_like(hi)),
            ]
        )
        both = ctx.all_reduce(tf.distribute.ReduceOp.SUM, both)
        lo = tf.reduce_min(both[0])
        hi = tf.reduce_max(both[1])
        any_finite = lo <= hi
        lo = tf.where(any_finite, lo, 0.0)
        hi = tf.where(any_finite, hi, 0.0)
        hi = tf.where(hi > lo, hi, lo + tf.maximum(tf.abs(lo), 1.0) * 1e-3)
        return lo, hi

    # ---- on the host ----------------------------------------------------

    def read_packed(self):
        """`read_and_reset`'s values in one float64 vector (one device to
        host copy); `raw_layout` says where each is: `(key, offset, shape,
        size)`. The same for every trace: it depends on the variables only.
        """
        parts, layout, offset = [], [], 0
        for key, value in self.read_and_reset():
            shape = tuple(int(d) for d in value.shape)
            size = int(np.prod(shape)) if shape else 1
            layout.append((key, offset, shape, size))
            offset += size
            parts.append(tf.reshape(tf.cast(value, tf.float64), [-1]))
        self.raw_layout = layout
        return tf.concat(parts, axis=0)

    @property
    def finalizes(self):
        """Whether the step being traced ends its record window and hands
        the record its accumulators itself (`read_packed`, as the last thing
        in the step; the callback returns them with the step's logs): a
        snapshot step when every window has one (`one_snapshot`), on one
        device (several replicas need the cross-replica read of the record
        program). This saves the record program's call, a few tenths of a
        millisecond per record."""
        return self.snapshot and self.one_snapshot and self.replicas == 1

    def read_and_reset(self):
        """Reads every accumulator, raw, and resets the window sums (graph
        code, run by `figures.RecordProgram` in cross-replica context).

        Only reads and resets: the record's figures are computed from these
        on the host (`RecordProgram.figures`), so the program is a few
        dozen graph nodes whatever the model's depth.

        Returns:
            A list of `(key, tensor)`: `dstep`, `snap_dstep` (device step
            of the last snapshot), `sumsq` (half the snapshot's sums of
            squares), `nonfinite`, `ghist`, `glohi`; with watched variables
            `dots` (`[dot products, sums of squares of prev]`); with packed
            sites `peak`, `site_sums`, `site_hist`, `site_lohi`; and per
            unpacked site key (several replicas, Maxout) its own variables
            `alive/<key>`, `stats/<key>`, `hist/<key>`, `lohi/<key>`.
        """
        dstep = self.dstep.read_value()
        out = [
            ("dstep", dstep),
            ("snap_dstep", self.snap_dstep.read_value()),
            ("sumsq", self.sumsq.read_value()),
            ("nonfinite", self.nonfinite.read_value()),
            ("ghist", self.ghist.read_value()),
            ("glohi", self.glohi.read_value()),
        ]
        if self.watched_pos:
            out.append(("dots", self.dots.read_value()))
        resets = [self.nonfinite]
        if self.packed:
            out.append(("peak", self.peak.read_value()))
            out.append(("site_sums", self.site_sums.read_value()))
            out.append(("site_hist", self.site_hist.read_value()))
            out.append(("site_lohi", self.site_lohi.read_value()))
            resets += [self.peak, self.site_sums]
        for key, state in self.sites.items():
            if not state.packed:  # packed sites have no own sums
                out.append((f"alive/{key}", state.alive.read_value()))
                out.append((f"stats/{key}", state.stats.read_value()))
                out.append((f"hist/{key}", state.hist.read_value()))
                out.append((f"lohi/{key}", state.lohi.read_value()))
                resets += [state.alive, state.stats]
        with tf.control_dependencies([t for _, t in out]):
            for var in resets:
                var.assign(tf.zeros_like(var))
            self.window_dstep.assign(dstep)
        return out
