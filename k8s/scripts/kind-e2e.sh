#!/usr/bin/env bash
# Run the end-to-end tests (tests/e2e) against the kind cluster's release.
# Env: PYTHON (default .venv/bin/python), PYTEST_ARGS (extra pytest arguments), GATEWAY_URL (default
#      http://localhost, or http://localhost:$KIND_HOST_PORT: the kind Gateway).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PYTHON="${PYTHON:-${REPO}/.venv/bin/python}"
[[ -x "${PYTHON}" ]] || PYTHON=python3

export REVIEWSERVE_E2E_CONTEXT="${CONTEXT}"
export REVIEWSERVE_E2E_NAMESPACE="${NAMESPACE}"
export REVIEWSERVE_E2E_RELEASE="${RELEASE}"
# The Gateway of k8s/gateway.yaml, published on localhost:80 (KIND_HOST_PORT) by k8s/kind-config.yaml.
export REVIEWSERVE_E2E_GATEWAY_URL="${GATEWAY_URL:-${GATEWAY_BASE_URL}}"
export REVIEWSERVE_E2E_HELM="${HELM}"
# Fail, rather than skip, when the cluster is not reachable: this target exists to test it.
export REVIEWSERVE_E2E_REQUIRED=1

pytest_args=()
if [[ -n "${PYTEST_ARGS:-}" ]]; then
  read -r -a pytest_args <<<"${PYTEST_ARGS}"
fi
cd "${REPO}"
exec "${PYTHON}" -m pytest tests/e2e -m e2e -v ${pytest_args[@]+"${pytest_args[@]}"}
