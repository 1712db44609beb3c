# The pipeline image (CPU): what each stage of a run on Kubeflow or Vertex AI runs,
#   python -m ml_pipeline stage <Stage> --spec ... --root ...
# Build with `make image`. The versions are pyproject.toml's (Python 3.11, tensorflow-cpu 2.20).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /app

# Dependencies first (their layer is reused while only the code changes).
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['cloud']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY ml_pipeline ./ml_pipeline
COPY ml_platform ./ml_platform
RUN pip install --no-deps . && python -m ml_pipeline --help > /dev/null

# Prints the GPUs TensorFlow sees first (none here), then runs the command.
ENTRYPOINT ["python", "-m", "ml_pipeline.kfp.entrypoint", "--"]
CMD ["python", "-m", "ml_pipeline", "--help"]
