"""Anonymous, private-by-construction usage telemetry for Visivo.

from visivo_telemetry import Telemetry
telemetry = Telemetry("1.4.0", project_dir=".", api_key="phc_...")  # the app's PostHog key
with telemetry.command("run", sys.argv[2:]):
    ...
"""

from ._client import Telemetry, set_metric
from ._sanitize import sanitize_args, sanitize_endpoint
from ._spawn import run_sender_if_requested
from ._version import __version__

__all__ = [
    "Telemetry",
    "__version__",
    "run_sender_if_requested",
    "sanitize_args",
    "sanitize_endpoint",
    "set_metric",
]
