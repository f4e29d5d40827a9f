"""Command-line entry points ``cral-train``, ``cral-eval``, ``cral-ablation``: ``main(argv=None) -> int``."""
