"""`ActivationSpec`: the single source of truth for one activation.

A spec holds an activation's public function (forward pass with its hand-written gradient), its
elementwise derivative `f'(x)` (used by tests and by `GradientMonitor` to find dead and saturated
units), and the metadata from which the registry, the layers' docs and the README table are derived.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Optional, Union

GradAtZero = Union[str, float]


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """Everything the package knows about one activation.

    Attributes:
        name: registry name, e.g. `"elu"`.
        function: the public function `f(x, ...)` built on `tf.custom_gradient`.
        formula: the forward formula, in plain text.
        derivative_formula: `f'(x)`, in plain text.
        parameters: the parameters' defaults and constraints, in plain text.
        derivative: `derivative(x, **params)`, the elementwise derivative of the input `x` with the
            same keyword parameters as `function` (tensor parameters included).
        grad_at_zero: the default derivative returned at exactly x=0 for activations whose
            derivative jumps at 0 (`"left"`, `"right"` or a number); None when f' is continuous at 0.
        builtin: the nearest built-in, whose value at the kink the default reproduces.
        layer: the name of the Keras layer class that wraps it.
        can_die: True when f' is exactly 0 on a half-line with the default parameters (a unit can
            die, like a ReLU unit); False when f' never vanishes on a half-line (units saturate at most).
        saturates: True when f' tends to 0 without being 0 on a region (f approaches an asymptote:
            the ELU family); False when f' is a step (the rectifier family). `GradientMonitor` names
            the share of unit-example pairs whose |f'| is below its tolerance after it: `saturation`
            when True, `inactive_fraction` (the pairs are switched off) when False.
        saves: which tensor the backward pass keeps: "output", "input", or a description.
        reference: where the activation comes from.
        elementwise: False for activations that mix features (maxout), whose `derivative` is the
            per-input-element partial derivative of the unit each element feeds.
    """

    name: str
    function: Callable[..., Any]
    formula: str
    derivative_formula: str
    parameters: str
    derivative: Callable[..., Any]
    grad_at_zero: Optional[GradAtZero]
    builtin: str
    layer: str
    can_die: bool
    saturates: bool
    saves: str
    reference: str
    elementwise: bool = True


def resolve_grad_at_zero(value: GradAtZero, activation: str, left: Any, right: Any) -> Any:
    """Maps a `grad_at_zero` choice to the derivative value returned at exactly x=0.

    Args:
        value: `"left"` (the left derivative), `"right"` (the right derivative) or a finite number.
        activation: the activation's name, for the error message.
        left: the left derivative at 0 (number or tensor).
        right: the right derivative at 0 (number or tensor).

    Raises:
        ValueError: for any other value.
    """
    if isinstance(value, str):
        if value == "left":
            return left
        if value == "right":
            return right
    elif (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    ):
        return float(value)
    raise ValueError(
        f"{activation}: argument `grad_at_zero` must be 'left', 'right' or a finite number "
        f"(the derivative returned at exactly x=0), got {value!r}."
    )


def check_real(value: Any, activation: str, argument: str, *, minimum: Optional[float] = None,
               strict: bool = False) -> float:
    """Checks that a scalar hyper-parameter is a finite real number, optionally bounded below.

    Raises:
        ValueError: naming the activation, the argument, the value and the valid range.
    """
    bound = ""
    if minimum is not None:
        bound = f" {'>' if strict else '>='} {minimum:g}"
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not math.isfinite(float(value))
        or (minimum is not None and (value <= minimum if strict else value < minimum))
    ):
        raise ValueError(
            f"{activation}: argument `{argument}` must be a finite real number{bound}, got {value!r}."
        )
    return float(value)
