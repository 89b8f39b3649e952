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
Common labels.
*/}}
{{- define "reviewserve.labels" -}}
helm.sh/chart: {{ include "reviewserve.chart" . }}
{{ include "reviewserve.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: reviewserve
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
{{- end }}

{{/*
ConfigMap data: every app setting as an environment variable.
*/}}
{{- define "reviewserve.configData" -}}
PORT: {{ .Values.config.port | int64 | toString | quote }}
THREADS: {{ .Values.config.threads | int64 | toString | quote }}
MODEL_PATH: {{ .Values.config.modelPath | quote }}
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
PROMETHEUS_MULTIPROC_DIR: "/var/run/reviewserve/metrics"
{{- end }}

{{/*
PromQL label matcher selecting this release's scrape targets.
*/}}
{{- define "reviewserve.promSelector" -}}
namespace="{{ .Release.Namespace }}",service="{{ include "reviewserve.fullname" . }}"
{{- end }}
