"""Sharded TFRecords: `imgclf datasets pack` writes them (pack), training and evaluation stream them (reader)."""
