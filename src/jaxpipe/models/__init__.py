"""The models: each a typed config, a ``fit`` and a ``predict``."""
