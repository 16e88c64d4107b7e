# syntax=docker/dockerfile:1
# The seccomp-sync agent image: `docker build -t ghcr.io/seccomp-sync/agent:0.1.0 .`
#
# It installs exactly what `make install` does (`pip install` of this project, and Debian's
# libseccomp2), so the test suite, which runs that install, tests what ships here.
# Every dependency comes as a wheel: the build stage needs no compiler either.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# A virtualenv at the path it keeps in the final stage (its scripts name their interpreter).
RUN python -m venv /opt/seccomp-sync
WORKDIR /src
# pyproject.toml names README.md (the long description) and LICENSE (the licence file).
COPY pyproject.toml README.md LICENSE ./
COPY agent ./agent
# The byte code is compiled again with hashes instead of source timestamps: a builder may round
# file times when it copies the virtualenv into the final stage or writes the layer (buildah does),
# and a .pyc whose recorded timestamp differs by a second is ignored. On the read-only root every
# start would then compile those modules again in memory: measured, +60 MB RSS for the agent.
# "unchecked": the image never changes, so Python need not even hash the sources.
RUN /opt/seccomp-sync/bin/pip install . \
    && /opt/seccomp-sync/bin/pip uninstall --yes pip setuptools wheel \
    && /opt/seccomp-sync/bin/python -m compileall -q -f --invalidation-mode unchecked-hash \
        /opt/seccomp-sync/lib \
    && /opt/seccomp-sync/bin/seccomp-agent --help >/dev/null

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/seccomp-sync/seccomp-sync
LABEL org.opencontainers.image.title="seccomp-sync agent" \
      org.opencontainers.image.description="Node agent that ships validated seccomp profiles to every Kubernetes node, atomically." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# The distribution's libseccomp: every validation compiles with it (pyseccomp loads it with
# ctypes). Debian's base image usually has it already (apt needs it); naming it keeps it there.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libseccomp2 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nonroot
COPY --from=build /opt/seccomp-sync /opt/seccomp-sync
# Byte code was compiled at install time; the root filesystem is read-only in the DaemonSet.
ENV PATH=/opt/seccomp-sync/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532: the conventional "nonroot" user; the DaemonSet's init container chowns the one host
# directory the agent writes to this user. It needs its passwd entry (above): kopf names itself
# after the user (getpass.getuser()), which fails for a UID without one.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["seccomp-agent"]
CMD ["run"]
