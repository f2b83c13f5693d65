"""Where `compare`'s networks come from: its own MLP/CNN, a user's model, `.keras` file or builder.

`resolve_source` turns what the user gave into a source whose `build(choice, data, config)`
returns a `Built`: the uncompiled or compiled model for one candidate, what was swapped and the
hidden-layer index of each layer (for the per-depth report). `compile_model` then compiles it:
with the given model's compile settings when it had them, else with the optimizer of the config
and a loss and metrics inferred from the data (integer labels: sparse categorical cross-entropy
and accuracy; float targets: mean squared error and mean absolute error).
"""

import dataclasses
import importlib
import inspect
import os

import keras

from keras_activations.compare import models
from keras_activations.compare import swap
from keras_activations.compare.errors import ModelError

BUILTIN = ("mlp", "cnn")


@dataclasses.dataclass
class Built:
    """One candidate's model.

    Attributes:
        model: The Keras model (compiled when its source was).
        sites: `swap.Site` dicts of the given model (empty for builders and built-ins).
        hidden: Layer name -> hidden-layer index, or None to use the built-in names.
        compile_config: The given model's compile settings (deserialized), or None.
    """

    model: object
    sites: list
    hidden: dict = None
    compile_config: dict = None


class BuiltinSource:
    """`compare`'s own MLP or CNN (`models.build_model`)."""

    def __init__(self, kind):
        self.kind = kind
        self.description = kind

    def check(self, choices, data):
        """Nothing to check: the built-in networks take every candidate."""

    def build(self, choice, data, config):
        """The built-in network for `choice` (uncompiled)."""
        model = models.build_model(
            choice, data.input_shape, data.num_classes if data.task == "classification" else None,
            model=self.kind, depth=config.depth, width=config.width,
            maxout_pieces=config.maxout_pieces, seed=config.seed,
            outputs=_regression_outputs(data),
        )
        return Built(model, [])


def _regression_outputs(data):
    if data.task != "regression":
        return None
    shape = data._train_labels.shape[1:]
    return int(shape[0]) if shape else 1


class ModelSource:
    """A given `keras.Model` (or one loaded from `.keras`): cloned with swapped activations."""

    def __init__(self, model, description, exclude=()):
        swap.check_clonable(model)
        self.model = model
        self.description = description
        self.exclude = tuple(exclude)

    def check(self, choices, data):
        """Raises `ModelError` now for what would fail every run: maxout, nothing to swap."""
        if any(c.name == "maxout" for c in choices):
            swap.swap_activations(self.model, models.resolve("maxout"))
        if isinstance(self.model, keras.Sequential) and not self.model.built:
            self.model.build((None,) + tuple(data.input_shape))
        # A trial swap raises now what would fail every run: nothing to swap, a layer
        # that cannot be re-created.
        swap.swap_activations(self.model, models.resolve("relu"), exclude=self.exclude,
                              input_shape=data.input_shape)

    def build(self, choice, data, config):
        """A clone of the model with `choice` swapped in (see `swap.swap_activations`)."""
        clone, sites = swap.swap_activations(
            self.model, choice, seed=config.seed, keep_init=config.keep_init,
            exclude=self.exclude, input_shape=data.input_shape, rrelu_seed=config.seed,
        )
        return Built(clone, [s.to_dict() for s in sites],
                     swap.hidden_index_map(self.model, sites), _compile_config(self.model))


class BuilderSource:
    """A function returning a model: `build(activation)` (given the candidate's name as
    `--activations` takes it, e.g. `"celu:alpha=0.5"`), or `build()`, whose model then has its
    activations swapped like a given model's."""

    def __init__(self, fn, description, exclude=()):
        self.fn = fn
        self.description = description
        self.exclude = tuple(exclude)
        self.takes_activation = _takes_an_argument(fn)

    def check(self, choices, data):
        """A builder without arguments gets its model's activations swapped: no maxout."""
        if not self.takes_activation and any(c.name == "maxout" for c in choices):
            raise ModelError(
                f"maxout as a candidate needs a builder that takes the activation "
                f"(build(activation)); {self.description} takes none."
            )

    def build(self, choice, data, config):
        """Calls the builder (seeded) and swaps or re-initializes as needed."""
        keras.utils.set_random_seed(config.seed)
        try:
            model = self.fn(choice.spec) if self.takes_activation else self.fn()
        except Exception as e:
            raise BuilderFailed(f"the builder {self.description} raised {type(e).__name__}: {e}") from e
        if not isinstance(model, keras.Model):
            raise ModelError(
                f"the builder {self.description} returned {type(model).__name__}, not a keras.Model."
            )
        if not self.takes_activation:
            return ModelSource(model, self.description, self.exclude).build(choice, data, config)
        compile_config = _compile_config(model)
        hidden = None
        if isinstance(model, keras.Sequential) or _functional(model):
            if isinstance(model, keras.Sequential) and not model.built:
                model.build((None,) + tuple(data.input_shape))
            hidden = swap.hidden_index_map(model, swap.find_sites(model, self.exclude))
            if not config.keep_init:
                model = _reinitialized(model, choice, config, data)
        return Built(model, [], hidden, compile_config)


class BuilderFailed(RuntimeError):
    """The user's builder raised for one candidate (recorded as that run's failure)."""


def _functional(model):
    from keras_activations import _backend

    return _backend.is_functional_model(model)


def _reinitialized(model, choice, config, data):
    """The builder's model with its hidden kernels re-drawn from the candidate's initializer
    (hidden kernel i seeded `config.seed + i`; the output layer keeps its own)."""
    layers, producer = swap._graph(model)
    head = swap._output_layers(model, layers, producer)
    index = 0
    for layer in layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None or layer.name in head or swap._is_recurrent(layer):
            continue
        init = keras.initializers.get(
            {"class_name": choice.initializer, "config": {"seed": config.seed + index}})
        kernel.assign(init(tuple(kernel.shape), dtype=kernel.dtype))
        index += 1
    return model


def _takes_an_argument(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in params)


def _compile_config(model):
    """The model's compile settings, deserialized (fresh optimizer), or None if uncompiled."""
    if not getattr(model, "compiled", False):
        return None
    config = model.get_compile_config()
    if not config:
        return None
    return keras.saving.deserialize_keras_object(config)


def import_builder(spec):
    """`"package.module:function"` -> the function (the working directory is importable).

    Raises:
        ModelError: The module cannot be imported or has no such callable.
    """
    import sys

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ModelError(f"--model {spec!r}: write module:function, e.g. my_project.models:build.")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ModelError(
            f"--model {spec!r}: cannot import {module_name!r} ({type(e).__name__}: {e}); run from "
            f"the directory that holds it or add that to PYTHONPATH."
        ) from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ModelError(f"--model {spec!r}: module {module_name!r} has no {attr!r}.")
    if not callable(fn):
        raise ModelError(f"--model {spec!r}: {attr!r} is not callable.")
    return fn


def resolve_source(model_or_builder, exclude=()):
    """A source for `model_or_builder`: `"mlp"`/`"cnn"`, a `.keras` path, `"module:function"`,
    a `keras.Model` or a callable builder.

    Raises:
        ModelError: Anything else, an unreadable `.keras` file, an unimportable builder, a
            subclassed model.
    """
    if isinstance(model_or_builder, keras.Model):
        return ModelSource(model_or_builder, f"model {model_or_builder.name!r}", exclude)
    if isinstance(model_or_builder, (str, os.PathLike)):
        spec = os.fspath(model_or_builder)
        if spec in BUILTIN:
            return BuiltinSource(spec)
        if spec.endswith(".keras") or os.path.exists(spec):
            if not os.path.isfile(spec):
                raise ModelError(f"--model {spec!r}: no such .keras file.")
            try:
                import keras_activations  # noqa: F401  (registers the package's layers)

                model = keras.models.load_model(spec)
            except Exception as e:
                raise ModelError(
                    f"--model {spec!r} cannot be loaded as a Keras model ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''})."
                ) from None
            return ModelSource(model, f"{spec} ({model.name})", exclude)
        if ":" in spec:
            return BuilderSource(import_builder(spec), spec, exclude)
        raise ModelError(
            f"--model {spec!r} is not 'mlp', 'cnn', a .keras file or module:function."
        )
    if callable(model_or_builder):
        name = getattr(model_or_builder, "__qualname__", repr(model_or_builder))
        module = getattr(model_or_builder, "__module__", None)
        return BuilderSource(model_or_builder, f"{module}:{name}" if module else name, exclude)
    raise ModelError(
        f"model must be 'mlp', 'cnn', a keras.Model, a .keras path or a builder function; "
        f"got {type(model_or_builder).__name__}."
    )


def _output_activation(model):
    layer = model.layers[-1] if model.layers else None
    fn = getattr(layer, "activation", None)
    return swap.activation_name(fn) if fn is not None else None


def inferred_loss(model, data):
    """The loss and metrics for an uncompiled model: sparse categorical cross-entropy (from
    logits unless the output is a softmax) and accuracy for class labels, binary cross-entropy
    for one sigmoid unit, mean squared error and mean absolute error for float targets."""
    if data.task == "regression":
        return "mean_squared_error", ["mean_absolute_error"]
    out = _output_activation(model)
    units = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if units == 1 and data.num_classes <= 2:
        return keras.losses.BinaryCrossentropy(from_logits=out != "sigmoid"), ["accuracy"]
    return keras.losses.SparseCategoricalCrossentropy(from_logits=out != "softmax"), ["accuracy"]


def compile_model(built, data, config, optimizer_factory):
    """Compiles `built.model` for training (see the module docstring) and returns it.

    `config.loss`/`config.metrics`, and an explicitly chosen optimizer, override the given
    model's compile settings.
    """
    model = built.model
    settings = dict(built.compile_config or {})
    if not settings:
        loss, metrics = inferred_loss(model, data)
        settings = {"loss": loss, "metrics": metrics}
    if config.loss is not None:
        settings["loss"] = config.loss
    if config.metrics is not None:
        settings["metrics"] = list(config.metrics)
    if "optimizer" not in settings or config.optimizer_given:
        settings["optimizer"] = optimizer_factory(config)
    model.compile(**settings)
    return model
