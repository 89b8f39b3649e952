#!/usr/bin/env bash
# Delete the kind cluster.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need "${KIND}"
if "${KIND}" get clusters 2>/dev/null | grep -qx "${CLUSTER}"; then
  "${KIND}" delete cluster --name "${CLUSTER}"
else
  log "no cluster ${CLUSTER}"
fi
