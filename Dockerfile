# The hub's image (docker-compose.yml builds it): Python 3.11, the hub installed from this checkout,
# run as an unprivileged user whose uid (1883) matches Mosquitto's, so the broker can read the
# 0600 password and ACL files the hub writes into their shared volume (hub/broker_auth.py).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 1883 hub \
    && useradd --system --uid 1883 --gid hub --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin hub

WORKDIR /app
COPY pyproject.toml README.md ./
COPY devices ./devices
COPY ingest ./ingest
COPY alerts ./alerts
COPY video ./video
COPY hub ./hub
RUN pip install . \
    && mkdir -p /data /auth \
    && chown hub:hub /data /auth

USER hub
ENV HUB_DATA_DIR=/data \
    HUB_HTTP__HOST=0.0.0.0 \
    HUB_HTTP__PORT=8000
VOLUME ["/data"]
EXPOSE 8000

# /healthz needs no login; it answers 200 while the hub serves (status "degraded" without a broker).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

CMD ["hub", "run"]
