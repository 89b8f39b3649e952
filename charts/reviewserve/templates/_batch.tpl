{{/*
Batch scoring: the Indexed Job spec shared by the CronJob and the one-off Job.
Call with (dict "root" $ "run" .Values.batch.cronJob) (or .Values.batch.job).
Each pod scores shard $(JOB_COMPLETION_INDEX)/shards: completions = parallelism = shards.
*/}}
{{- define "reviewserve.batchJobSpec" -}}
{{- $root := .root }}
{{- $run := .run }}
{{- $batch := $root.Values.batch }}
{{- $shards := $run.shards | int -}}
completionMode: Indexed
completions: {{ $shards }}
parallelism: {{ $shards }}
backoffLimit: {{ $run.backoffLimit | int }}
activeDeadlineSeconds: {{ $run.activeDeadlineSeconds | int }}
{{- with $run.ttlSecondsAfterFinished }}
ttlSecondsAfterFinished: {{ . | int }}
{{- end }}
podFailurePolicy:
  rules:
    # An evicted or preempted pod is retried without counting against backoffLimit.
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
    {{- with $batch.failJobOnExitCodes }}
    # Retrying would not help: a bad command line, or rows that cannot be scored (already recorded).
    - action: FailJob
      onExitCodes:
        containerName: score
        operator: In
        values:
          {{- range . }}
          - {{ . | int }}
          {{- end }}
    {{- end }}
template:
  metadata:
    labels:
      {{- include "reviewserve.batchLabels" $root | nindent 6 }}
  spec:
    restartPolicy: Never
    {{- with $root.Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    serviceAccountName: {{ include "reviewserve.serviceAccountName" $root }}
    automountServiceAccountToken: false
    enableServiceLinks: false
    {{- with $root.Values.priorityClassName }}
    priorityClassName: {{ . }}
    {{- end }}
    securityContext:
      {{- toYaml $root.Values.podSecurityContext | nindent 6 }}
    containers:
      - name: score
        image: {{ include "reviewserve.image" $root | quote }}
        imagePullPolicy: {{ $root.Values.image.pullPolicy }}
        securityContext:
          {{- toYaml $root.Values.securityContext | nindent 10 }}
        # The image's entrypoint is gunicorn; a scoring pod runs the CLI instead.
        command: ["reviewserve"]
        args:
          - score
          - --shard
          - $(JOB_COMPLETION_INDEX)/{{ $shards }}
          - --no-progress
          {{- range $batch.extraArgs }}
          - {{ . | quote }}
          {{- end }}
        env:
          # Set by the Job controller too; declared so $(JOB_COMPLETION_INDEX) above always expands.
          - name: JOB_COMPLETION_INDEX
            valueFrom:
              fieldRef:
                fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']
          - name: SCORE_SOURCE
            valueFrom:
              secretKeyRef:
                name: {{ $batch.databaseSecret.name }}
                key: {{ $batch.databaseSecret.key }}
          - name: SCORE_TABLE
            value: {{ $batch.table | quote }}
          - name: SCORE_ID_COLUMN
            value: {{ $batch.idColumn | quote }}
          - name: SCORE_TEXT_COLUMN
            value: {{ $batch.textColumn | quote }}
          - name: SCORE_PREDICTIONS_TABLE
            value: {{ $batch.predictionsTable | quote }}
          - name: SCORE_CHUNK_SIZE
            value: {{ $batch.chunkSize | int | toString | quote }}
          {{- with $batch.pushgateway }}
          - name: PUSHGATEWAY_URL
            value: {{ . | quote }}
          {{- end }}
          - name: MODEL_PATH
            value: {{ $root.Values.config.modelPath | quote }}
          - name: MAX_REVIEW_CHARS
            value: {{ $root.Values.config.maxReviewChars | int64 | toString | quote }}
          - name: LOG_LEVEL
            value: {{ $root.Values.config.logLevel | quote }}
          {{- with $root.Values.extraEnv }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        resources:
          {{- toYaml $batch.resources | nindent 10 }}
        volumeMounts:
          - name: tmp
            mountPath: /tmp
    volumes:
      - name: tmp
        emptyDir:
          {{- with $root.Values.volumes.tmp.medium }}
          medium: {{ . }}
          {{- end }}
          sizeLimit: {{ $root.Values.volumes.tmp.sizeLimit }}
    {{- with $root.Values.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $root.Values.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $root.Values.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}

{{/*
Fails the render when a batch workload is enabled without the database Secret.
*/}}
{{- define "reviewserve.batchValidate" -}}
{{- if not .Values.batch.databaseSecret.name }}
{{- fail "batch.databaseSecret.name is required when batch.cronJob.enabled or batch.job.enabled: the name of an existing Secret holding the database URL" }}
{{- end }}
{{- end }}

{{/*
Labels of batch resources and pods. Deliberately not the selector labels: the Service, the
PodDisruptionBudget and the NetworkPolicy select the web pods only.
*/}}
{{- define "reviewserve.batchLabels" -}}
helm.sh/chart: {{ include "reviewserve.chart" . }}
app.kubernetes.io/name: {{ include "reviewserve.name" . }}-batch
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: reviewserve
app.kubernetes.io/component: batch
{{- end }}

{{/*
Name of the one-off Job: keyed on batch.job.runId, never on the release revision, so an unrelated
upgrade neither starts a new run nor deletes a running one.
*/}}
{{- define "reviewserve.batchJobName" -}}
{{- printf "%s-score-%s" (include "reviewserve.fullname" . | trunc 25 | trimSuffix "-") .Values.batch.job.runId | trunc 63 | trimSuffix "-" }}
{{- end }}
