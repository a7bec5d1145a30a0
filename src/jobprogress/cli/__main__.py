"""``python -m jobprogress.cli``: the same as the ``jobprogress`` command."""

from jobprogress.cli import main

if __name__ == "__main__":
    main()
