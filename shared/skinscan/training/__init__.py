"""Training, calibration and evaluation: everything that makes a model, none of what serves one.

This subpackage may import TensorFlow/Keras, matplotlib and the dataset on
disk; the serving core (``skinscan``) never imports it.
"""
