{{/*
Expand the name of the chart.
*/}}
{{- define "reviewserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name (63 chars max: some Kubernetes name fields are limited
to this by the DNS naming spec). If the release name contains the chart name it is used as is.
*/}}
{{- define "reviewserve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version as used by the chart label.
*/}}
{{- define "reviewserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels: commonLabels plus the chart's standard labels (which win over a commonLabels key of
the same name, so the selector labels can never be changed through it).
*/}}
{{- define "reviewserve.labels" -}}
{{- $own := dict "helm.sh/chart" (include "reviewserve.chart" .) "app.kubernetes.io/managed-by" .Release.Service "app.kubernetes.io/part-of" "reviewserve" }}
{{- if .Chart.AppVersion }}
{{- $_ := set $own "app.kubernetes.io/version" (.Chart.AppVersion | toString) }}
{{- end }}
{{- $labels := mustMergeOverwrite (dict) (.Values.commonLabels | default dict) $own (include "reviewserve.selectorLabels" . | fromYaml) }}
{{- toYaml $labels }}
{{- end }}

{{/*
Labels of the app pods: common labels, podLabels, the component; selector labels win.
*/}}
{{- define "reviewserve.podLabels" -}}
{{- $labels := mustMergeOverwrite (dict) (include "reviewserve.labels" . | fromYaml) (.Values.podLabels | default dict) (dict "app.kubernetes.io/component" "server") (include "reviewserve.selectorLabels" . | fromYaml) }}
{{- toYaml $labels }}
{{- end }}

{{/*
Selector labels (immutable on the Deployment: never add to them).
*/}}
{{- define "reviewserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reviewserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the service account to use.
*/}}
{{- define "reviewserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "reviewserve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference: repository:tag (tag defaults to appVersion), plus @digest when set.
*/}}
{{- define "reviewserve.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag | toString }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Image of the helm test pod (defaults to the app image).
*/}}
{{- define "reviewserve.testImage" -}}
{{- if .Values.tests.image.repository }}
{{- printf "%s:%s" .Values.tests.image.repository (default .Chart.AppVersion .Values.tests.image.tag | toString) }}
{{- else }}
{{- include "reviewserve.image" . }}
{{- end }}
{{- end }}

{{/*
Smallest number of replicas the release runs with: the HPA minimum when autoscaling,
else replicaCount.
*/}}
{{- define "reviewserve.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}
{{- .Values.autoscaling.minReplicas | int }}
{{- else }}
{{- .Values.replicaCount | int }}
{{- end }}
{{- end }}

{{/*
A CPU quantity ("250m", "1", "1.5", 2) rounded up to whole CPUs, at least 1.
*/}}
{{- define "reviewserve.cpuCeil" -}}
{{- $q := toString . }}
{{- $cpus := 0.0 }}
{{- if hasSuffix "m" $q }}
{{- $cpus = divf (trimSuffix "m" $q | float64) 1000 }}
{{- else }}
{{- $cpus = $q | float64 }}
{{- end }}
{{- max 1 (ceil $cpus | int) }}
{{- end }}

{{/*
WORKERS: config.workers, else limits.cpu rounded up, else requests.cpu rounded up. Never the
downward API: without a CPU limit it reports the node's allocatable CPUs (32 workers on a 32-core
node, inside the memory limit).
*/}}
{{- define "reviewserve.workers" -}}
{{- $limit := dig "limits" "cpu" "" (.Values.resources | default dict) }}
{{- $request := dig "requests" "cpu" "" (.Values.resources | default dict) }}
{{- if .Values.config.workers }}
{{- .Values.config.workers | int }}
{{- else if $limit }}
{{- include "reviewserve.cpuCeil" $limit }}
{{- else if $request }}
{{- include "reviewserve.cpuCeil" $request }}
{{- else }}
{{- fail "config.workers is empty and resources has neither limits.cpu nor requests.cpu: set one of them (WORKERS is never taken from the node's CPU count, which would start one worker per node CPU inside the memory limit)" }}
{{- end }}
{{- end }}

{{/*
Whether a PodDisruptionBudget is rendered: enabled and at least 2 replicas at the minimum.
*/}}
{{- define "reviewserve.pdbEnabled" -}}
{{- if and .Values.podDisruptionBudget.enabled (ge (include "reviewserve.minReplicas" . | int) 2) }}true{{ end }}
{{- end }}

{{/*
Pods a PDB value (integer or "N%") amounts to for `replicas` pods, rounded up as Kubernetes does.
*/}}
{{- define "reviewserve.pdbPods" -}}
{{- $v := index . 0 | toString }}
{{- $replicas := index . 1 | int }}
{{- if hasSuffix "%" $v }}
{{- ceil (divf (mulf (trimSuffix "%" $v | float64) $replicas) 100) | int }}
{{- else }}
{{- $v | int }}
{{- end }}
{{- end }}

{{/*
Fails the render unless the grace period covers preStop + shutdown delay + graceful timeout,
and checks other cross-field rules the JSON schema cannot express.
*/}}
{{- define "reviewserve.validate" -}}
{{- $preStop := .Values.lifecycle.preStopSleepSeconds | int }}
{{- $delay := .Values.config.shutdownDelay | int }}
{{- $graceful := .Values.config.gracefulTimeout | int }}
{{- $grace := .Values.terminationGracePeriodSeconds | int }}
{{- $needed := add $preStop $delay $graceful }}
{{- if le $grace $needed }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than lifecycle.preStopSleepSeconds (%d) + config.shutdownDelay (%d) + config.gracefulTimeout (%d) = %d" $grace $preStop $delay $graceful $needed) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (.Values.autoscaling.minReplicas | int) (.Values.autoscaling.maxReplicas | int)) }}
{{- fail (printf "autoscaling.minReplicas (%d) must not exceed autoscaling.maxReplicas (%d)" (.Values.autoscaling.minReplicas | int) (.Values.autoscaling.maxReplicas | int)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not (dig "requests" "cpu" "" .Values.resources)) }}
{{- fail "autoscaling.enabled needs resources.requests.cpu: the HPA's CPU utilization is a percentage of it" }}
{{- end }}
{{- $keepalive := .Values.config.keepalive | int }}
{{- $proxyIdle := .Values.upstreamProxy.idleTimeoutSeconds | int }}
{{- if le $keepalive $proxyIdle }}
{{- fail (printf "config.keepalive (%d) must be greater than upstreamProxy.idleTimeoutSeconds (%d): the proxy in front must close idle upstream connections before gunicorn does, or it reuses a connection the server has just closed and answers 502" $keepalive $proxyIdle) }}
{{- end }}
{{- if include "reviewserve.pdbEnabled" . }}
{{- $min := include "reviewserve.minReplicas" . | int }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if not (kindIs "invalid" $pdb.minAvailable) }}
{{- $pods := include "reviewserve.pdbPods" (list $pdb.minAvailable $min) | int }}
{{- if ge $pods $min }}
{{- fail (printf "podDisruptionBudget.minAvailable (%v) keeps all %d pods of the minimum replica count (%s) available: no pod could ever be evicted and every node drain would block; use fewer, or maxUnavailable" $pdb.minAvailable $min (ternary "autoscaling.minReplicas" "replicaCount" .Values.autoscaling.enabled)) }}
{{- end }}
{{- else if lt (include "reviewserve.pdbPods" (list $pdb.maxUnavailable $min) | int) 1 }}
{{- fail (printf "podDisruptionBudget.maxUnavailable (%v) allows no pod to be evicted: every node drain would block; use at least 1" $pdb.maxUnavailable) }}
{{- end }}
{{- end }}
{{- if and (not (kindIs "invalid" .Values.service.nodePort)) (not (has .Values.service.type (list "NodePort" "LoadBalancer"))) }}
{{- fail (printf "service.nodePort (%v) needs service.type NodePort or LoadBalancer (it is %s)" .Values.service.nodePort .Values.service.type) }}
{{- end }}
{{- if and .Values.canary.enabled .Values.shadow.enabled }}
{{- fail "canary.enabled and shadow.enabled are exclusive: a canary answers part of the traffic, a shadow answers none (its answers are discarded)" }}
{{- end }}
{{- if and (include "reviewserve.secondTrack" .) (not .Values.httpRoute.enabled) }}
{{- fail "canary.enabled / shadow.enabled need httpRoute.enabled: the traffic split and the mirror live on the HTTPRoute" }}
{{- end }}
{{- if and (include "reviewserve.secondTrack" .) (not .Values.canary.model.uri) }}
{{- fail "canary.enabled / shadow.enabled need canary.model.uri: the second track's model" }}
{{- end }}
{{- if and .Values.service.externalTrafficPolicy (not (has .Values.service.type (list "NodePort" "LoadBalancer"))) }}
{{- fail (printf "service.externalTrafficPolicy (%s) needs service.type NodePort or LoadBalancer (it is %s)" .Values.service.externalTrafficPolicy .Values.service.type) }}
{{- end }}
{{- end }}

{{/*
ConfigMap data: every app setting as an environment variable.
*/}}
{{- define "reviewserve.configData" -}}
PORT: {{ .Values.config.port | int64 | toString | quote }}
WORKERS: {{ include "reviewserve.workers" . | quote }}
THREADS: {{ .Values.config.threads | int64 | toString | quote }}
MODEL_PATH: {{ .Values.config.modelPath | quote }}
MODEL_URI: {{ .Values.model.uri | quote }}
MODEL_SHA256: {{ .Values.model.sha256 | quote }}
MODEL_CACHE_DIR: "/var/cache/reviewserve/models"
MODEL_FETCH_TIMEOUT: {{ .Values.model.fetchTimeoutSeconds | int64 | toString | quote }}
MODEL_RETRY_MAX_SECONDS: {{ .Values.model.retryMaxSeconds | int64 | toString | quote }}
{{- with .Values.model.s3EndpointUrl }}
AWS_ENDPOINT_URL: {{ . | quote }}
{{- end }}
TRACK: "stable"
MAX_BODY_BYTES: {{ .Values.config.maxBodyBytes | int64 | toString | quote }}
MAX_REVIEWS: {{ .Values.config.maxReviews | int64 | toString | quote }}
MAX_REVIEW_CHARS: {{ .Values.config.maxReviewChars | int64 | toString | quote }}
LOG_LEVEL: {{ .Values.config.logLevel | quote }}
TIMEOUT: {{ .Values.config.timeout | int64 | toString | quote }}
GRACEFUL_TIMEOUT: {{ .Values.config.gracefulTimeout | int64 | toString | quote }}
KEEPALIVE: {{ .Values.config.keepalive | int64 | toString | quote }}
SHUTDOWN_DELAY: {{ .Values.config.shutdownDelay | int64 | toString | quote }}
MAX_REQUESTS: {{ .Values.config.maxRequests | int64 | toString | quote }}
MAX_REQUESTS_JITTER: {{ .Values.config.maxRequestsJitter | int64 | toString | quote }}
HEALTH_PORT: {{ .Values.config.healthPort | int64 | toString | quote }}
MAX_QUEUE_MS: {{ .Values.config.maxQueueMs | toString | quote }}
RETRY_AFTER_SECONDS: {{ .Values.config.retryAfterSeconds | int64 | toString | quote }}
PROMETHEUS_MULTIPROC_DIR: "/var/run/reviewserve/metrics"
{{- end }}

{{/*
Whether the second track of web pods (canary or shadow) is rendered.
*/}}
{{- define "reviewserve.secondTrack" -}}
{{- if or .Values.canary.enabled .Values.shadow.enabled }}true{{ end }}
{{- end }}

{{/*
Name of the second track's Deployment and Service.
*/}}
{{- define "reviewserve.canaryName" -}}
{{- printf "%s-canary" (include "reviewserve.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/*
Grafana dashboard uid (at most 40 characters), unique per release namespace and name.
*/}}
{{- define "reviewserve.dashboardUid" -}}
{{- printf "reviewserve-%s" (printf "%s/%s" .Release.Namespace (include "reviewserve.fullname" .) | sha256sum | trunc 16) }}
{{- end }}

{{/*
PromQL regex of the prediction routes, as the `path` label (Flask route templates) names them.
*/}}
{{- define "reviewserve.predictPaths" -}}
/predict|/v2/models/<name>/infer
{{- end }}

{{/*
PromQL label matcher selecting this release's scrape targets.
*/}}
{{- define "reviewserve.promSelector" -}}
namespace="{{ .Release.Namespace }}",service=~"{{ include "reviewserve.fullname" . }}|{{ include "reviewserve.canaryName" . }}"
{{- end }}

{{/*
The Deployment's `replicas` (empty: leave it out). Without autoscaling: replicaCount. With it: the
live Deployment's count when it exists (`live`, from lookup; an upgrade, e.g. the one that turns
autoscaling on, so the count never drops to the API default of 1 before the HPA acts), else nothing
(a first install, or `helm template`/GitOps without cluster access: the HPA sets it).
Kubernetes docs, "Migrating Deployments and StatefulSets to horizontal autoscaling".
*/}}
{{- define "reviewserve.replicas" -}}
{{- $root := .root -}}
{{- if not $root.Values.autoscaling.enabled -}}
{{- $root.Values.replicaCount | int -}}
{{- else if and .live (hasKey (.live.spec | default dict) "replicas") -}}
{{- min (max (.live.spec.replicas | int) ($root.Values.autoscaling.minReplicas | int)) ($root.Values.autoscaling.maxReplicas | int) -}}
{{- end -}}
{{- end }}

{{/*
TCP port of the store a model URI is fetched from ("" for a folder in the image): the URI's own
port for http(s)://, else model.s3EndpointUrl's for s3:// (AWS S3 when empty), else 443/80 by scheme.
Arguments: dict "uri" "root".
*/}}
{{- define "reviewserve.modelStorePort" -}}
{{- $scheme := regexFind "^[a-zA-Z0-9]+://" .uri | trimSuffix "://" | lower -}}
{{- $url := "" -}}
{{- if eq $scheme "s3" -}}
{{- $url = .root.Values.model.s3EndpointUrl | default "https://s3.amazonaws.com" -}}
{{- else if has $scheme (list "http" "https") -}}
{{- $url = .uri -}}
{{- end -}}
{{- if $url -}}
{{- $parsed := urlParse $url -}}
{{- regexFind ":[0-9]+$" $parsed.host | trimPrefix ":" | default (ternary "443" "80" (eq (lower $parsed.scheme) "https")) -}}
{{- end -}}
{{- end }}

{{/*
The model store ports the web pods (both tracks) reach, as a comma-separated list ("" for none).
*/}}
{{- define "reviewserve.modelStorePorts" -}}
{{- $uris := list .Values.model.uri -}}
{{- if include "reviewserve.secondTrack" . -}}
{{- $uris = append $uris .Values.canary.model.uri -}}
{{- end -}}
{{- $ports := list -}}
{{- range $uris -}}
{{- with include "reviewserve.modelStorePort" (dict "uri" . "root" $) -}}
{{- $ports = append $ports . -}}
{{- end -}}
{{- end -}}
{{- $ports | uniq | join "," -}}
{{- end }}
