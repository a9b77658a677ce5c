from . import datasets  # noqa: F401  (registers the built-in datasets)
