"""ML Platform execution plane.

Everything that touches data or models: config schemas and their maths
(tensor breakdown, parameter counts), reading dataset sources with DuckDB,
the demo-data generator, and (later) the pipeline stages. This package never
imports Django, so the same code runs inside the worker, a remote runner or
a Vertex AI container.
"""
