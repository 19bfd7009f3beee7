"""The package version, in a module of its own so that any layer can read it without importing the facade
(:mod:`attnx` imports the engine). ``pyproject.toml`` reads it from here (``dynamic = ["version"]``)."""

__version__ = "0.1.0"
