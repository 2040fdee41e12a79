"""utkface-curate: CLI and FiftyOne-facing workflow."""

__version__ = "0.1.0"
