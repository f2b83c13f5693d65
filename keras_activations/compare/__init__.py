"""`keras-activations compare`: the same network trained once per activation.

See `keras_activations.cli` for the command line and `pipeline.run_comparison`
for the Python entry point.
"""
