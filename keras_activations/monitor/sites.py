"""What `GradientMonitor` watches: layers, their variables, activation sites.

An *activation site* is a place where an elementwise activation is applied
and whose input (pre-activation) and output the monitor can see:

- a layer with an `activation` attribute that its `call` applies (`Dense`,
  `Conv*`, `EinsumDense`, `Activation`...), unless the activation is linear;
- a Keras activation layer (`ReLU`, `LeakyReLU`, `ELU`, `PReLU`) or one of
  this package's layers (anything with `layer.derivative(inputs)`, and
  `Maxout`, whose "units" are its pieces).

A *unit* is one feature/channel of the site's output: the last axis, or
axis 1 for `channels_first` layers (and for activation layers that follow
one in a functional graph).

Recurrent layers (`keras.layers.RNN` and its subclasses `LSTM`, `GRU`,
`SimpleRNN`, also inside `Bidirectional`) are watched as one layer: the
variables of their cells count as the recurrent layer's, and the
activations applied inside the time loop are not sites.
"""

import warnings
from typing import Callable
from typing import Optional

import keras

from keras_activations import builtin_derivatives
from keras_activations.monitor import compat


class Site:
    """One activation site of a watched layer.

    Attributes:
        layer: The Keras layer.
        name: Name used in records (the watched layer's record name).
        kind: `"attribute"` (wrap `layer.activation`) or `"call"` (wrap
            `layer.call`).
        derivative: Callable `x -> f'(x)`, or `None` when unknown.
        of_output: The same derivative as a function of the output
            (`builtin_derivatives.Derivative.of_output`), or `None`.
        can_die: Whether `f'` can be exactly 0 (see `builtin_derivatives`).
        saturates: Whether `f'` tends to 0 without being 0 on a region
            (`builtin_derivatives.Derivative.saturates`): the share of pairs
            with a tiny `|f'|` is then the site's `saturation`, else its
            `inactive_fraction`.
        activation_name: Name of the activation, for messages.
        unit_axis: Axis of the output that indexes units.
        pieces: For `Maxout`, the number of pieces per unit, else `None`.
        units: Number of units (set by discovery), `None` until then.
    """

    def __init__(
        self,
        layer,
        name: str,
        kind: str,
        derivative: Optional[Callable],
        can_die: bool,
        activation_name: str,
        unit_axis: int,
        pieces: Optional[int] = None,
        of_output: Optional[Callable] = None,
        saturates: bool = False,
    ):
        self.layer = layer
        self.name = name
        self.kind = kind
        self.derivative = derivative
        self.can_die = can_die
        self.activation_name = activation_name
        self.unit_axis = unit_axis
        self.pieces = pieces
        self.of_output = of_output
        self.saturates = bool(saturates)
        self.units = None
        self.track_dead = False
        self.output_units = None
        self.rank = None

    def __repr__(self):
        return (
            f"Site({self.name!r}, {self.activation_name}, units={self.units})"
        )


def _is_linear(fn) -> bool:
    if fn is None:
        return True
    try:
        return fn is keras.activations.linear or (
            getattr(fn, "__name__", None) == "linear"
            and getattr(fn, "__module__", "").startswith("keras")
        )
    except TypeError:
        return False


def _activation_label(fn) -> str:
    if isinstance(fn, str):
        return fn
    return getattr(fn, "__name__", None) or type(fn).__name__


def _upstream_data_format(layer, depth=0):
    """`data_format` of `layer` or of the layer feeding it (functional)."""
    fmt = getattr(layer, "data_format", None)
    if fmt is not None or depth > 8:
        return fmt
    for parent in compat.parent_layers(layer):
        return _upstream_data_format(parent, depth + 1)
    return None


def _unit_axis(layer) -> int:
    if _upstream_data_format(layer) == "channels_first":
        return 1
    return -1


def flatten_layers(model):
    """Every layer inside `model` (recursively), parents before children,
    except the layers inside a recurrent layer."""
    out = []
    inside = set()
    for layer in compat.flatten_layers(model):
        if id(layer) in inside:
            continue
        out.append(layer)
        if isinstance(layer, keras.layers.RNN):
            inside.update(id(sub) for sub in compat.flatten_layers(layer))
    return out


def _own_variables(layer):
    """Trainable variables `layer` owns: its own, and for a recurrent layer
    every variable of its cells."""
    if isinstance(layer, keras.layers.RNN):
        return list(layer.trainable_variables)
    return compat.own_trainable_variables(layer)


def make_site(layer, name: str) -> Optional[Site]:
    """Builds the `Site` of `layer`, or returns `None` if it has none."""
    unit_axis = _unit_axis(layer)
    if callable(getattr(layer, "winning_piece", None)):
        pieces = int(getattr(layer, "pieces"))
        axis = getattr(layer, "axis", -1)
        return Site(
            layer,
            name,
            "call",
            None,
            True,
            "maxout",
            axis if axis is not None else -1,
            pieces=pieces,
        )
    if isinstance(layer, keras.layers.RNN):
        return None
    if isinstance(layer, keras.layers.Activation) or (
        "activation" in vars(layer) and callable(vars(layer)["activation"])
    ):
        fn = vars(layer).get("activation")
        if fn is None or _is_linear(fn):
            return None
        resolved = builtin_derivatives.resolve_function(fn)
        return Site(
            layer,
            name,
            "attribute",
            resolved.fn if resolved else None,
            resolved.can_die if resolved else True,
            resolved.name if resolved else _activation_label(fn),
            unit_axis,
            of_output=resolved.of_output if resolved else None,
            saturates=resolved.saturates if resolved else False,
        )
    resolved = builtin_derivatives.resolve_layer(layer)
    if resolved is not None:
        return Site(
            layer,
            name,
            "call",
            resolved.fn,
            resolved.can_die,
            resolved.name,
            unit_axis,
            of_output=resolved.of_output,
            saturates=resolved.saturates,
        )
    return None


def _record_names(layers):
    """Unique, stable record names for layers (layer.name, de-duplicated)."""
    names = {}
    seen = {}
    for layer in layers:
        base = layer.name
        count = seen.get(base, 0)
        seen[base] = count + 1
        names[id(layer)] = base if count == 0 else f"{base}_{count}"
    return names


def select(model, layers=None):
    """Finds what to watch in `model`.

    Args:
        model: A built Keras model.
        layers: `None` (watch everything), or a list of layer names or
            layer objects to limit the watch to.

    Returns:
        `(watched, sites, variables)`: `watched` is a list of
        `(name, layer)` in model order; `sites` a list of `Site`;
        `variables` a list of `(variable, owner name or None, watched)`
        for every trainable variable of the model, in
        `model.trainable_variables` order (the global norm covers them
        all; histograms and per-layer figures only the watched ones).

    Raises:
        ValueError: if `layers` names a layer the model does not have.
    """
    all_layers = flatten_layers(model)
    names = _record_names(all_layers)
    owner = {}
    for layer in all_layers:  # parents first: the deepest owner wins
        for v in _own_variables(layer):
            owner[id(v)] = layer
    wanted = None
    if layers is not None:
        by_name = {layer.name: layer for layer in all_layers}
        wanted = set()
        for item in layers:
            if isinstance(item, str):
                if item not in by_name:
                    raise ValueError(
                        "GradientMonitor: argument `layers` names a layer "
                        f"that the model does not have: {item!r}. Valid "
                        f"names: {sorted(by_name)}"
                    )
                wanted.add(id(by_name[item]))
            elif any(item is layer for layer in all_layers):
                wanted.add(id(item))
            else:
                raise ValueError(
                    "GradientMonitor: argument `layers` holds an object "
                    f"that is not a layer of the model: {item!r}. Pass "
                    "layer names or the model's layer objects."
                )
    trainable = list(model.trainable_variables)
    trainable_ids = {id(v) for v in trainable}
    watched = []
    sites = []
    for layer in all_layers:
        if wanted is not None and id(layer) not in wanted:
            continue
        name = names[id(layer)]
        has_vars = any(
            id(v) in trainable_ids for v in _own_variables(layer)
        )
        try:
            site = make_site(layer, name)
        except Exception as e:  # a broken third-party layer: skip its site
            warnings.warn(
                f"GradientMonitor: cannot watch the activation of layer "
                f"{layer.name!r} ({e}); skipping it.",
                stacklevel=2,
            )
            site = None
        if has_vars or site is not None:
            watched.append((name, layer))
        if site is not None:
            sites.append(site)
    watched_ids = {id(layer) for _, layer in watched}
    variables = []
    for v in trainable:
        layer = owner.get(id(v))
        name = names[id(layer)] if layer is not None else None
        if wanted is None:
            variables.append((v, name, True))
        else:
            variables.append(
                (v, name, layer is not None and id(layer) in watched_ids)
            )
    return watched, sites, variables
