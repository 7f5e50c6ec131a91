"""The detached, short-lived process that delivers the spool: `python -m sender`."""
