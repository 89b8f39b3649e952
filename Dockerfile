# reviewserve: the predict web service (gunicorn + Flask + the committed model).
#
# Build (a public Python base is the default):
#   DOCKER_BUILDKIT=1 docker build -t reviewserve:latest .
# Behind a TLS-intercepting proxy, hand pip the CA bundle as a BuildKit secret
# (never stored in a layer) and, if needed, a package index:
#   DOCKER_BUILDKIT=1 docker build \
#     --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt \
#     --build-arg PIP_INDEX_URL=https://pypi.example/simple -t reviewserve:latest .
# Without a registry, build a local base with .ci/build-base-image and add
#   --build-arg BASE_IMAGE=reviewserve-base:bookworm
#
# No "# syntax=" line on purpose: it would pull the Dockerfile frontend image
# from a registry; the frontend built into Docker >= 20.10 knows RUN --mount.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder ---
FROM ${BASE_IMAGE} AS builder

# Optional package index for pip (empty: pip's default). Only the builder
# stage sees it; it does not reach the final image.
ARG PIP_INDEX_URL=""

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=120 \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/venv

WORKDIR /src

# Dependencies first, in their own layer, so that a change to the service
# code does not reinstall them. tomllib is in the standard library (3.11+).
COPY pyproject.toml constraints.txt ./
RUN --mount=type=secret,id=pip-ca,required=false \
    if [ -s /run/secrets/pip-ca ]; then \
        export PIP_CERT=/run/secrets/pip-ca REQUESTS_CA_BUNDLE=/run/secrets/pip-ca; \
    fi \
    && if [ -z "${PIP_INDEX_URL}" ]; then unset PIP_INDEX_URL; fi \
    && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt

COPY README.md ./
COPY service/ service/
# Then slim the venv: the runtime needs neither pip nor setuptools (fewer
# packages, fewer CVEs), nor the test suites of the scientific stack (~65 MB),
# SQLAlchemy's test helpers, or C/Cython sources and headers (~6 MB).
RUN --mount=type=secret,id=pip-ca,required=false \
    if [ -s /run/secrets/pip-ca ]; then \
        export PIP_CERT=/run/secrets/pip-ca REQUESTS_CA_BUNDLE=/run/secrets/pip-ca; \
    fi \
    && if [ -z "${PIP_INDEX_URL}" ]; then unset PIP_INDEX_URL; fi \
    && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt . \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pip uninstall --yes --quiet setuptools pip \
    && site="$(/opt/venv/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && for pkg in numpy scipy sklearn; do \
        if [ -d "$site/$pkg" ]; then find "$site/$pkg" -depth -type d -name tests -exec rm -rf {} +; fi; \
    done \
    && rm -rf "$site/sqlalchemy/testing" \
    && find "$site" -type f \( -name '*.c' -o -name '*.h' -o -name '*.pyx' -o -name '*.pxd' \) -delete
# Batch scoring uses pyarrow's CSV/Parquet core and botocore's S3 models only: drop Arrow Flight,
# Arrow's own S3/GCS/Azure/HDFS filesystems (s3fs does object storage), headers, Cython sources and
# tests (~65 MB), and the ~430 other AWS service models (~25 MB).
RUN site="$(/opt/venv/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && find "$site/pyarrow" -maxdepth 1 \( -name include -o -name src -o -name tests -o -name 'libarrow_flight.so*' \
        -o -name 'libarrow_python_flight.so*' -o -name '_flight.*.so' -o -name 'libarrow_s3.so*' -o -name '_s3fs.*.so' \
        -o -name '_gcsfs.*.so' -o -name '_azurefs.*.so' -o -name '_hdfs.*.so' -o -name '_pyarrow_cpp_tests.*.so' \) \
        -exec rm -rf {} + \
    && find "$site/pyarrow" \( -name '*.pxd' -o -name '*.pyx' -o -name '*.pxi' -o -name '*.h' -o -name '*.cc' \) -delete \
    && find "$site/botocore/data" -mindepth 1 -maxdepth 1 -type d ! -name s3 ! -name sts ! -name sso ! -name sso-oidc \
        -exec rm -rf {} + \
    && /opt/venv/bin/python3 -c 'import pyarrow.csv, pyarrow.parquet, pyarrow.fs, s3fs, sqlalchemy, psycopg'

# ------------------------------------------------------------------ final ---
FROM ${BASE_IMAGE}

ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE_URL=""

LABEL org.opencontainers.image.title="reviewserve" \
      org.opencontainers.image.description="Review sentiment prediction web service (gunicorn, Flask, scikit-learn)" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# Fixed, numeric, non-root identity (Kubernetes runAsNonRoot can verify it).
# The multiprocess metrics directory: in Kubernetes an emptyDir, with
# `docker run --read-only` a `--tmpfs`. Mode 1777 like /tmp, because Docker
# gives a --tmpfs mounted over an existing directory that directory's mode
# but not its owner: 1777 keeps it writable for any UID the pod runs as.
RUN groupadd --system --gid 10001 reviewserve \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin reviewserve \
    && install -d -m 1777 /var/run/reviewserve/metrics

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY models/ /app/models/

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=9696 \
    HEALTH_PORT=9698 \
    MODEL_PATH=/app/models/review-sentiment/1 \
    PROMETHEUS_MULTIPROC_DIR=/var/run/reviewserve/metrics

USER 10001:10001
# 9696: the API; 9698: the probes (/healthz, /readyz, /metrics) answered by the gunicorn master.
EXPOSE 9696 9698

# Kubernetes ignores HEALTHCHECK (the chart has probes); for plain docker. The probe port answers whatever the
# workers are doing (HEALTH_PORT=0 turns it off: then the main port).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; p = os.environ.get('HEALTH_PORT', '9698'); urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (p if p != '0' else os.environ.get('PORT', '9696')), timeout=4)"]

# Exec form: gunicorn is PID 1 and receives SIGTERM directly.
ENTRYPOINT ["gunicorn", "--config", "python:reviewserve.web.gunicorn_conf", "reviewserve.web.wsgi:app"]
