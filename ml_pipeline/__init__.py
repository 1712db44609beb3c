"""ML Platform execution plane.

Everything that touches data or models: config schemas and their maths
(tensor breakdown, parameter counts), reading dataset sources with DuckDB,
the demo-data generator, the pipeline stages and their runner, and serving.
This package never imports Django, so the same code runs inside the worker,
a remote runner or a Vertex AI container.
"""
