{{/*
Helpers of the stream consumer (stream.* values). The consumer pods get their own
app.kubernetes.io/name (<name>-stream), so the web Deployment, Service, PDB and NetworkPolicy,
which select <name> + instance, never match them.
*/}}
{{- define "reviewserve.stream.fullname" -}}
{{- printf "%s-stream" (include "reviewserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reviewserve.stream.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-stream" (include "reviewserve.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "reviewserve.stream.labels" -}}
helm.sh/chart: {{ include "reviewserve.chart" . }}
{{ include "reviewserve.stream.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: reviewserve
app.kubernetes.io/component: stream-consumer
{{- end }}

{{/*
The kind-only Redis (stream.devRedis): name and labels.
*/}}
{{- define "reviewserve.stream.devRedisName" -}}
{{- printf "%s-redis-dev" (include "reviewserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reviewserve.stream.devRedisSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-redis-dev" (include "reviewserve.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Secret name and key holding the Redis URL: the existing Secret, or the dev Redis's own.
*/}}
{{- define "reviewserve.stream.redisSecretName" -}}
{{- if .Values.stream.redis.existingSecret }}
{{- .Values.stream.redis.existingSecret }}
{{- else }}
{{- include "reviewserve.stream.devRedisName" . }}
{{- end }}
{{- end }}

{{/*
host:port of Redis for the KEDA trigger (the dev Redis's Service when it is on).
*/}}
{{- define "reviewserve.stream.kedaAddress" -}}
{{- if .Values.stream.keda.address }}
{{- .Values.stream.keda.address }}
{{- else }}
{{- printf "%s.%s.svc:6379" (include "reviewserve.stream.devRedisName" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
Name of the TriggerAuthentication the ScaledObject references: stream.keda.authenticationRef, else
the chart's own (stream.keda.auth.enabled), else empty.
*/}}
{{- define "reviewserve.stream.kedaAuthName" -}}
{{- if .Values.stream.keda.authenticationRef }}
{{- .Values.stream.keda.authenticationRef }}
{{- else if .Values.stream.keda.auth.enabled }}
{{- printf "%s-redis" (include "reviewserve.stream.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/*
Cross-field rules of stream.* the JSON schema cannot express.
*/}}
{{- define "reviewserve.stream.validate" -}}
{{- $s := .Values.stream }}
{{- if and (not $s.redis.existingSecret) (not $s.devRedis.enabled) }}
{{- fail "stream.enabled needs stream.redis.existingSecret (a Secret holding the Redis URL) or stream.devRedis.enabled (kind only)" }}
{{- end }}
{{- if and (eq $s.sink "sql") (not $s.database.existingSecret) }}
{{- fail "stream.sink=sql needs stream.database.existingSecret (a Secret holding the SQLAlchemy database URL)" }}
{{- end }}
{{- if and $s.autoscaling.enabled $s.keda.enabled }}
{{- fail "stream.autoscaling.enabled and stream.keda.enabled both scale the consumers: enable one" }}
{{- end }}
{{- if and $s.keda.enabled (not $s.keda.address) (not $s.devRedis.enabled) }}
{{- fail "stream.keda.enabled needs stream.keda.address (host:port of Redis for the KEDA trigger)" }}
{{- end }}
{{- if and $s.keda.enabled $s.keda.auth.enabled (not $s.redis.existingSecret) }}
{{- fail "stream.keda.auth.enabled reads the Redis password from stream.redis.existingSecret: set it (the dev Redis has no password)" }}
{{- end }}
{{- if and $s.autoscaling.enabled (gt ($s.autoscaling.minReplicas | int) ($s.autoscaling.maxReplicas | int)) }}
{{- fail (printf "stream.autoscaling.minReplicas (%d) must not exceed stream.autoscaling.maxReplicas (%d)" ($s.autoscaling.minReplicas | int) ($s.autoscaling.maxReplicas | int)) }}
{{- end }}
{{- if and $s.keda.enabled (gt ($s.keda.minReplicaCount | int) ($s.keda.maxReplicaCount | int)) }}
{{- fail (printf "stream.keda.minReplicaCount (%d) must not exceed stream.keda.maxReplicaCount (%d)" ($s.keda.minReplicaCount | int) ($s.keda.maxReplicaCount | int)) }}
{{- end }}
{{- if and $s.autoscaling.enabled (not (dig "requests" "cpu" "" $s.resources)) }}
{{- fail "stream.autoscaling.enabled needs stream.resources.requests.cpu: the HPA's CPU utilization is a percentage of it" }}
{{- end }}
{{- end }}
