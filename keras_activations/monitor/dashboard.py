"""The custom-scalars layout of the monitor's figures: one chart per figure
with every layer in it (TensorBoard's **Custom Scalars** tab).

The charts are regular expressions over tags (TensorBoard matches them with
Python's `re.match` against every run's tags), derived from the record's
schema, so a figure added to `record.LAYER_SCALARS` or
`record.VARIABLE_SCALARS` gets its chart; a chart whose tags a run does not
have stays empty. TensorBoard merges the layouts of all runs, dropping
repeated charts, so every run may carry the same layout.
"""

from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.proto import tensor_shape_pb2
from tensorboard.compat.proto import types_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata

from keras_activations.monitor.record import LAYER_SCALARS
from keras_activations.monitor.record import VARIABLE_SCALARS

TAG = metadata.CONFIG_SUMMARY_TAG  # "custom_scalars__config__"
LAYERS_TITLE = "GradientMonitor: every layer"
VARIABLES_TITLE = "GradientMonitor: every variable"
# Per-layer charts shown first, in this order; then the rest of LAYER_SCALARS.
FIRST = ("gradient_norm", "dead_fraction", "update_ratio", "activation_mean")
GLOBAL_NORM = "gradient_norm/global"


def layer_regex(key):
    """Tags `<key>/<layer>` of every layer (layer names hold no `/`;
    variable paths do), leaving out `<key>/global`."""
    return f"^{key}/(?!global$)[^/]+$"


def variable_regex(key):
    """Tags `<key>/<variable path>` of every variable."""
    return f"^{key}/[^/]+/.+$"


def _chart(title, regex):
    return layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=[regex]))


def layout(layer_keys=None, variable_keys=None):
    """The layout: a category of per-layer charts (the global gradient norm
    first), and a closed one of per-variable charts.

    Args:
        layer_keys: Per-layer figures (tag prefixes). Defaults to `FIRST`
            followed by the rest of `record.LAYER_SCALARS`.
        variable_keys: Per-variable figures. Defaults to the tag prefixes
            of `record.VARIABLE_SCALARS`.

    Returns:
        A `tensorboard.plugins.custom_scalar.layout_pb2.Layout`.

    Example:

    >>> [c.title for c in layout().category[0].chart][:3]
    ['gradient norm, global', 'gradient norm', 'dead fraction']
    """
    if layer_keys is None:
        layer_keys = FIRST + tuple(k for k in LAYER_SCALARS if k not in FIRST)
    if variable_keys is None:
        variable_keys = tuple(key for key, _ in VARIABLE_SCALARS)
    layers = [_chart("gradient norm, global", f"^{GLOBAL_NORM}$")]
    layers += [_chart(key.replace("_", " "), layer_regex(key)) for key in layer_keys]
    variables = [_chart(key.replace("_", " "), variable_regex(key)) for key in variable_keys]
    return layout_pb2.Layout(
        category=[
            layout_pb2.Category(title=LAYERS_TITLE, chart=layers),
            layout_pb2.Category(title=VARIABLES_TITLE, chart=variables, closed=True),
        ]
    )


def summary(scalars_layout=None):
    """A `Summary` holding `scalars_layout` (default `layout()`), as the
    custom-scalars plugin reads it."""
    scalars_layout = layout() if scalars_layout is None else scalars_layout
    out = summary_pb2.Summary()
    value = out.value.add(tag=TAG, metadata=metadata.create_summary_metadata())
    value.tensor.dtype = types_pb2.DT_STRING
    value.tensor.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto())
    value.tensor.string_val.append(scalars_layout.SerializeToString())
    return out
