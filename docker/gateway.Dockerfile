# The reference agent-portal gateway as an image (stand-in until gateway/Dockerfile exists).
#
# BASE_IMAGE: any image with `python` (3.11+) and `pip` on PATH. Users build
# FROM the official python image; scripts/prepare-docker.sh passes its local
# Debian-based one, because no registry is reachable on this project's machines.
# Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t rtc/agent-portal-gateway:local .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

WORKDIR /app
# Dependencies first: the layer is reused while only the code changes.
COPY gateway/requirements.txt /app/gateway/requirements.txt
RUN pip install --no-cache-dir -r /app/gateway/requirements.txt
COPY contract/ /app/contract/
COPY gateway/ /app/gateway/

# Inside a container the gateway must listen on all interfaces; the harness
# reaches it through a published port.
ENV HOST=0.0.0.0 PORT=3015 DATABASE_PATH=/app/data/gateway.sqlite3 PYTHONUNBUFFERED=1
RUN mkdir -p /app/data
EXPOSE 3015
CMD ["python", "-m", "gateway"]
