"""Command-line entry points: `python -m experiments.{train,benchmark}`."""
