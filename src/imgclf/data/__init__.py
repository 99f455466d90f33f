"""Layer 2, data: finding, checking, decoding, splitting and feeding images (imports only core).

scan (class folders to rows), decode (the one decoder), fingerprint and split
(leakage-free splits), check/ (`imgclf check` and quarantine), pipeline (the
decoded in-memory set and tf.data), shards/ (`imgclf datasets pack` and the
TFRecord reader), augment, balance, builtin datasets. See docs/architecture.md.
"""
