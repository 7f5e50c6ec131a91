"""The library's version: the one place it is written (hatch reads it for the package too)."""

__version__ = "0.2.0"
