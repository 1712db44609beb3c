"""The pipeline on Kubeflow Pipelines and Vertex AI Pipelines: the compiled KFP v2 spec, the GPU tables, and the
commands the pipeline image runs (one stage; the Trainer's custom job with its fallback order).

Nothing here imports Django; kfp and google-cloud-aiplatform are imported only where they are used.
"""
