"""Instance-attribute patches that can be undone exactly.

`GradientMonitor` never patches classes: it sets attributes on the model's
own objects (bypassing Keras's attribute tracking, so nothing is tracked or
saved) and restores the previous state, or removes the attribute, on undo.
"""

from keras_activations.monitor import compat

_MISSING = object()


class Patches:
    def __init__(self):
        self._undo = []
        self._registered = []

    def __len__(self):
        return len(self._undo)

    def set(self, obj, name, value):
        old = vars(obj).get(name, _MISSING)
        object.__setattr__(obj, name, value)
        self._undo.append((obj, name, old))

    def alias(self, wrapper, original):
        """Lets a wrapped registered activation serialize like the original
        (a checkpoint saved mid-fit must not name the wrapper)."""
        if compat.register_alias(wrapper, original):
            self._registered.append(wrapper)

    def undo(self):
        for obj, name, old in reversed(self._undo):
            if old is _MISSING:
                try:
                    object.__delattr__(obj, name)
                except AttributeError:
                    pass
            else:
                object.__setattr__(obj, name, old)
        self._undo = []
        for wrapper in self._registered:
            compat.unregister_alias(wrapper)
        self._registered = []
