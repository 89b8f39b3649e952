#!/usr/bin/env bash
# Shared settings for the kind scripts (sourced, not run).
# shellcheck disable=SC2034  # variables are used by the scripts that source this file

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${KIND_CLUSTER:-reviewserve}"
CONTEXT="kind-${CLUSTER}"
NAMESPACE="${NAMESPACE:-reviewserve}"
RELEASE="${RELEASE:-reviewserve}"
IMAGE_REPO="${IMAGE_REPO:-reviewserve}"
# Host port of the Gateway on 127.0.0.1 (k8s/kind-config.yaml maps 80): rootless Docker and Podman
# cannot bind ports below 1024, so `KIND_HOST_PORT=8080 make kind-up` (NGF's own kind guide uses 8080).
KIND_HOST_PORT="${KIND_HOST_PORT:-80}"
if [[ "${KIND_HOST_PORT}" == 80 ]]; then
  GATEWAY_BASE_URL="http://localhost"
else
  GATEWAY_BASE_URL="http://localhost:${KIND_HOST_PORT}"
fi
TOOLS="${TOOLS_DIR:-${REPO}/.tools}"
# HELM from the environment, else the project's test helm (.tools, Linux x86-64 only) when it really
# runs here, else the user's own helm on PATH. A bundled binary for another platform fails with
# "exec format error": never pick it just because it exists.
if [[ -z "${HELM:-}" ]]; then
  HELM=helm
  if [[ -x "${TOOLS}/bin/helm" ]] && "${TOOLS}/bin/helm" version >/dev/null 2>&1; then
    HELM="${TOOLS}/bin/helm"
  fi
fi
KUBECTL="${KUBECTL:-kubectl}"
DOCKER="${DOCKER:-docker}"
KIND="${KIND:-kind}"

log() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }
need() {
  local tool
  for tool in "$@"; do
    command -v "${tool}" >/dev/null 2>&1 || die "'${tool}' is required (not found on PATH)"
  done
}
# Note: arrays are expanded as ${a[@]+"${a[@]}"} so that empty ones work under `set -u` on bash < 4.4 (macOS).
