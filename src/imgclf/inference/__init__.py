"""Layer 4, inference: from a model file and images to predictions (imports core, data and models).

predictor (`Predictor`, `load`: a run folder, .keras, SavedModel, .tflite or
.onnx behind one interface), backends/ (one runtime per format, the `Backend`
protocol), tta (test-time augmentation views), files (`imgclf predict` over
files and folders), writers (CSV/JSON rows), engines/ (batch prediction on
Ray), sort_into (`--sort-into`). See docs/architecture.md.
"""
