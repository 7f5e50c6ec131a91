"""`python -m visivo_telemetry._sender`: the detached drain process started by hosts."""

from .run import main

if __name__ == "__main__":
    main()
