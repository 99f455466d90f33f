"""Layer 7, export (beside serve): `imgclf export` writes a run as .keras, SavedModel, TFLite or ONNX.

exporter: the formats, their metadata and the parity check against the run
(imports core to inference). See docs/architecture.md.
"""
