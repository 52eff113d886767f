from .core.version import VERSION as __version__  # noqa: F401  (one declaration, in the core)
