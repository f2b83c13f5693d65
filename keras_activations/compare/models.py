"""The networks `compare` trains: the same MLP or CNN, once per activation.

Each activation gets the weight initialization it calls for: He for the
rectifier and ELU families, LeCun normal for SELU (self-normalization needs
it) and maxout, Glorot for the squashing sigmoid/tanh family.
"""

import dataclasses
import re

import keras

# Keras's own activations that `compare` accepts besides the package's own.
KERAS_ACTIVATIONS = (
    "relu",
    "sigmoid",
    "tanh",
    "softplus",
    "softsign",
    "hard_sigmoid",
    "silu",
    "gelu",
    "mish",
    "linear",
)

# Activations that want Glorot (variance-preserving for odd, bounded functions).
_GLOROT = ("sigmoid", "tanh", "softsign", "hard_sigmoid", "linear")
# Activations that want LeCun normal: SELU (self-normalization is derived for
# it) and maxout (the max of 2 i.i.d. zero-mean pieces keeps their second
# moment, so He's factor 2 would double it at every layer).
_LECUN = ("selu", "maxout")

_INIT_REASON = {
    "he_normal": "He normal, for rectifiers",
    "lecun_normal": "LeCun normal, for self-normalization / maxout",
    "glorot_uniform": "Glorot uniform, for sigmoid/tanh-like",
}


class UnknownActivationError(ValueError):
    """An activation name `compare` does not know; the message lists the known ones."""


@dataclasses.dataclass(frozen=True)
class ActivationChoice:
    """One activation as `compare` uses it.

    Attributes:
        name: The name given on the command line, e.g. `"elu"`.
        initializer: Keras initializer name for the weights feeding it.
        source: `"keras_activations"` or `"keras"`.
        options: `(argument, value)` pairs for the package's layer, e.g.
            `(("alpha", 0.5),)` for `CELU(alpha=0.5)`.
    """

    name: str
    initializer: str
    source: str
    options: tuple = ()

    @property
    def label(self):
        """`name`, plus the options if any: `"celu(alpha=0.5)"`."""
        if not self.options:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in self.options)})"

    @property
    def slug(self):
        """`label` fit for file and model names: `"celu_alpha_0_5"`."""
        return re.sub(r"[^A-Za-z0-9_]+", "_", self.label).strip("_")

    @property
    def spec(self):
        """The name as `--activations` takes it: `"celu:alpha=0.5"`."""
        return ":".join([self.name] + [f"{k}={v}" for k, v in self.options])

    @property
    def init_reason(self):
        """E.g. `"He normal, for rectifiers"`."""
        return _INIT_REASON[self.initializer]


def package_activations():
    """Names of the package's own activations (empty before the core lands)."""
    import keras_activations

    available = getattr(keras_activations, "available", None)
    return list(available()) if available is not None else []


def known_activations():
    """Sorted names `compare` accepts: the package's own plus some of Keras's."""
    return sorted(set(package_activations()) | set(KERAS_ACTIVATIONS))


def initializer_for(name):
    """The Keras initializer name an activation calls for.

    Args:
        name: Activation name.

    Returns:
        `"lecun_normal"` for SELU and maxout, `"glorot_uniform"` for sigmoid, tanh and
        other squashing functions, `"he_normal"` otherwise.

    Example:

    >>> initializer_for("selu"), initializer_for("tanh"), initializer_for("elu")
    ('lecun_normal', 'glorot_uniform', 'he_normal')
    >>> initializer_for("maxout")
    'lecun_normal'
    """
    if name in _LECUN:
        return "lecun_normal"
    if name in _GLOROT:
        return "glorot_uniform"
    return "he_normal"


def resolve(name, **options):
    """Turns an activation name into an `ActivationChoice`.

    The package's own activations win over Keras's of the same name
    (`elu`, `selu`, `leaky_relu`).

    Args:
        name: An activation name, e.g. `"prelu"`.
        **options: Arguments of the package's layer, e.g. `alpha=0.5` for
            `CELU` (not for Keras's own activations).

    Returns:
        An `ActivationChoice`.

    Raises:
        UnknownActivationError: `name` is not known; the message lists the
            known names.

    Example:

    >>> resolve("relu")
    ActivationChoice(name='relu', initializer='he_normal', source='keras', options=())
    """
    name = name.strip()
    if name in package_activations():
        source = "keras_activations"
    elif name in KERAS_ACTIVATIONS:
        source = "keras"
    else:
        raise UnknownActivationError(
            f"unknown activation {name!r} in --activations; known: "
            f"{', '.join(known_activations())}."
        )
    if options and name == "maxout":
        raise ValueError(
            "maxout takes no options here; its pieces are set by "
            "--maxout-pieces."
        )
    if options and source == "keras":
        raise ValueError(
            f"{name!r} is a Keras activation and takes no options; got "
            f"{sorted(options)}."
        )
    return ActivationChoice(
        name, initializer_for(name), source, tuple(sorted(options.items()))
    )


def parse(spec):
    """`"celu:alpha=0.5"` -> `resolve("celu", alpha=0.5)`: a name as `--activations` takes it.

    Raises:
        UnknownActivationError: Unknown name.
        ValueError: A malformed option.
    """
    name, _, rest = spec.partition(":")
    options = {}
    for pair in filter(None, (p.strip() for p in rest.split(":"))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"bad option {pair!r} in {spec!r}; write name:argument=value, "
                f"e.g. celu:alpha=0.5."
            )
        try:
            options[key.strip()] = float(value)
        except ValueError:
            raise ValueError(
                f"option {key.strip()!r} of {name.strip()!r} must be a number, "
                f"got {value!r}."
            ) from None
    return resolve(name.strip(), **options)


def activation_layer(choice, name=None, conv=False, seed=None, shared_axes=None):
    """A fresh activation layer for one hidden layer.

    Args:
        choice: An `ActivationChoice` (not `maxout`, which `build_model`
            handles because it changes the width of the layer before it), or
            a name as `--activations` takes it (`"celu:alpha=0.5"`).
        name: Layer name. Defaults to Keras's automatic name.
        conv: True in a CNN (PReLU then learns one slope per channel).
        seed: Seed for RReLU's random slopes.
        shared_axes: PReLU's shared axes (overrides `conv`), e.g. `[1, 2]`.

    Returns:
        A Keras layer.
    """
    if isinstance(choice, str):
        choice = parse(choice)
    if choice.name == "maxout":
        raise ValueError(
            "maxout is not elementwise: use keras_activations.Maxout(num_units) "
            "after a layer widened by its pieces."
        )
    if choice.source == "keras":
        return keras.layers.Activation(choice.name, name=name)
    import keras_activations as ka

    kw = dict(choice.options, name=name)
    factories = {
        "elu": lambda: ka.ELU(**kw),
        "selu": lambda: ka.SELU(**kw),
        "celu": lambda: ka.CELU(**kw),
        "pelu": lambda: ka.PELU(**kw),
        "isrlu": lambda: ka.ISRLU(**kw),
        "leaky_relu": lambda: ka.LeakyReLU(**kw),
        "abs_rectifier": lambda: ka.AbsRectifier(**kw),
        "prelu": lambda: ka.PReLU(
            **{"shared_axes": shared_axes if shared_axes is not None
               else ([1, 2] if conv else None), **kw}
        ),
        "rrelu": lambda: ka.RReLU(**{"seed": seed, **kw}),
    }
    if choice.name not in factories:
        # A package activation without a layer of its own: wrap the function.
        return keras.layers.Activation(ka.get(choice.name), name=name)
    return factories[choice.name]()


def build_model(
    choice,
    input_shape,
    num_classes,
    model="mlp",
    depth=10,
    width=64,
    maxout_pieces=2,
    seed=0,
    outputs=None,
):
    """Builds the network `compare` trains for one activation.

    `mlp`: `depth` hidden layers `Dense(width) -> activation`, then a softmax
    `Dense(num_classes)`. `cnn`: `depth` layers `Conv2D(width, 3) ->
    activation`, a 2x2 max-pool after every second one while the feature
    map is at least 4x4, then global average pooling and the softmax layer.
    For `maxout`, each hidden layer is `Dense(width * maxout_pieces) ->
    Maxout(width)`. Hidden layers are named `dense_00`/`conv_00` and
    `act_00`, input to output.

    Args:
        choice: An `ActivationChoice` (see `resolve`).
        input_shape: Shape of one image, e.g. `(8, 8, 1)`.
        num_classes: Number of classes.
        model: `"mlp"` or `"cnn"`. Defaults to `"mlp"`.
        depth: Number of hidden layers. Defaults to 10.
        width: Units (MLP) or filters (CNN) per hidden layer. Defaults to 64.
        maxout_pieces: Pieces per maxout unit. Defaults to 2.
        seed: Seed of the initializers. Defaults to 0.
        outputs: For a regression, the number of targets: the output layer is
            then a linear `Dense(outputs)` instead of the softmax. Defaults to
            None (classification).

    Returns:
        An uncompiled `keras.Model`.

    Example:

    >>> m = build_model(resolve("tanh"), (8, 8, 1), 10, depth=3, width=16)
    >>> [layer.name for layer in m.layers][:4]
    ['input', 'flatten', 'dense_00', 'act_00']
    """
    if model not in ("mlp", "cnn"):
        raise ValueError(f"--model must be 'mlp' or 'cnn', got {model!r}.")
    if depth < 1:
        raise ValueError(f"--depth must be a positive integer, got {depth}.")
    if width < 1:
        raise ValueError(f"--width must be a positive integer, got {width}.")
    if maxout_pieces < 1:
        raise ValueError(
            f"--maxout-pieces must be a positive integer, got {maxout_pieces}."
        )
    conv = model == "cnn"
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    if not conv:
        x = keras.layers.Flatten(name="flatten")(x)
    spatial = min(input_shape[0], input_shape[1]) if conv else None
    is_maxout = choice.name == "maxout"
    units = width * maxout_pieces if is_maxout else width
    for i in range(depth):
        init = keras.initializers.get(
            {"class_name": choice.initializer, "config": {"seed": seed + i}}
        )
        if conv:
            x = keras.layers.Conv2D(
                units, 3, padding="same", kernel_initializer=init,
                name=f"conv_{i:02d}",
            )(x)
        else:
            x = keras.layers.Dense(
                units, kernel_initializer=init, name=f"dense_{i:02d}"
            )(x)
        if is_maxout:
            import keras_activations as ka

            x = ka.Maxout(num_units=width, axis=-1, name=f"act_{i:02d}")(x)
        else:
            x = activation_layer(choice, f"act_{i:02d}", conv=conv, seed=seed)(x)
        if conv and i % 2 == 1 and spatial >= 4:
            x = keras.layers.MaxPooling2D(2, name=f"pool_{i:02d}")(x)
            spatial //= 2
    if conv:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    head = keras.layers.Dense(
        num_classes if outputs is None else outputs,
        activation="softmax" if outputs is None else None,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + depth),
        name="output",
    )(x)
    return keras.Model(inputs, head, name=f"{model}_{choice.slug}")
