"""ML Platform control plane: Django apps, one per domain.

The execution plane (pipeline stages, demo data, config maths) lives in the
separate ``ml_pipeline`` package, which never imports Django.
"""
