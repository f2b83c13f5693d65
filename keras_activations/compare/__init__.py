"""`keras_activations.compare`: the same network trained once per activation.

`keras_activations.compare(model_or_builder, data, activations=[...], epochs=..., out=...)`
is the Python entry point (this package is callable; see `keras_activations.compare.api.compare`)
and `keras_activations.cli` is the command line over it. Its parts load on first use, so that
`import keras_activations` stays light.
"""

import sys
import types

_LAZY = {
    "ComparisonResult": "keras_activations.compare.api",
    "CompareError": "keras_activations.compare.errors",
    "ModelError": "keras_activations.compare.errors",
    "activation_layer": "keras_activations.compare.models",
}
__all__ = ["compare", *_LAZY]


def compare(*args, **kwargs):
    """See `keras_activations.compare.api.compare` (the same function)."""
    from keras_activations.compare import api

    return api.compare(*args, **kwargs)


_MODULES = ("api", "data", "errors", "export", "hparams", "models", "pipeline", "plots",
            "report", "run", "sources", "swap")


def __getattr__(name):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """This package, callable as `keras_activations.compare(...)`."""

    def __call__(self, *args, **kwargs):
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
