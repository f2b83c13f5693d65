"""What the monitor's records say is wrong: findings per layer.

A `Finding` is a condition read from the records (`history`): the figures
are computed once, in `record.py`; this module only compares them with
thresholds. A condition is checked at every record; a finding *begins*
when it has held for `records` consecutive records (the non-finite and
exploding gradients: at once), and *ends* once its figure has been back
past half its threshold (twice, for a lower limit: `_CLEAR`) for as many
consecutive records, so a figure hovering at a threshold does not begin
and end it again and again; `last_step` is the last record where it held. A record that lacks the figure (`None`: no snapshot of the
last step, no applied gradient) leaves a condition as it was, and so does
a record with non-finite gradients for every condition but that one.

Kinds (`KINDS`), with the figures they read:

- `"dying_units"` (per layer): `dead_fraction` >= `dead_fraction`.
- `"vanishing_gradients"` (the first layer, in depth order, with a gradient
  norm): its `gradient_norm` over the last layer's < `vanishing_ratio`
  (a norm of exactly 0 is a dead layer's, not a vanishing one).
- `"exploding_gradients"` (the model, `layer=None`): `global_norm` >
  `exploding_norm`, or >= `exploding_growth` times the first record's.
- `"saturation"` (per layer; sigmoid, tanh, the ELU family):
  `saturation` >= `saturation`.
- `"update_ratio_high"`, `"update_ratio_low"` (per layer): `update_ratio`
  above `update_ratio_high` or below `update_ratio_low`.
- `"nonfinite_gradients"`: a watched variable's gradient has NaN/inf
  elements (`nonfinite` > 0), or the global norm is not finite. Its layer
  is where the values turned non-finite: the first layer in depth order
  whose outputs are not finite (the forward pass), else the last layer in
  depth order whose gradients are not (the backward pass runs from the
  output to the input; once a layer's gradient is not finite, so is every
  gradient before it, so the first layer in depth order says nothing).
"""

import dataclasses
import math
import numbers
from typing import List
from typing import Optional

DESCRIPTION = (
    "What GradientMonitor's records say is wrong: each finding when it begins and when it ends "
    "(keras_activations.monitor.diagnosis)."
)

KINDS = (
    "nonfinite_gradients",
    "exploding_gradients",
    "vanishing_gradients",
    "dying_units",
    "saturation",
    "update_ratio_high",
    "update_ratio_low",
)

# Threshold -> (default, what is valid, check).
THRESHOLDS = {
    "records": (2, "an integer >= 1", lambda v: isinstance(v, numbers.Integral) and v >= 1),
    "dead_fraction": (0.1, "a number in (0, 1] or None", lambda v: 0 < v <= 1),
    "vanishing_ratio": (1e-3, "a number > 0 or None", lambda v: v > 0),
    "exploding_norm": (1e3, "a number > 0 or None", lambda v: v > 0),
    "exploding_growth": (1e3, "a number > 1 or None", lambda v: v > 1),
    "saturation": (0.25, "a number in (0, 1] or None", lambda v: 0 < v <= 1),
    "update_ratio_high": (1e-1, "a number > 0 or None", lambda v: v > 0),
    "update_ratio_low": (1e-5, "a number >= 0 or None", lambda v: v >= 0),
}


def resolve_thresholds(overrides: Optional[dict] = None, dead_fraction: Optional[float] = 0.1) -> dict:
    """The thresholds: `THRESHOLDS`' defaults, `dead_fraction` (the
    monitor's `dead_warning_threshold`), then `overrides`.

    Args:
        overrides: A dict of threshold name -> value, or `None`. `None` as a
            value turns that finding off (all but `records`).
        dead_fraction: The dying-units threshold, or `None` (off).

    Returns:
        A dict with every name of `THRESHOLDS`.

    Raises:
        ValueError: naming the argument, the threshold, its value and what
            is valid.
    """
    out = {name: default for name, (default, _, _) in THRESHOLDS.items()}
    out["dead_fraction"] = dead_fraction
    if overrides is None:
        return out
    if not isinstance(overrides, dict):
        raise TypeError(
            "GradientMonitor: argument `diagnosis_thresholds` must be a dict of "
            f"threshold name -> value, or None. Received: {overrides!r}"
        )
    for name, value in overrides.items():
        if name not in THRESHOLDS:
            raise ValueError(
                "GradientMonitor: argument `diagnosis_thresholds` has an unknown "
                f"threshold {name!r}. Valid names: {sorted(THRESHOLDS)}"
            )
        _, valid, check = THRESHOLDS[name]
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        ok = (value is None and name != "records") or (
            number and math.isfinite(value) and check(value)
        )
        if not ok:
            raise ValueError(
                f"GradientMonitor: argument `diagnosis_thresholds`[{name!r}] must "
                f"be {valid}. Received: {value!r}"
            )
        out[name] = value
    low, high = out["update_ratio_low"], out["update_ratio_high"]
    if low is not None and high is not None and not low < high:
        raise ValueError(
            "GradientMonitor: argument `diagnosis_thresholds` must have "
            "update_ratio_low < update_ratio_high. Received: "
            f"update_ratio_low={low!r}, update_ratio_high={high!r}"
        )
    return out


@dataclasses.dataclass
class Finding:
    """One thing the records say is wrong.

    Attributes:
        kind: One of `KINDS`, e.g. `"dying_units"`.
        layer: The layer's record name, or `None` for the whole model
            (exploding gradients).
        first_step: The step of the first record where the condition held.
        last_step: The step of the last record where it held, or `None`
            while it still holds.
        evidence: The figures (as of the record where the finding began)
            and the thresholds they were compared with.
        message: What is wrong and what usually helps, in one paragraph.
    """

    kind: str
    layer: Optional[str]
    first_step: int
    last_step: Optional[int]
    evidence: dict
    message: str

    def to_dict(self):
        """The finding as plain, JSON-able data."""
        return dataclasses.asdict(self)

    def describe(self, event=None):
        """A line for warnings and text: `event` is `"began"`, `"ended"` or
        `None` (the finding's whole span)."""
        where = "the model" if self.layer is None else f"layer {self.layer!r}"
        if event == "ended":
            return (
                f"GradientMonitor: {self.kind} of {where} ended: it held from "
                f"step {self.first_step} to step {self.last_step}."
            )
        span = f"steps {self.first_step}-{self.last_step}" if self.last_step is not None else (
            f"since step {self.first_step}"
        )
        return f"GradientMonitor: {self.kind} of {where} ({span}): {self.message}"


def _finite(value):
    return value is not None and math.isfinite(value)


def _layers(record):
    """The record's layers in depth order: `[(name, entry)]`."""
    return sorted(record["layers"].items(), key=lambda item: item[1]["depth"])


def _pct(value):
    return f"{value:.0%}"


# ---- conditions: record -> {layer: (holds, evidence, message)} -------------
# `holds` is True, False or None (the record lacks the figure).


def _per_layer(figure, threshold, holds, explain, extra=()):
    """A condition on one figure of each layer: `holds(value, limit)`,
    `explain(value, limit, entry)` the message; `extra`: more of the
    entry's figures for the evidence."""

    def condition(record, t, state):
        limit = t[threshold]
        out = {}
        for name, e in _layers(record):
            value = e.get(figure)
            if limit is None or value is None:
                continue
            evidence = {figure: value, **{k: e.get(k) for k in extra}, "threshold": limit,
                        "records": t["records"]}
            out[name] = (holds(value, limit), evidence, explain(value, limit, e))
        return out

    return condition


_dying = _per_layer(
    "dead_fraction", "dead_fraction", lambda v, limit: v >= limit,
    lambda v, limit, e: (
        f"{_pct(v)} of its units are dead ({e.get('dead_units')} of {e.get('units')}; threshold "
        f"{_pct(limit)}): their activation's derivative was 0 for every example, so they pass no "
        "gradient and stopped learning. What usually helps: a leaky, parametric or ELU-family "
        "activation (keras_activations.LeakyReLU, PReLU, ELU), a lower learning rate, He "
        "initialization (he_normal), or a small positive bias (bias_initializer=Constant(0.01))."
    ),
    extra=("dead_units", "units"),
)

_saturation = _per_layer(
    "saturation", "saturation", lambda v, limit: v >= limit,
    lambda v, limit, e: (
        f"{_pct(v)} of its unit-example pairs are saturated (threshold {_pct(limit)}): the "
        "activation sits on a flat tail, where its derivative is nearly 0 and little gradient passes. "
        "What usually helps: inputs scaled to mean 0 and variance 1, smaller initial weights "
        "(glorot_uniform; lecun_normal for SELU), a normalization layer before the activation, a "
        "lower learning rate, or a rectifier (ReLU family) for hidden layers."
    ),
)

_update_ratio_high = _per_layer(
    "update_ratio", "update_ratio_high", lambda v, limit: not v <= limit,  # NaN holds
    lambda v, limit, e: (
        f"each step changes its weights by {v:.3g} of their norm (above {limit:g}; about 1e-3 is "
        "usual): the learning rate is probably too high for this layer. What usually helps: a lower "
        "learning rate, a learning-rate warm-up or schedule, or gradient clipping (clipnorm=1.0)."
    ),
)

_update_ratio_low = _per_layer(
    "update_ratio", "update_ratio_low", lambda v, limit: v < limit,
    lambda v, limit, e: (
        f"each step changes its weights by {v:.3g} of their norm (below {limit:g}; about 1e-3 is "
        "usual): the layer barely learns, the learning rate is probably too low for it (or its "
        "gradient vanishes). What usually helps: a higher learning rate, or an adaptive optimizer "
        "(Adam)."
    ),
)


def _vanishing(record, t, state):
    limit = t["vanishing_ratio"]
    norms = [(name, e["gradient_norm"]) for name, e in _layers(record) if e.get("gradient_norm") is not None]
    if limit is None or len(norms) < 2:
        return {}
    (first, a), (last, b) = norms[0], norms[-1]
    if not (_finite(a) and _finite(b) and a > 0 and b > 0):
        # Exactly 0 is a dead layer's gradient (`dying_units`), not a vanishing one.
        return {first: (None, None, None)}
    ratio = a / b
    evidence = {"first_layer": first, "last_layer": last, "first_norm": a, "last_norm": b,
                "ratio": ratio, "threshold": limit, "records": t["records"]}
    message = (
        f"its gradient norm is {ratio:.2g} of the last layer's ({last!r}; threshold {limit:g}): "
        "gradients vanish on their way to the input, so the first layers barely learn. What usually "
        "helps: a rectifier (ReLU family) with He initialization (he_normal), or SELU with lecun_normal "
        "initialization, normalization layers (BatchNormalization, LayerNormalization), or residual "
        "connections."
    )
    return {first: (ratio < limit, evidence, message)}


def _exploding(record, t, state):
    norm, limit, growth = record.get("global_norm"), t["exploding_norm"], t["exploding_growth"]
    if norm is None or (limit is None and growth is None):
        return {}
    if not _finite(norm):
        return {None: (None, None, None)}  # `nonfinite_gradients` says so
    if state.get("first_norm") is None and norm > 0:
        state["first_norm"] = norm
    first = state.get("first_norm")
    grew = norm / first if first else None
    above = limit is not None and norm > limit
    grown = growth is not None and grew is not None and grew >= growth
    evidence = {"global_norm": norm, "first_norm": first, "growth": grew,
                "exploding_norm": limit, "exploding_growth": growth}
    reason = f"above {limit:g}" if above else f"{grew or 0:.3g} times the first record's"
    message = (
        f"the global gradient norm is {norm:.3g} ({reason}): gradients explode, and the weights may soon "
        "turn NaN. What usually helps: a lower learning rate, gradient clipping (clipnorm=1.0 in the "
        "optimizer), normalization layers, or a smaller initialization."
    )
    return {None: (above or grown, evidence, message)}


def _nonfinite(record, t, state):
    counts = {path: v["nonfinite"] for path, v in record["variables"].items()}
    bad = any(c > 0 for c in counts.values())
    norm = record.get("global_norm")
    if not bad and norm is not None and not _finite(norm):
        bad = True
    if record.get("gradient_step") is None and not bad:
        return {}
    layers = _layers(record)
    forward = [n for n, e in layers if e.get("activation_mean") is not None and not _finite(e["activation_mean"])]
    backward = [n for n, e in layers if e.get("gradient_norm") is not None and not _finite(e["gradient_norm"])]
    layer = forward[0] if forward else (backward[-1] if backward else None)
    if layer is None:
        where = ""
    elif forward:
        where = f", first at layer {layer!r} in the forward pass: its outputs are not finite"
    else:
        where = f", first at layer {layer!r} in the backward pass: its gradients are not finite"
    if layer is not None:
        where += (" (the layers after it in depth order are affected in the forward pass, those before it"
                  " in the backward pass)")
    window = [record["step"] - record["steps"] + 1, record["step"]]
    evidence = {"layer": layer, "nonfinite": {p: c for p, c in counts.items() if c > 0},
                "global_norm": norm, "window": window, "nonfinite_outputs": forward,
                "nonfinite_gradients": backward}
    message = (
        f"gradients turned NaN/inf in steps {window[0]}-{window[1]}{where}. What usually helps: check the "
        "data for NaN/inf, a lower learning rate, gradient "
        "clipping, a numerically safe loss (from_logits=True), or `keras.callbacks.TerminateOnNaN`."
    )
    return {None: (bad, evidence, message)}  # one run for the model; the finding names `layer`


# The thresholds a finding under way must be back past to end: half an
# upper limit, twice a lower one (of the conditions that need `records`).
_CLEAR = {
    "dead_fraction": 0.5,
    "saturation": 0.5,
    "update_ratio_high": 0.5,
    "vanishing_ratio": 2.0,
    "update_ratio_low": 2.0,
}

_CONDITIONS = {
    "nonfinite_gradients": (_nonfinite, False),  # (condition, needs `records` records)
    "exploding_gradients": (_exploding, False),
    "vanishing_gradients": (_vanishing, True),
    "dying_units": (_dying, True),
    "saturation": (_saturation, True),
    "update_ratio_high": (_update_ratio_high, True),
    "update_ratio_low": (_update_ratio_low, True),
}


class Diagnosis:
    """Findings of a run, updated one record at a time.

    Args:
        thresholds: The dict of `resolve_thresholds()`.

    Example:

    >>> tracker = Diagnosis(resolve_thresholds())
    >>> for record in monitor.history:
    ...     for finding, event in tracker.update(record):
    ...         print(finding.describe(event))
    """

    def __init__(self, thresholds):
        self.thresholds = dict(thresholds)
        # A finding under way holds until its figure is back past half (or
        # twice) its threshold: a figure hovering at a threshold does not
        # begin and end it again and again.
        self._clear = {
            name: (None if v is None else v * _CLEAR.get(name, 1)) for name, v in self.thresholds.items()
        }
        self.findings = []
        self._runs = {}  # (kind, layer) -> run of records where it holds
        self._state = {kind: {} for kind in KINDS}

    def update(self, record):
        """Checks one record. Returns `[(finding, "began" | "ended")]`."""
        t = self.thresholds
        events = []
        for kind in KINDS:
            condition, persists = _CONDITIONS[kind]
            needed = t["records"] if persists else 1
            checked = condition(record, t, self._state[kind]).items()
            ongoing = [k for (kind_, k), run in self._runs.items() if kind_ == kind and run["finding"]]
            cleared = condition(record, self._clear, {}) if persists and ongoing else {}
            for key, (holds, evidence, message) in checked:
                if key in ongoing and key in cleared:
                    holds = cleared[key][0]
                if holds is not None:
                    events += self._step((kind, key), holds, record["step"], needed, evidence, message)
            if kind == "nonfinite_gradients" and any(holds for _, (holds, _, _) in checked):
                break  # the other figures are of non-finite values: they say no more
        return events

    def _step(self, key, holds, step, needed, evidence, message):
        run = self._runs.get(key)
        if not holds:
            if run is None:
                return []
            finding = run["finding"]
            run["misses"] += 1
            # A finding ends once it has not held for as many consecutive
            # records as it took to begin (no flicker around a threshold).
            if finding is None or run["misses"] >= needed:
                del self._runs[key]
            if finding is None or run["misses"] < needed:
                return []
            finding.last_step = run["last"]
            return [(finding, "ended")]
        if run is None:
            run = self._runs[key] = {"first": step, "count": 0, "misses": 0, "finding": None}
        run["count"] += 1
        run["misses"] = 0
        run["last"] = step
        if run["finding"] is not None or run["count"] < needed:
            return []
        layer = evidence.pop("layer", key[1])
        run["finding"] = Finding(key[0], layer, run["first"], None, evidence, message)
        self.findings.append(run["finding"])
        return [(run["finding"], "began")]


def diagnose(history: list, thresholds: Optional[dict] = None) -> List[Finding]:
    """The findings of a list of records (`GradientMonitor.history`), in
    the order they began.

    Args:
        history: Records, oldest first.
        thresholds: The dict of `resolve_thresholds()`; `None` for the defaults.

    Returns:
        A list of `Finding`.

    Example:

    >>> diagnose(monitor.history)
    [Finding(kind='dying_units', layer='dense_2', first_step=1, last_step=None, ...)]
    """
    tracker = Diagnosis(thresholds if thresholds is not None else resolve_thresholds())
    for record in history:
        tracker.update(record)
    return list(tracker.findings)


def format_findings(findings):
    """Findings as text lines, one per finding (empty: no line)."""
    return "\n".join(f.describe() for f in findings)
