"""jaxpipe: a reproducible DVC pipeline of small JAX models."""

__version__ = "0.1.0"
