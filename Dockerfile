# Upload gateway image.
#
# Two stages: the builder installs the project and its dependencies into a
# virtual environment at /opt/venv; the runtime stage copies only that venv
# onto a clean slim image, so no compiler, pip cache or source tree ships.
# Both stages use the same base image, so the venv's interpreter path
# (/usr/local/bin/python3) is valid in the runtime stage.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# Dependency versions come from pyproject.toml; the wheel is built and
# installed in one step, byte-compiled so a read-only root filesystem never
# needs to write .pyc files.
RUN /opt/venv/bin/pip install --no-cache-dir --compile . \
    && /opt/venv/bin/gateway --help > /dev/null


FROM python:${PYTHON_VERSION}-slim AS runtime

LABEL org.opencontainers.image.title="upload-gateway" \
      org.opencontainers.image.description="Large-file upload gateway for customer support tickets"

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_DATA_DIR=/data

# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin gateway \
    && mkdir -p /data \
    && chown 10001:10001 /data

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000

# No curl in the image: the interpreter that is already there does the probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# Exec form: the gateway is PID 1 and receives SIGTERM directly, so it can
# finish in-flight uploads before it exits.
ENTRYPOINT ["gateway"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
