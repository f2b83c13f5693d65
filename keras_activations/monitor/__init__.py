"""GradientMonitor: gradients, dead units and activations recorded during fit."""

from keras_activations.monitor.callback import GradientMonitor
from keras_activations.monitor.diagnosis import Finding
from keras_activations.monitor.diagnosis import diagnose
from keras_activations.monitor.history import format_table
from keras_activations.monitor.history import to_csv
from keras_activations.monitor.history import to_rows
from keras_activations.monitor.plots import plot_record
