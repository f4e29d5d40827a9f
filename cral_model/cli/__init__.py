"""Command-line entry points: ``cral-train``, ``cral-eval``, ``cral-ablation`` (each ``main(argv=None) -> int``)."""
