#!/usr/bin/env bash
# Create the kind cluster (if missing) with the Gateway API CRDs, NGINX Gateway Fabric and its Gateway
# (k8s/gateway.yaml, on http://localhost), and metrics-server (for the HPA). Re-running it is safe.
# Env: KIND_CLUSTER (reviewserve), KIND_HOST_PORT (80: the host port of the Gateway on 127.0.0.1; set
#      8080 on rootless Docker or Podman), GATEWAY_API_VERSION, NGF_VERSION, METRICS_SERVER_VERSION.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# NGINX Gateway Fabric, NGINX's maintained Gateway API implementation (ingress-nginx, which this
# workflow used before, was retired in March 2026). 2.7.2: its latest release found (September 2026,
# nginx/nginx-gateway-fabric PR #5925 "Update docs for release 2.7.2"); its Helm chart carries the same
# version (CHANGELOG: "The version of the Helm chart is now ..."). NGF's technical
# specifications (docs.nginx.com/nginx-gateway-fabric/overview/technical-specifications) list 2.7 with
# Gateway API 1.6.1 and Kubernetes 1.32+ (k8s/kind-config.yaml's node is v1.34.0), and 2.7.x as
# compatible with Gateway API v1.6.x; NGF installs the standard channel.
NGF_VERSION="${NGF_VERSION:-2.7.2}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.6.1}"
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.8.0}"
MIN_KIND_VERSION=0.30.0  # the release k8s/kind-config.yaml's node image was built for
GATEWAY_API_URL="https://github.com/kubernetes-sigs/gateway-api/releases/download/${GATEWAY_API_VERSION}/standard-install.yaml"
NGF_CHART=oci://ghcr.io/nginx/charts/nginx-gateway-fabric
NGF_RELEASE=ngf
NGF_NAMESPACE=nginx-gateway
METRICS_URL="https://github.com/kubernetes-sigs/metrics-server/releases/download/${METRICS_SERVER_VERSION}/components.yaml"
GATEWAY_MANIFEST="${REPO}/k8s/gateway.yaml"
# As NGF's "Get started" guide (kind) does: the data plane's Service is a NodePort whose node port
# (31437, extraPortMappings containerPort in k8s/kind-config.yaml, published there on 127.0.0.1:80)
# serves the Gateway listener on port 80.
NGF_NODE_PORTS='[{"port":31437,"listenerPort":80}]'
# The Gateway in k8s/gateway.yaml (the HTTPRoute of k8s/values-kind.yaml attaches to it).
GATEWAY_NAME=gateway

need "${KIND}" "${KUBECTL}" "${DOCKER}"
command -v "${HELM}" >/dev/null 2>&1 || die "helm not found: install Helm 3.10+ or 4 (https://helm.sh/docs/intro/install/) or set HELM"

kind_version="$("${KIND}" version | sed -nE 's/^kind v([0-9]+\.[0-9]+\.[0-9]+).*/\1/p')"
if [[ -n "${kind_version}" ]] && [[ "$(printf '%s\n%s\n' "${MIN_KIND_VERSION}" "${kind_version}" | sort -V | head -n 1)" != "${MIN_KIND_VERSION}" ]]; then
  die "kind ${kind_version} is older than ${MIN_KIND_VERSION}, the release the pinned node image is built for: upgrade kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
fi

if "${KIND}" get clusters 2>/dev/null | grep -qx "${CLUSTER}"; then
  log "cluster ${CLUSTER} exists"
else
  config="${REPO}/k8s/kind-config.yaml"
  if [[ "${KIND_HOST_PORT}" != 80 ]]; then
    if ! [[ "${KIND_HOST_PORT}" =~ ^[0-9]+$ ]] || ((KIND_HOST_PORT < 1 || KIND_HOST_PORT > 65535)); then
      die "KIND_HOST_PORT must be a port number, not '${KIND_HOST_PORT}'"
    fi
    # The same config with the Gateway published on another host port (its only `hostPort: 80`).
    config="$(mktemp)"
    trap 'rm -f "${config}"' EXIT
    sed -E "s/^( *hostPort: )80\$/\1${KIND_HOST_PORT}/" "${REPO}/k8s/kind-config.yaml" >"${config}"
    grep -qE "^ *hostPort: ${KIND_HOST_PORT}\$" "${config}" || die "cannot set hostPort in k8s/kind-config.yaml"
  fi
  log "creating kind cluster ${CLUSTER} (Gateway on 127.0.0.1:${KIND_HOST_PORT})"
  "${KIND}" create cluster --name "${CLUSTER}" --config "${config}" --wait 120s
fi

# Server-side apply, as the Gateway API install guide says (the bundle's CRDs are large).
log "installing the Gateway API ${GATEWAY_API_VERSION} CRDs (standard channel)"
"${KUBECTL}" --context "${CONTEXT}" apply --server-side -f "${GATEWAY_API_URL}"
"${KUBECTL}" --context "${CONTEXT}" wait --for=condition=Established --timeout=60s \
  crd/gatewayclasses.gateway.networking.k8s.io crd/gateways.gateway.networking.k8s.io \
  crd/httproutes.gateway.networking.k8s.io

# The chart creates the GatewayClass "nginx" and NGF's own CRDs; then wait for the control plane as
# NGF's Helm install guide does.
log "installing NGINX Gateway Fabric ${NGF_VERSION} (${NGF_CHART})"
"${HELM}" upgrade --install "${NGF_RELEASE}" "${NGF_CHART}" --version "${NGF_VERSION}" \
  --kube-context "${CONTEXT}" --namespace "${NGF_NAMESPACE}" --create-namespace \
  --set nginx.service.type=NodePort --set-json "nginx.service.nodePorts=${NGF_NODE_PORTS}" \
  --timeout 5m
"${KUBECTL}" --context "${CONTEXT}" -n "${NGF_NAMESPACE}" wait --for=condition=Available --timeout=300s \
  "deployment/${NGF_RELEASE}-nginx-gateway-fabric"

# NGF provisions the Gateway's data plane (Deployment and NodePort Service "<gateway>-nginx" in the
# Gateway's namespace); Programmed: the listener is configured in NGINX.
log "creating Gateway ${NGF_NAMESPACE}/${GATEWAY_NAME} (${GATEWAY_MANIFEST#"${REPO}/"})"
"${KUBECTL}" --context "${CONTEXT}" apply -f "${GATEWAY_MANIFEST}"

log "installing metrics-server ${METRICS_SERVER_VERSION}"
"${KUBECTL}" --context "${CONTEXT}" apply -f "${METRICS_URL}"
# kind's kubelets serve self-signed certificates: metrics-server must not verify them.
args="$("${KUBECTL}" --context "${CONTEXT}" -n kube-system get deployment metrics-server \
  -o jsonpath='{.spec.template.spec.containers[0].args}')"
if [[ "${args}" != *"--kubelet-insecure-tls"* ]]; then
  "${KUBECTL}" --context "${CONTEXT}" -n kube-system patch deployment metrics-server --type=json \
    -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
fi

log "waiting for the Gateway and metrics-server"
"${KUBECTL}" --context "${CONTEXT}" -n "${NGF_NAMESPACE}" wait --for=condition=Programmed --timeout=300s \
  "gateway/${GATEWAY_NAME}"
"${KUBECTL}" --context "${CONTEXT}" -n "${NGF_NAMESPACE}" rollout status "deployment/${GATEWAY_NAME}-nginx" \
  --timeout=300s
"${KUBECTL}" --context "${CONTEXT}" -n kube-system rollout status deployment/metrics-server --timeout=300s
log "cluster ${CLUSTER} ready (context ${CONTEXT}); the Gateway answers on ${GATEWAY_BASE_URL}/ (if the cluster existed already: on the host port it was created with)"
