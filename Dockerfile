# The detection service (COURSE.md §5) on the CPU: ONNX Runtime, FastAPI, no torch.
#
#   docker build -t tcv-serve .
#   docker run --rm -p 8000:8000 -v "$PWD/workspace/models:/models:ro" -e TCV_API_KEY tcv-serve
#
# The model is mounted, not baked in: /models/model.onnx by default, or give the arguments,
# e.g. `docker run ... tcv-serve --model /models/best.onnx --host 0.0.0.0 --max-concurrency 4`.
# The entry point is `tcv serve` without Typer: the same function and the same options
# (tcv_helpers/deploy/server.py, serve_command). The API key comes from the environment
# (TCV_API_KEY), never from the image or a flag; without one the service refuses to listen on
# 0.0.0.0 (add --no-auth to the arguments to serve openly on purpose).
#
# Supply chain: every Python package is installed from requirements-serve.lock with
# --require-hashes (exact versions, each file's sha256), wheels only, and tcv_helpers is built
# without build isolation, so nothing unhashed is fetched. Pin the base image by digest where a
# registry can be reached (read it with `docker buildx imagetools inspect python:3.11-slim`):
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> -t tcv-serve .
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements-serve.lock .
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements-serve.lock
COPY pyproject.toml README.md LICENSE ./
COPY tcv_helpers ./tcv_helpers
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf /app/tcv_helpers /app/build /app/*.egg-info

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tcv
USER tcv

EXPOSE 8000
# The health check asks /healthz on the port the service was started with (its --port).
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "tcv_helpers.deploy.healthcheck"]

ENTRYPOINT ["python", "-m", "tcv_helpers.deploy.server"]
CMD ["--model", "/models/model.onnx", "--host", "0.0.0.0", "--port", "8000"]
