#!/usr/bin/env bash
# Build the image, load it into kind and install/upgrade the chart (waits for readiness).
# Env: RELEASE, NAMESPACE, KIND_CLUSTER (see lib.sh), IMAGE_TAG (default: unique per build),
#      BASE_IMAGE (optional docker build-arg), DOCKER_BUILD_ARGS (extra `docker build` arguments),
#      HELM_ARGS (extra helm arguments, e.g. "--set stream.enabled=true"; the kind values and the
#      loaded image tag stay), KIND_PLATFORM (default linux/<the Docker engine's architecture>: the
#      platform built, saved and loaded into the kind node).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need "${KIND}" "${DOCKER}" "${KUBECTL}"
command -v "${HELM}" >/dev/null 2>&1 || die "helm not found: install Helm 3 or 4 (https://helm.sh/docs/intro/install/) or set HELM"

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

# With buildx (Docker >= 23, and the containerd image store Docker 29 uses by default), `docker build`
# attaches a provenance attestation whose manifest `docker save` leaves out, so `ctr import` inside
# the kind node fails with "content digest ... not found" (kind#3795). Build without it. The
# classic builder has no attestations (and no such flag).
# One platform, the kind node's (it runs on this Docker engine): a multi-platform builder would
# otherwise build and save an index whose other platforms kind cannot import.
PLATFORM="${KIND_PLATFORM:-linux/$("${DOCKER}" version --format '{{.Server.Arch}}')}"
if "${DOCKER}" buildx version >/dev/null 2>&1; then
  build=(buildx build --platform "${PLATFORM}" --provenance=false --sbom=false --load)
else
  build=(build --platform "${PLATFORM}")
fi
log "building ${IMAGE}"
DOCKER_BUILDKIT=1 "${DOCKER}" "${build[@]}" ${build_args[@]+"${build_args[@]}"} -t "${IMAGE}" "${REPO}"

# Load through an archive (what `kind load docker-image` does internally, made explicit so the
# image that is loaded is exactly the one just saved).
archive_dir="$(mktemp -d)"
trap 'rm -rf "${archive_dir}"' EXIT
log "loading ${IMAGE} into kind cluster ${CLUSTER}"
# `docker save --platform` (Docker >= 28), as kind's docs recommend with multi-platform builders and
# the containerd image store: only the node's platform goes into the archive.
save=(save)
if "${DOCKER}" save --help 2>/dev/null | grep -q -- '--platform'; then
  save+=(--platform "${PLATFORM}")
fi
"${DOCKER}" "${save[@]}" -o "${archive_dir}/image.tar" "${IMAGE}"
"${KIND}" load image-archive "${archive_dir}/image.tar" --name "${CLUSTER}"

helm_args=()
if [[ -n "${HELM_ARGS:-}" ]]; then
  read -r -a helm_args <<<"${HELM_ARGS}"
fi
log "helm upgrade --install ${RELEASE} (namespace ${NAMESPACE}, helm: ${HELM})"
"${HELM}" upgrade --install "${RELEASE}" "${REPO}/charts/reviewserve" \
  --kube-context "${CONTEXT}" --namespace "${NAMESPACE}" --create-namespace \
  -f "${REPO}/k8s/values-kind.yaml" \
  --set-string "image.repository=${IMAGE_REPO}" --set-string "image.tag=${TAG}" \
  --wait --timeout 5m ${helm_args[@]+"${helm_args[@]}"}

# The release's Deployments by label, whatever the release name, nameOverride or fullnameOverride.
deployments="$("${KUBECTL}" --context "${CONTEXT}" -n "${NAMESPACE}" get deployments \
  -l "app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/managed-by=Helm" -o name)"
[[ -n "${deployments}" ]] || die "no Deployment of release ${RELEASE} in namespace ${NAMESPACE}"
for deployment in ${deployments}; do
  "${KUBECTL}" --context "${CONTEXT}" -n "${NAMESPACE}" rollout status "${deployment}" --timeout=300s
done
log "deployed ${IMAGE} as release ${RELEASE} in namespace ${NAMESPACE}; try: curl -s -X POST ${GATEWAY_BASE_URL}/predict -H 'Content-Type: application/json' -d '{\"review\": \"This Chatbot is amazing\"}'"
