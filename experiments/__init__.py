"""Studies built on sweeplab, run from the repository root as modules:
``python -m experiments.<folder>.study`` (or ``make experiment NAME=<folder>``)."""
