"""The monitor's hooks on a model, shared by every monitor of a `fit`.

One `Hooks` object per model wraps, while at least one monitor is
attached, the instance attributes (never the classes) that the training
step calls:

- `model.train_step`: counts the step and ends it (`State.begin_step`,
  `State.end_step`) for every attached monitor;
- the optimizer's gradient hook (`compat.gradient_hook_owner`);
- each watched activation site (`layer.activation`, or `layer.call` of an
  activation layer), read through its output;
- `model.train_function`: the host's per-execution work before each call
  (`GradientMonitor._before_execution`), and the monitors' cleanup when a
  step raises.

Keras traces the training step when the train function is first called;
the monitors' ops are in that trace. The traced function is kept per set
of attached monitor states, so a second `fit` with the same monitors
retraces nothing, and Keras's own function comes back when the last
monitor leaves.
"""

import functools
import threading

import tensorflow as tf

from keras_activations.monitor import compat
from keras_activations.monitor.patches import Patches

_ENDS_OF_DATA = (StopIteration, tf.errors.OutOfRangeError)
_ATTRIBUTE = "_keras_activations_hooks"


def for_model(model):
    """The model's `Hooks` (made on first use, kept on the model object
    without Keras tracking it)."""
    hooks = vars(model).get(_ATTRIBUTE)
    if hooks is None:
        hooks = Hooks(model)
        object.__setattr__(model, _ATTRIBUTE, hooks)
    return hooks


class Hooks:
    def __init__(self, model):
        self.model = model
        self.monitors = []
        self.patches = Patches()
        # Per thread (MirroredStrategy traces each replica in its own):
        # whether a train step is being traced (or run eagerly), its graph.
        self._local = threading.local()
        self.discovering = None  # {id(layer): output shape} while discovering
        self.keras_function = None  # Keras's own train function
        self.traced = {}  # monitor states -> Keras train function with hooks
        self.layers = {}  # id(layer) -> layer, of the hooked sites

    @property
    def training(self):
        return getattr(self._local, "training", False)

    @property
    def step_graph(self):
        return getattr(self._local, "step_graph", None)

    # ---- monitors -----------------------------------------------------------

    def attach(self, monitor, sites):
        """Adds a monitor (its activation sites are hooked) and points the
        model at the train function for the attached monitors."""
        if not self.monitors:
            self._install()
        if monitor not in self.monitors:
            self.monitors.append(monitor)
        for site in sites:
            self._hook_site(site)

    def detach(self, monitor):
        if monitor in self.monitors:
            self.monitors.remove(monitor)
        if not self.monitors:
            self._uninstall()

    def select_function(self):
        """Points `model.train_function` at the traced function for the
        attached monitors' states: kept from an earlier fit, or a new one
        that Keras traces on its first call."""
        model = self.model
        current = vars(model).get("train_function")
        if current is not None and current is not self._wrapper:
            if current is not self.keras_function:
                # New Keras function (first fit, or compile ran): the kept
                # traces belong to the old one.
                self.keras_function = current
                self.traced = {}
        self._inner = self.traced.get(self._key())  # None: made at the first call
        object.__setattr__(model, "train_function", self._wrapper)

    def _key(self):
        states = [m._state for m in self.monitors]
        return None if None in states else tuple(id(s) for s in states)

    def _new_function(self):
        """A new Keras train function (traced on its first call) for the
        attached monitors' states."""
        model = self.model
        model.make_train_function(force=True)
        self._inner = vars(model)["train_function"]
        self.traced = {self._key(): self._inner}  # the others' states are gone
        object.__setattr__(model, "train_function", self._wrapper)

    def _install(self):
        model = self.model
        self.keras_function = vars(model).get("train_function")
        patches = self.patches
        hooks = self

        owner = compat.gradient_hook_owner(model.optimizer)
        original_reduce = getattr(owner, compat.GRADIENT_HOOK)

        def reduce_gradients(grads_and_vars):
            reduced = original_reduce(grads_and_vars)
            if hooks.training:
                done = []
                for monitor in hooks.monitors:
                    if monitor._state is not None:
                        done += monitor._state.on_gradients(reduced)
                if done:
                    reduced = _after(done, reduced)
            return reduced

        patches.set(owner, compat.GRADIENT_HOOK, reduce_gradients)

        original_step = model.train_step

        def train_step(data):
            states = [m._state for m in hooks.monitors if m._state is not None]
            local = hooks._local
            previous = hooks.training, hooks.step_graph
            local.training = True
            local.step_graph = tf.compat.v1.get_default_graph()
            try:
                for state in states:
                    state.begin_step(data)
                logs = original_step(data)
                for state in states:
                    state.end_step()
                return logs
            finally:
                local.training, local.step_graph = previous

        patches.set(model, "train_step", train_step)

        def wrapper(iterator):
            created = [m._before_execution(iterator) for m in list(hooks.monitors)]
            if any(created) or hooks._inner is None:
                hooks._new_function()
            try:
                return hooks._inner(iterator)
            except _ENDS_OF_DATA:
                raise
            except BaseException:
                for monitor in list(hooks.monitors):
                    monitor._abort()
                raise

        self._wrapper = wrapper

    def _uninstall(self):
        model = self.model
        self.patches.undo()
        self.layers = {}
        if vars(model).get("train_function") is self._wrapper:
            # Keras's own function again (or None: fit builds a clean one).
            object.__setattr__(model, "train_function", self.keras_function)

    # ---- activation sites ---------------------------------------------------

    def _hook_site(self, site):
        layer = site.layer
        if id(layer) in self.layers:
            return
        self.layers[id(layer)] = layer
        hooks = self

        def record(x, y):
            if hooks.discovering is not None:
                hooks.discovering[id(layer)] = tuple(y.shape)
            elif hooks.training:
                deferred = tf.compat.v1.get_default_graph() is hooks.step_graph
                for monitor in hooks.monitors:
                    if monitor._state is not None:
                        monitor._state.on_site(layer, x, y, deferred)

        if site.kind == "attribute":
            original = vars(layer)["activation"]

            def activation(x, *args, **kwargs):
                y = original(x, *args, **kwargs)
                record(x, y)
                return y

            try:
                activation = functools.wraps(original)(activation)
            except (AttributeError, TypeError):
                pass
            self.patches.set(layer, "activation", activation)
            self.patches.alias(activation, original)
        else:
            original = layer.call

            def call(*args, **kwargs):
                y = original(*args, **kwargs)
                x = args[0] if args else kwargs.get("inputs")
                if x is not None:
                    record(x, y)
                return y

            self.patches.set(layer, "call", call)


def _after(done, grads_and_vars):
    """`grads_and_vars` with each dense gradient read only after `done`.

    The monitor's reads of a gradient then finish before the optimizer's,
    so the optimizer's update can reuse the gradient's buffer in place
    (TensorFlow forwards a buffer only to its last reader).
    """
    out = []
    with tf.control_dependencies(done):
        for g, v in grads_and_vars:
            if isinstance(g, tf.Tensor):
                g = tf.identity(g)
            out.append((g, v))
    return out
