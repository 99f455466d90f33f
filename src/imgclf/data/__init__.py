"""Finding, decoding, splitting and feeding images."""
