"""The local receiver (scripts/collector.py) with Nagle's algorithm off, as real servers run.

`http.server` writes a response's headers and body in two sends; with Nagle on, the body
waits for the client's delayed ACK (40 ms on Linux), so every batch would cost the sender
40 ms that no production ingestion endpoint charges. The benchmark starts this instead.
"""

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "collector", Path(__file__).with_name("collector.py")
)
collector = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(collector)
collector.CollectorHandler.disable_nagle_algorithm = True

if __name__ == "__main__":
    sys.exit(collector.main())
