"""Confidence users can trust: temperature scaling, unknown rejection and conformal prediction sets.

Pure NumPy (and SciPy for one 1-D minimisation), so every runtime applies it,
the TensorFlow-free ones (.tflite, .onnx) included. The fitting data come
from the validation split at the end of training (`imgclf.training.confidence`)
or from `imgclf calibrate`; what is fitted lives in the run as confidence.json
(small: the temperature, the rejection threshold, the conformal quantiles) and
confidence.npz (feature statistics for the unknown scores), and travels with
every export.

Modules: calibration (temperature, ECE, reliability), ood (unknown scores,
thresholds, AUROC), conformal (APS prediction sets), store (the `Confidence`
object that `Predictor` applies).
"""
