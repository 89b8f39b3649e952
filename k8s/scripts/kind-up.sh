#!/usr/bin/env bash
# Create the kind cluster (if missing) with ingress-nginx and metrics-server (for the HPA).
# Env: KIND_CLUSTER (reviewserve), INGRESS_NGINX_VERSION, METRICS_SERVER_VERSION.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ingress-nginx was retired in March 2026: controller-v1.15.1 is its final release (last CVE fixes).
# The chart also renders a Gateway API HTTPRoute (httpRoute.enabled) for maintained Gateway controllers.
INGRESS_NGINX_VERSION="${INGRESS_NGINX_VERSION:-controller-v1.15.1}"
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.8.0}"
MIN_KIND_VERSION=0.30.0  # the release k8s/kind-config.yaml's node image was built for
INGRESS_URL="https://raw.githubusercontent.com/kubernetes/ingress-nginx/${INGRESS_NGINX_VERSION}/deploy/static/provider/kind/deploy.yaml"
METRICS_URL="https://github.com/kubernetes-sigs/metrics-server/releases/download/${METRICS_SERVER_VERSION}/components.yaml"

need "${KIND}" "${KUBECTL}" "${DOCKER}"

kind_version="$("${KIND}" version | sed -nE 's/^kind v([0-9]+\.[0-9]+\.[0-9]+).*/\1/p')"
if [[ -n "${kind_version}" ]] && [[ "$(printf '%s\n%s\n' "${MIN_KIND_VERSION}" "${kind_version}" | sort -V | head -n 1)" != "${MIN_KIND_VERSION}" ]]; then
  die "kind ${kind_version} is older than ${MIN_KIND_VERSION}, the release the pinned node image is built for: upgrade kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
fi

if "${KIND}" get clusters 2>/dev/null | grep -qx "${CLUSTER}"; then
  log "cluster ${CLUSTER} exists"
else
  log "creating kind cluster ${CLUSTER}"
  "${KIND}" create cluster --name "${CLUSTER}" --config "${REPO}/k8s/kind-config.yaml" --wait 120s
fi

log "installing ingress-nginx ${INGRESS_NGINX_VERSION} (kind provider)"
"${KUBECTL}" --context "${CONTEXT}" apply -f "${INGRESS_URL}"

log "installing metrics-server ${METRICS_SERVER_VERSION}"
"${KUBECTL}" --context "${CONTEXT}" apply -f "${METRICS_URL}"
# kind's kubelets serve self-signed certificates: metrics-server must not verify them.
args="$("${KUBECTL}" --context "${CONTEXT}" -n kube-system get deployment metrics-server \
  -o jsonpath='{.spec.template.spec.containers[0].args}')"
if [[ "${args}" != *"--kubelet-insecure-tls"* ]]; then
  "${KUBECTL}" --context "${CONTEXT}" -n kube-system patch deployment metrics-server --type=json \
    -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
fi

log "waiting for ingress-nginx and metrics-server"
"${KUBECTL}" --context "${CONTEXT}" -n ingress-nginx wait --for=condition=ready pod \
  --selector=app.kubernetes.io/component=controller --timeout=300s
"${KUBECTL}" --context "${CONTEXT}" -n kube-system rollout status deployment/metrics-server --timeout=300s
log "cluster ${CLUSTER} ready (context ${CONTEXT})"
