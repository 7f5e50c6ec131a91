"""TEMPORARY shim until the config split lands."""

from ._config import Decision, decide  # noqa: F401
from ._config import _project_decision as project_decision  # noqa: F401
