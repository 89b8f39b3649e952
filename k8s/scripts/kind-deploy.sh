#!/usr/bin/env bash
# Build the image, load it into kind and install/upgrade the chart (waits for readiness).
# Env: IMAGE_TAG (default: unique per build), BASE_IMAGE (optional docker build-arg),
#      DOCKER_BUILD_ARGS (extra `docker build` arguments), HELM_ARGS (extra helm arguments).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need "${KIND}" "${DOCKER}" "${KUBECTL}"
command -v "${HELM}" >/dev/null 2>&1 || die "helm not found: run k8s/scripts/install-tools.sh (make tools)"

# A fresh tag per build: with pullPolicy IfNotPresent a reused tag would not roll the pods.
TAG="${IMAGE_TAG:-kind-$(date +%Y%m%d%H%M%S)}"
IMAGE="${IMAGE_REPO}:${TAG}"

build_args=()
if [[ -n "${BASE_IMAGE:-}" ]]; then
  build_args+=(--build-arg "BASE_IMAGE=${BASE_IMAGE}")
fi
if [[ -n "${DOCKER_BUILD_ARGS:-}" ]]; then
  read -r -a extra <<<"${DOCKER_BUILD_ARGS}"
  build_args+=("${extra[@]}")
fi

log "building ${IMAGE}"
DOCKER_BUILDKIT=1 "${DOCKER}" build ${build_args[@]+"${build_args[@]}"} -t "${IMAGE}" "${REPO}"

log "loading ${IMAGE} into kind cluster ${CLUSTER}"
"${KIND}" load docker-image "${IMAGE}" --name "${CLUSTER}"

helm_args=()
if [[ -n "${HELM_ARGS:-}" ]]; then
  read -r -a helm_args <<<"${HELM_ARGS}"
fi
log "helm upgrade --install ${RELEASE} (namespace ${NAMESPACE})"
"${HELM}" upgrade --install "${RELEASE}" "${REPO}/charts/reviewserve" \
  --kube-context "${CONTEXT}" --namespace "${NAMESPACE}" --create-namespace \
  -f "${REPO}/k8s/values-kind.yaml" \
  --set-string "image.repository=${IMAGE_REPO}" --set-string "image.tag=${TAG}" \
  --wait --timeout 5m ${helm_args[@]+"${helm_args[@]}"}

"${KUBECTL}" --context "${CONTEXT}" -n "${NAMESPACE}" rollout status "deployment/${RELEASE}" --timeout=300s
log "deployed ${IMAGE}; try: curl -s -X POST http://localhost/predict -H 'Content-Type: application/json' -d '{\"review\": \"This Chatbot is amazing\"}'"
