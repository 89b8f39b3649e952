#!/usr/bin/env bash
# Create the kind cluster (if missing) with ingress-nginx and metrics-server (for the HPA).
# Env: KIND_CLUSTER (reviewserve), INGRESS_NGINX_VERSION, METRICS_SERVER_VERSION.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INGRESS_NGINX_VERSION="${INGRESS_NGINX_VERSION:-controller-v1.12.1}"
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.7.2}"
INGRESS_URL="https://raw.githubusercontent.com/kubernetes/ingress-nginx/${INGRESS_NGINX_VERSION}/deploy/static/provider/kind/deploy.yaml"
METRICS_URL="https://github.com/kubernetes-sigs/metrics-server/releases/download/${METRICS_SERVER_VERSION}/components.yaml"

need "${KIND}" "${KUBECTL}" "${DOCKER}"

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
