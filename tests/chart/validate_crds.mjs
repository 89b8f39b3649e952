// Validate custom resources against the schemas generated from their CRDs: ServiceMonitor,
// PrometheusRule and PodMonitor (npm @kubernetes-models/prometheus-operator), HTTPRoute and Gateway
// (npm @kubernetes-models/gateway-api, the Gateway API standard-channel CRDs), ScaledObject and
// TriggerAuthentication (npm @kubernetes-models/keda).
// Usage: node validate_crds.mjs <node_modules dir>  < resources.json   (a JSON array)
// Prints one JSON line per resource: {"kind", "name", "ok", "error"}; exits 1 if any is invalid.
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const modulesDir = process.argv[2];
if (!modulesDir) {
  console.error("usage: node validate_crds.mjs <node_modules dir> < resources.json");
  process.exit(2);
}
const load = async (pkg, group, kind) =>
  (await import(pathToFileURL(path.join(modulesDir, "@kubernetes-models", pkg, group, `${kind}.js`)).href))[kind];
const models = {
  "monitoring.coreos.com/v1/ServiceMonitor": await load("prometheus-operator", "monitoring.coreos.com/v1", "ServiceMonitor"),
  "monitoring.coreos.com/v1/PrometheusRule": await load("prometheus-operator", "monitoring.coreos.com/v1", "PrometheusRule"),
  "gateway.networking.k8s.io/v1/HTTPRoute": await load("gateway-api", "gateway.networking.k8s.io/v1", "HTTPRoute"),
  "gateway.networking.k8s.io/v1/Gateway": await load("gateway-api", "gateway.networking.k8s.io/v1", "Gateway"),
  "monitoring.coreos.com/v1/PodMonitor": await load("prometheus-operator", "monitoring.coreos.com/v1", "PodMonitor"),
  "keda.sh/v1alpha1/ScaledObject": await load("keda", "keda.sh/v1alpha1", "ScaledObject"),
  "keda.sh/v1alpha1/TriggerAuthentication": await load("keda", "keda.sh/v1alpha1", "TriggerAuthentication"),
};

const resources = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const res of resources) {
  const key = `${res.apiVersion}/${res.kind}`;
  const Model = models[key];
  const out = { kind: res.kind, name: res?.metadata?.name ?? "", ok: false, error: null };
  if (!Model) {
    out.error = `no CRD schema for ${key}`;
  } else {
    try {
      new Model(res).validate();
      out.ok = true;
    } catch (err) {
      out.error = String(err?.message ?? err);
    }
  }
  if (!out.ok) failed += 1;
  console.log(JSON.stringify(out));
}
process.exit(failed ? 1 : 0);
