"""The activation registry: every spec by name, and Keras-style `get`/`serialize`/`deserialize`."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Union

import keras

from keras_activations.spec import ActivationSpec

PACKAGE = "keras_activations"
_SPECS: Dict[str, ActivationSpec] = {}
_BY_FUNCTION: Dict[Any, ActivationSpec] = {}


def register(spec: ActivationSpec) -> ActivationSpec:
    """Adds `spec` to the registry and registers its function with Keras serialization."""
    keras.saving.register_keras_serializable(package=PACKAGE, name=spec.name)(spec.function)
    _SPECS[spec.name] = spec
    _BY_FUNCTION[spec.function] = spec
    return spec


def available() -> List[str]:
    """Returns the names of all activations of this package, sorted.

    Example:

    >>> "elu" in keras_activations.available()
    True
    """
    return sorted(_SPECS)


def specs() -> List[ActivationSpec]:
    """Returns every `ActivationSpec`, in registry-name order.

    Example:

    >>> [spec.layer for spec in keras_activations.activations.specs()][:2]
    ['AbsRectifier', 'CELU']
    """
    return [_SPECS[name] for name in available()]


def get_spec(identifier: Any) -> Optional[ActivationSpec]:
    """Returns the `ActivationSpec` of one of our activations; None for anything else.

    Args:
        identifier: a name (`"elu"`), a registered name (`"keras_activations>elu"`) or one of our
            functions (`keras_activations.elu`).

    Example:

    >>> keras_activations.get_spec("elu").derivative(tf.constant([-1.0, 1.0]))
    <tf.Tensor: ... numpy=array([0.36787945, 1.], dtype=float32)>
    """
    if isinstance(identifier, str):
        name = identifier.split(">", 1)[1] if identifier.startswith(PACKAGE + ">") else identifier
        return _SPECS.get(name)
    try:
        return _BY_FUNCTION.get(identifier)
    except TypeError:  # unhashable
        return None


def _unknown(identifier: Any) -> ValueError:
    return ValueError(
        f"Unknown activation {identifier!r}. Known keras_activations activations: "
        f"{', '.join(available())}."
    )


def get(identifier: Union[str, Callable, dict, None]) -> Callable:
    """Returns an activation function from a name, a serialized config, or a callable.

    Args:
        identifier: a name from `available()` (optionally prefixed `"keras_activations>"`), the
            output of `serialize`, or a callable (returned unchanged).

    Returns:
        The activation function.

    Raises:
        ValueError: for an unknown name, listing the known ones.

    Example:

    >>> f = keras_activations.get("celu")
    >>> layer = keras.layers.Dense(8, activation=f)
    """
    if identifier is None:
        raise _unknown(identifier)
    if callable(identifier):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    spec = get_spec(identifier)
    if spec is None:
        raise _unknown(identifier)
    return spec.function


def serialize(activation: Callable) -> str:
    """Returns the registered name (`"keras_activations>elu"`) of one of our activation functions.

    Args:
        activation: one of this package's functions.

    Example:

    >>> keras_activations.serialize(keras_activations.elu)
    'keras_activations>elu'

    Raises:
        ValueError: if `activation` is not one of this package's functions.
    """
    spec = get_spec(activation)
    if spec is None:
        raise ValueError(
            f"serialize: {activation!r} is not a keras_activations function; use "
            "keras.activations.serialize for Keras's own activations."
        )
    return f"{PACKAGE}>{spec.name}"


def deserialize(config: Union[str, dict]) -> Callable:
    """Inverse of `serialize`; also accepts Keras's serialized-function dict of our functions.

    Args:
        config: a registered name or a Keras function config.

    Example:

    >>> keras_activations.deserialize("keras_activations>elu") is keras_activations.elu
    True
    """
    if isinstance(config, dict):
        name = config.get("registered_name") or config.get("config")
        return get(name)
    return get(config)
