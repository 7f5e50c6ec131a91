"""TEMPORARY shim until the config split lands."""

from ._config import Paths, paths  # noqa: F401
