"""The model registry and the architectures it holds."""
