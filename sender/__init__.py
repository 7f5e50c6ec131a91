"""The detached, short-lived process that delivers the spool.

Installed as `visivo_telemetry._sender`, never as a top-level `sender`: PyPI has an unrelated
`sender`, and a `sender/` folder on someone's `PYTHONPATH` must never run in our place.
"""
