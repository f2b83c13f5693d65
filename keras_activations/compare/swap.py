"""Swapping the activations of a user's model for one candidate, with `keras.models.clone_model`.

Every elementwise activation of a Functional or Sequential model is swapped: the `activation`
argument of `Dense`, `Conv*` and other layers that take one (the layer becomes linear and a new
activation layer follows it, named `<layer>_activation`), and activation layers (Keras's `ReLU`,
`LeakyReLU`, `ELU`, `PReLU`, `Activation` and the package's elementwise layers, replaced under
the same name). Never swapped: the output layer's activation (softmax, sigmoid, ... up to the first
layer with a kernel from each output), recurrent layers (their gates and cell activations), layers
named in `exclude`, non-elementwise activations (softmax, GLU, maxout), unknown callables and the
layers of nested models (listed, not entered).

Unless `keep_init`, every hidden kernel (not the output layer's) is re-initialized with the
initializer the candidate calls for, seeded per layer; with `keep_init` the clone starts from the
given model's weights.
"""

import dataclasses

import keras

from keras_activations.compare import models
from keras_activations.compare.errors import ModelError

# Activations that are not elementwise (or are the identity): never swapped.
NOT_ELEMENTWISE = ("linear", "softmax", "log_softmax", "glu", "sparsemax", "maxout")
KERAS_ACTIVATION_LAYERS = (
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
    keras.layers.Activation,
)
# Layers that pass a single input on without a kernel: walked through to find a
# layer's feeding kernel (Conv -> BatchNormalization -> ReLU) or the output head.
_PASS_THROUGH = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.Dropout,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Activation,
    keras.layers.Softmax,
)


@dataclasses.dataclass(frozen=True)
class Site:
    """One activation of the given model and what `compare` does with it.

    Attributes:
        layer: Layer name in the given model.
        kind: `"argument"` (a layer's `activation=`) or `"layer"` (an activation layer).
        original: The activation there, e.g. `"relu"` or `"PReLU"`.
        swapped: Whether candidates replace it.
        reason: Why not, when not swapped (e.g. `"output layer"`).
    """

    layer: str
    kind: str
    original: str
    swapped: bool
    reason: str = None

    def to_dict(self):
        """Plain JSON-able dict."""
        return dataclasses.asdict(self)


def _package_layer_classes():
    import keras_activations as ka

    return (ka.ELU, ka.SELU, ka.CELU, ka.PELU, ka.ISRLU, ka.LeakyReLU,
            ka.AbsRectifier, ka.PReLU, ka.RReLU)


def activation_name(fn):
    """The name of an activation callable: `"relu"`, `"elu"` (ours), or None for unknown ones."""
    from keras_activations import get_spec

    spec = get_spec(fn)
    if spec is not None:
        return spec.name
    name = getattr(fn, "__name__", None)
    if name and getattr(keras.activations, name, None) is fn:
        return name
    return None


def _is_activation_layer(layer):
    return isinstance(layer, KERAS_ACTIVATION_LAYERS + _package_layer_classes())


def _config(layer):
    """The layer's config, or {} for a custom layer without `get_config`."""
    try:
        return layer.get_config()
    except NotImplementedError:
        return {}


def _has_kernel(layer):
    return "kernel_initializer" in _config(layer)


def _is_recurrent(layer):
    return isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))


def _graph(model):
    """(layers, producer): layers in order and, per layer name, the name of the layer that
    produced its single input (None for several inputs, a model input or a shared layer)."""
    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    producer = {}
    if isinstance(model, keras.Sequential):
        previous = None
        for layer in layers:
            producer[layer.name] = previous
            previous = layer.name
        return layers, producer
    made_by = {}
    for layer in layers:
        try:
            made_by[id(layer.output)] = layer.name
        except (AttributeError, ValueError):  # shared layer: several nodes
            pass
    for layer in layers:
        try:
            inputs = layer.input
        except (AttributeError, ValueError):
            inputs = None
        producer[layer.name] = (
            made_by.get(id(inputs)) if inputs is not None and not isinstance(inputs, (list, tuple, dict)) else None
        )
    return layers, producer


def _output_layers(model, layers, producer):
    """Names of the layers from each output back to (and including) its first kernel layer."""
    by_name = {l.name: l for l in layers}
    if isinstance(model, keras.Sequential):
        ends = [layers[-1].name] if layers else []
    else:
        ends = []
        for layer in layers:
            try:
                out = layer.output
            except (AttributeError, ValueError):
                continue
            if any(out is t for t in model.outputs):
                ends.append(layer.name)
    head = set()
    for name in ends:
        while name is not None and name not in head:
            head.add(name)
            layer = by_name[name]
            if _has_kernel(layer) or not isinstance(layer, _PASS_THROUGH + _package_layer_classes() + KERAS_ACTIVATION_LAYERS):
                break
            name = producer.get(name)
    return head


def find_sites(model, exclude=()):
    """The activations of `model` (a Functional or Sequential model) and whether each is swapped.

    Args:
        model: A built Functional or Sequential `keras.Model`.
        exclude: Layer names whose activations are kept.

    Returns:
        A list of `Site`, in layer order.
    """
    layers, producer = _graph(model)
    head = _output_layers(model, layers, producer)
    sites = []
    for layer in layers:
        if isinstance(layer, keras.Model):
            sites.append(Site(layer.name, "model", type(layer).__name__, False,
                              "nested model: its layers are not swapped (flatten it, or "
                              "pass a builder)"))
            continue
        if _is_recurrent(layer):
            sites.append(Site(layer.name, "argument", type(layer).__name__, False,
                              "recurrent layer (gates and cell kept)"))
            continue
        if _is_activation_layer(layer):
            kind = "layer"
            fn = getattr(layer, "activation", None) if isinstance(layer, keras.layers.Activation) else None
            original = activation_name(fn) if fn is not None else type(layer).__name__
            if fn is not None and original is None:
                original = getattr(fn, "__name__", repr(fn))
                known = False
            else:
                known = True
        elif "activation" in _config(layer) and hasattr(layer, "activation"):
            kind = "argument"
            original = activation_name(layer.activation)
            if original == "linear" or layer.activation is None:
                continue
            known = original is not None
            original = original or getattr(layer.activation, "__name__", repr(layer.activation))
        else:
            continue
        if layer.name in exclude:
            reason = "excluded"
        elif layer.name in head:
            reason = "output layer"
        elif not known:
            reason = "unknown activation (not known to be elementwise)"
        elif original in NOT_ELEMENTWISE:
            reason = "not elementwise"
        else:
            reason = None
        sites.append(Site(layer.name, kind, original, reason is None, reason))
    return sites


def hidden_index_map(model, sites):
    """Hidden-layer index of each layer name: kernel layers in order, each activation sharing
    the index of the kernel layer feeding it (through normalization/dropout), for the report's
    per-depth figures. The output head is left out."""
    layers, producer = _graph(model)
    head = _output_layers(model, layers, producer)
    by_name = {l.name: l for l in layers}
    swapped = {s.layer: s for s in sites if s.swapped}
    index, paired, next_index = {}, set(), 0
    for layer in layers:
        name = layer.name
        if name in head:
            continue
        if _has_kernel(layer) and not _is_recurrent(layer):
            index[name] = next_index
            next_index += 1
            if swapped.get(name) is not None and swapped[name].kind == "argument":
                index[f"{name}_activation"] = index[name]
                paired.add(name)
        elif name in swapped:
            feeder = producer.get(name)
            while feeder is not None and feeder not in index and isinstance(by_name[feeder], _PASS_THROUGH):
                feeder = producer.get(feeder)
            if feeder in index and feeder not in paired:
                index[name] = index[feeder]
                paired.add(feeder)
            else:
                index[name] = next_index
                next_index += 1
    return index


def _functional_view(model, input_shape):
    """A Functional model over a Sequential model's layers (clone_model's call_function,
    which inserts layers, works on Functional models only)."""
    if not model.built or not model.layers or getattr(model, "inputs", None) is None:
        if input_shape is None:
            raise ModelError(
                f"the Sequential model {model.name!r} is not built; give it a keras.Input "
                f"or build it (model.build(input_shape))."
            )
        model.build((None,) + tuple(input_shape))
    inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
    x = inputs
    for layer in model.layers:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def check_clonable(model):
    """Raises `ModelError` unless `model` is a Functional or Sequential model."""
    from keras_activations import _backend

    if not isinstance(model, keras.Model):
        raise ModelError(
            f"expected a keras.Model, a .keras file or a builder; got "
            f"{type(model).__name__}."
        )
    if not (isinstance(model, keras.Sequential) or _backend.is_functional_model(model)):
        raise ModelError(
            f"model {model.name!r} is a subclassed keras.Model ({type(model).__name__}), whose "
            f"layers compare cannot rewire; pass a builder instead (a function "
            f"build(activation) returning the model), e.g. --model my_project.models:build."
        )


def swap_activations(model, choice, seed=0, keep_init=False, exclude=(), input_shape=None,
                     rrelu_seed=None):
    """A fresh copy of `model` with `choice` in place of every swappable activation.

    Args:
        model: A Functional or Sequential `keras.Model` (built, or a Sequential that
            `input_shape` builds).
        choice: A `models.ActivationChoice` (not maxout: it changes the width of the layer
            before it, so it needs a builder).
        seed: Seed of the re-initialized kernels (hidden kernel i gets `seed + i`).
        keep_init: Start from `model`'s weights instead of re-initializing.
        exclude: Layer names whose activations are kept.
        input_shape: Shape of one example, to build an unbuilt Sequential model.
        rrelu_seed: Seed of RReLU's random slopes.

    Returns:
        `(clone, sites)`: the new, uncompiled model (named `<model>_<candidate>`) and the
        list of `Site`s of the given model.

    Raises:
        ModelError: A subclassed model, maxout, or a model without an activation to swap.

    Example:

    >>> clone, sites = swap_activations(model, models.resolve("elu"))  # doctest: +SKIP
    >>> [(s.layer, s.original) for s in sites if s.swapped]  # doctest: +SKIP
    [('dense', 'relu'), ('re_lu', 'ReLU')]
    """
    check_clonable(model)
    if choice.name == "maxout":
        raise ModelError(
            "maxout as a candidate needs a builder: it changes the width of the layer before "
            "it, which a given model fixes; pass a function build(activation) (e.g. --model "
            "my_project.models:build) that widens that layer by --maxout-pieces for "
            "'maxout', or leave maxout out of --activations."
        )
    source = model
    if isinstance(model, keras.Sequential):
        source = _functional_view(model, input_shape)
    # A Sequential model's graph is its order (the view's layers have two nodes).
    sites = find_sites(model, exclude)
    if not any(s.swapped for s in sites):
        kept = "; ".join(f"{s.layer}: {s.original} ({s.reason})" for s in sites) or "none found"
        raise ModelError(
            f"model {model.name!r} has no activation to swap (activations: {kept}); compare "
            f"swaps the activation arguments of Dense/Conv layers and activation layers "
            f"other than the output layer's."
        )
    layers, producer = _graph(model)
    head = _output_layers(model, layers, producer)
    plan = {s.layer: s for s in sites if s.swapped}
    kernel_seeds = {}
    for layer in layers:
        if _has_kernel(layer) and layer.name not in head and not _is_recurrent(layer):
            kernel_seeds[layer.name] = seed + len(kernel_seeds)
    inserted = {}

    def rank_of(layer):
        try:
            return len(layer.output.shape)
        except (AttributeError, ValueError):
            return 2

    def new_activation(name, rank):
        shared = list(range(1, rank - 1)) if rank > 2 else None
        return models.activation_layer(choice, name, shared_axes=shared, seed=rrelu_seed)

    def clone_function(layer):
        site = plan.get(layer.name)
        if site is not None and site.kind == "layer":
            return new_activation(layer.name, rank_of(layer))
        config = _config(layer)
        if not keep_init and layer.name in kernel_seeds:
            config["kernel_initializer"] = {
                "class_name": choice.initializer,
                "config": {"seed": kernel_seeds[layer.name]},
            }
        if site is not None:  # kind "argument"
            config["activation"] = "linear"
        try:
            clone = layer.__class__.from_config(config)
        except (TypeError, ValueError, NotImplementedError) as e:
            raise ModelError(
                f"layer {layer.name!r} ({type(layer).__name__}) cannot be re-created from its "
                f"get_config ({type(e).__name__}: {str(e).strip().splitlines()[-1]}), so compare "
                f"cannot clone the model; complete its get_config, or pass a builder "
                f"(build(activation)) instead of the model."
            ) from None
        if site is not None:
            inserted[id(clone)] = new_activation(f"{layer.name}_activation", rank_of(layer))
        return clone

    def call_function(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        act = inserted.get(id(layer))
        return act(out) if act is not None else out

    from keras_activations import _backend

    with _backend.cloning_scope():
        clone = keras.models.clone_model(source, clone_function=clone_function,
                                         call_function=call_function)
    inputs = clone.inputs[0] if len(clone.inputs) == 1 else clone.inputs
    outputs = clone.outputs[0] if len(clone.outputs) == 1 else clone.outputs
    clone = keras.Model(inputs, outputs, name=f"{model.name}_{choice.slug}")
    if keep_init:
        for layer in layers:
            site = plan.get(layer.name)
            if (site is not None and site.kind == "layer") or not layer.weights:
                continue
            target = clone.get_layer(layer.name)
            weights = layer.get_weights()
            if [w.shape for w in weights] == [w.shape for w in target.get_weights()]:
                target.set_weights(weights)
    return clone, sites
