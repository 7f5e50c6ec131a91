"""One-line wiring of telemetry into the hosts Visivo is built on: click and Flask."""
