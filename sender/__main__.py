"""`python -m sender`: the detached drain process started by hosts."""

from sender.run import main

if __name__ == "__main__":
    main()
