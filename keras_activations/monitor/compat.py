"""Every private Keras/TensorFlow name the monitor uses, in one place.

Keras 3 has no public hook for "the gradients the optimizer applies" or
"every layer inside a model", so `GradientMonitor` reaches into a few
private attributes. Each is wrapped here with the reason it is needed;
`tests/test_monitor_compat.py` fails loudly when a Keras release moves one.
The Keras range these are tested with is declared in `setup.cfg`
(`KERAS_TESTED`).
"""

import keras

KERAS_TESTED = ">=3.15,<3.16"


def gradient_hook_owner(optimizer):
    """The optimizer object whose `_all_reduce_sum_gradients` sees the applied
    gradients, or raises `RuntimeError` naming what is missing.

    `_all_reduce_sum_gradients` (Keras's TensorFlow optimizer) is the one
    place every applied gradient passes through after the loss scale is taken
    out (`LossScaleOptimizer` calls its `inner_optimizer`), after the
    all-reduce of `tf.distribute`, and, with `gradient_accumulation_steps`,
    only on the steps that apply the accumulated gradient.
    """
    while getattr(optimizer, "inner_optimizer", None) is not None:
        optimizer = optimizer.inner_optimizer
    if not callable(getattr(optimizer, "_all_reduce_sum_gradients", None)):
        raise RuntimeError(
            "GradientMonitor needs the TensorFlow backend (got optimizer "
            f"{type(optimizer).__name__} without TF gradient hooks)."
        )
    return optimizer


GRADIENT_HOOK = "_all_reduce_sum_gradients"


def variable_key(optimizer, variable):
    """The optimizer's key of a variable: the gradient hook receives the
    backing `tf.Variable`s, not the Keras variables (`_var_key`)."""
    return optimizer._var_key(variable)


def flatten_layers(model):
    """Every layer inside `model`, recursively, parents before children
    (`_flatten_layers`: `model.layers` lists only the top level)."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def own_trainable_variables(layer):
    """Variables a layer created itself, not its sub-layers'
    (`_trainable_variables`; `trainable_variables` includes sub-layers)."""
    return list(getattr(layer, "_trainable_variables", None) or [])


def parent_layers(layer):
    """The layers feeding `layer` in a functional graph (`_inbound_nodes`),
    to find the data format of an activation layer after a convolution."""
    parents = []
    for node in getattr(layer, "_inbound_nodes", None) or []:
        for parent in getattr(node, "parent_nodes", None) or []:
            op = getattr(parent, "operation", None)
            if op is not None and op is not layer:
                parents.append(op)
    return parents


def symbolic_call(model, x):
    """Runs `model(x, training=True)` on symbolic `keras.KerasTensor`s (no
    data computed), to learn the shape of every activation site and the
    order of layers (`keras.src.backend.compute_output_spec`)."""
    from keras.src.backend import compute_output_spec

    return compute_output_spec(model, x, training=True)


def per_replica_spec(spec):
    """The spec of one replica of a `tf.distribute` `PerReplicaSpec`
    (`_value_specs`), or `spec` itself."""
    values = getattr(spec, "_value_specs", None)
    return values[0] if values else spec


def register_alias(wrapper, original):
    """Lets `wrapper` serialize under `original`'s registered name
    (`GLOBAL_CUSTOM_NAMES`): a checkpoint saved during `fit` must not name
    the monitor's wrapper of a registered activation. Returns whether an
    alias was added."""
    from keras.src.saving import object_registration

    names = object_registration.GLOBAL_CUSTOM_NAMES
    try:
        if original not in names:
            return False
    except TypeError:  # unhashable
        return False
    names[wrapper] = names[original]
    return True


def unregister_alias(wrapper):
    from keras.src.saving import object_registration

    object_registration.GLOBAL_CUSTOM_NAMES.pop(wrapper, None)


def is_chief(strategy):
    """Whether this process writes files: not a non-chief worker of a
    multi-worker strategy (`cluster_resolver` is public, but which task is
    the chief is decided as `tf.distribute`'s private `multi_worker_util`
    does: the `chief` task, else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    task_type = getattr(resolver, "task_type", None)
    task_id = getattr(resolver, "task_id", None) or 0
    if task_type in (None, "chief"):
        return True
    try:
        jobs = resolver.cluster_spec().as_dict()
    except Exception:  # pragma: no cover - resolvers without a spec
        jobs = {}
    return task_type == "worker" and task_id == 0 and "chief" not in jobs


def unpack_x(data):
    """The `x` part of a batch (public since Keras 3.0)."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return x

