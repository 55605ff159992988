{{/*
Names, labels, images, security contexts and connection settings shared by the templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "driftpilot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name: fullnameOverride, or <release>-<name> (just <release> when it contains the name). */}}
{{- define "driftpilot.fullname" -}}
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

{{/* A component's resource name: driftpilot.componentName (dict "ctx" . "component" "mlflow"). */}}
{{- define "driftpilot.componentName" -}}
{{- printf "%s-%s" (include "driftpilot.fullname" .ctx | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{/* chart-version for the helm.sh/chart label. */}}
{{- define "driftpilot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every resource carries. */}}
{{- define "driftpilot.labels" -}}
helm.sh/chart: {{ include "driftpilot.chart" . }}
{{ include "driftpilot.instanceLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: driftpilot
{{- end }}

{{/* Labels that select every pod of the release (the default-deny NetworkPolicy's selector). */}}
{{- define "driftpilot.instanceLabels" -}}
app.kubernetes.io/name: {{ include "driftpilot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels that select one component's pods: driftpilot.selectorLabels (dict "ctx" . "component" "mlflow"). */}}
{{- define "driftpilot.selectorLabels" -}}
{{ include "driftpilot.instanceLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* A component's labels: the common ones plus its component label. */}}
{{- define "driftpilot.componentLabels" -}}
{{ include "driftpilot.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The components image, tagged with the appVersion unless a tag is given. */}}
{{- define "driftpilot.componentsImage" -}}
{{- printf "%s/%s:%s" .Values.image.registry .Values.image.components.repository (default .Chart.AppVersion .Values.image.components.tag) }}
{{- end }}

{{/* The serving image, tagged with the appVersion unless a tag is given. */}}
{{- define "driftpilot.servingImage" -}}
{{- printf "%s/%s:%s" .Values.image.registry .Values.image.serving.repository (default .Chart.AppVersion .Values.image.serving.tag) }}
{{- end }}

{{/*
The start of every pod spec: its service account (never an API token unless a template mounts
one on purpose), image pull secrets and the pod securityContext.
driftpilot.podSpecHead (dict "ctx" . "serviceAccount" name "security" (dict runAsUser runAsGroup fsGroup))
*/}}
{{- define "driftpilot.podSpecHead" -}}
serviceAccountName: {{ .serviceAccount }}
automountServiceAccountToken: false
{{- with .ctx.Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
securityContext:
  {{- include "driftpilot.podSecurityContext" .security | nindent 2 }}
{{- end }}

{{/* A pod's securityContext: driftpilot.podSecurityContext (dict with runAsUser, runAsGroup, fsGroup). */}}
{{- define "driftpilot.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
fsGroup: {{ .fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* A container's securityContext: driftpilot.containerSecurityContext (dict with runAsUser, runAsGroup). */}}
{{- define "driftpilot.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The writable /tmp every container gets under a read-only root filesystem: the volume. */}}
{{- define "driftpilot.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end }}

{{/* ... and its mount. */}}
{{- define "driftpilot.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
A generated credential, kept across upgrades: the value already in the Secret if there is one
(lookup reads the cluster; `helm template` sees none), else a new random one. Base64-encoded.
driftpilot.generatedValue (dict "ctx" . "secret" name "key" key "length" 32 ["namespace" ns])
(the Secret's namespace, the release's by default)
*/}}
{{- define "driftpilot.generatedValue" -}}
{{- $existing := lookup "v1" "Secret" (.namespace | default .ctx.Release.Namespace) .secret }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key }}
{{- else }}
{{- randAlphaNum (int .length) | b64enc }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- PostgreSQL */}}

{{/* Host of PostgreSQL: the release's Service or externalPostgresql.host. */}}
{{- define "driftpilot.postgresql.host" -}}
{{- if .Values.postgresql.enabled }}
{{- printf "%s.%s.svc" (include "driftpilot.componentName" (dict "ctx" . "component" "postgresql")) .Release.Namespace }}
{{- else }}
{{- required "externalPostgresql.host is required when postgresql.enabled is false" .Values.externalPostgresql.host }}
{{- end }}
{{- end }}

{{- define "driftpilot.postgresql.port" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.service.port }}{{ else }}{{ .Values.externalPostgresql.port }}{{ end }}
{{- end }}

{{- define "driftpilot.postgresql.username" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.auth.username }}{{ else }}{{ .Values.externalPostgresql.username }}{{ end }}
{{- end }}

{{/* The Secret holding the PostgreSQL password. */}}
{{- define "driftpilot.postgresql.secretName" -}}
{{- if .Values.postgresql.enabled }}
{{- default (include "driftpilot.componentName" (dict "ctx" . "component" "postgresql")) .Values.postgresql.auth.existingSecret }}
{{- else }}
{{- required "externalPostgresql.existingSecret is required when postgresql.enabled is false" .Values.externalPostgresql.existingSecret }}
{{- end }}
{{- end }}

{{- define "driftpilot.postgresql.passwordKey" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.auth.passwordKey }}{{ else }}{{ .Values.externalPostgresql.passwordKey }}{{ end }}
{{- end }}

{{/*
A database URL without the password: libpq reads it from PGPASSWORD, which comes from the
Secret, so no URL, argument or ConfigMap ever holds it. driftpilot.postgresql.url (dict "ctx" . "database" "mlflow")
*/}}
{{- define "driftpilot.postgresql.url" -}}
{{- $ctx := .ctx }}
{{- $url := printf "postgresql://%s@%s:%s/%s" (include "driftpilot.postgresql.username" $ctx) (include "driftpilot.postgresql.host" $ctx) (include "driftpilot.postgresql.port" $ctx) .database }}
{{- if not $ctx.Values.postgresql.enabled }}
{{- $url = printf "%s?sslmode=%s" $url $ctx.Values.externalPostgresql.sslMode }}
{{- end }}
{{- $url }}
{{- end }}

{{/* PGPASSWORD from the Secret (an env list item). */}}
{{- define "driftpilot.postgresql.passwordEnv" -}}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "driftpilot.postgresql.secretName" . }}
      key: {{ include "driftpilot.postgresql.passwordKey" . }}
{{- end }}

{{/* ---------------------------------------------------------------- S3 */}}

{{/* The S3 endpoint URL: the release's MinIO or externalS3.endpoint ('' for AWS). */}}
{{- define "driftpilot.s3.endpoint" -}}
{{- if .Values.minio.enabled }}
{{- printf "http://%s.%s.svc:%v" (include "driftpilot.componentName" (dict "ctx" . "component" "minio")) .Release.Namespace .Values.minio.service.port }}
{{- else }}
{{- .Values.externalS3.endpoint }}
{{- end }}
{{- end }}

{{- define "driftpilot.s3.region" -}}
{{- if .Values.minio.enabled }}us-east-1{{ else }}{{ .Values.externalS3.region }}{{ end }}
{{- end }}

{{/* The Secret holding the S3 key pair. */}}
{{- define "driftpilot.s3.secretName" -}}
{{- if .Values.minio.enabled }}
{{- default (include "driftpilot.componentName" (dict "ctx" . "component" "minio")) .Values.minio.auth.existingSecret }}
{{- else }}
{{- required "externalS3.existingSecret is required when minio.enabled is false" .Values.externalS3.existingSecret }}
{{- end }}
{{- end }}

{{- define "driftpilot.s3.accessKeyIdKey" -}}
{{- if .Values.minio.enabled }}{{ .Values.minio.auth.rootUserKey }}{{ else }}{{ .Values.externalS3.accessKeyIdKey }}{{ end }}
{{- end }}

{{- define "driftpilot.s3.secretAccessKeyKey" -}}
{{- if .Values.minio.enabled }}{{ .Values.minio.auth.rootPasswordKey }}{{ else }}{{ .Values.externalS3.secretAccessKeyKey }}{{ end }}
{{- end }}

{{/* The S3 environment of a container: endpoint and region as values, the key pair from the Secret. */}}
{{- define "driftpilot.s3.env" -}}
{{- $endpoint := include "driftpilot.s3.endpoint" . }}
{{- if $endpoint }}
- name: DRIFTPILOT_S3_ENDPOINT
  value: {{ $endpoint | quote }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ $endpoint | quote }}
{{- end }}
- name: AWS_REGION
  value: {{ include "driftpilot.s3.region" . | quote }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "driftpilot.s3.secretName" . }}
      key: {{ include "driftpilot.s3.accessKeyIdKey" . }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "driftpilot.s3.secretName" . }}
      key: {{ include "driftpilot.s3.secretAccessKeyKey" . }}
{{- end }}

{{/* The bucket of an s3:// URI. */}}
{{- define "driftpilot.s3.bucket" -}}
{{- regexReplaceAll "^s3://([^/]+).*$" . "${1}" }}
{{- end }}

{{/* ---------------------------------------------------------------- MLflow, pipelines */}}

{{/* The MLflow tracking URI pipeline pods and the model server use. */}}
{{- define "driftpilot.mlflow.trackingUri" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s.%s.svc:%v" (include "driftpilot.componentName" (dict "ctx" . "component" "mlflow")) .Release.Namespace .Values.mlflow.service.port }}
{{- else }}
{{- required "externalMlflow.trackingUri is required when mlflow.enabled is false" .Values.externalMlflow.trackingUri }}
{{- end }}
{{- end }}

{{/* The namespace pipeline pods run in. */}}
{{- define "driftpilot.pipeline.namespace" -}}
{{- default .Release.Namespace .Values.pipeline.namespace }}
{{- end }}

{{/* The namespace of the KServe predictors that log to the monitor and load models from MLflow. */}}
{{- define "driftpilot.kserve.namespace" -}}
{{- default .Release.Namespace .Values.monitor.kserveNamespace }}
{{- end }}

{{/* The drift-response pipeline's parameters (camelCase values to the pipeline's snake_case names). */}}
{{/* The safety policy file (components/decide/safety.py): safetyPolicy values with snake_case keys. */}}
{{- define "driftpilot.safetyPolicy" -}}
{{- range $key, $value := .Values.safetyPolicy }}
{{ $key | snakecase }}: {{ toJson $value }}
{{- end }}
{{- end }}

{{- define "driftpilot.pipeline.parameters" -}}
{{- $studies := include "driftpilot.postgresql.url" (dict "ctx" . "database" .Values.optuna.database) }}
{{- $defaults := dict "lakeDir" .Values.lake.uri "trackingUri" (include "driftpilot.mlflow.trackingUri" .) "artifactRoot" "" "servingDir" "/tmp/driftpilot-serving" "studyStorage" $studies }}
{{- /* Releases go to the InferenceService named after the model, in the predictors' namespace. */}}
{{- $logger := "" }}
{{- if .Values.monitor.enabled }}
{{- $logger = printf "http://%s.%s.svc:%v/" (include "driftpilot.componentName" (dict "ctx" . "component" "monitor")) .Release.Namespace .Values.monitor.service.port }}
{{- end }}
{{- $_ := merge $defaults (dict "servingTarget" "kserve" "servingNamespace" (include "driftpilot.kserve.namespace" .) "servingImage" (include "driftpilot.servingImage" .) "servingLoggerUrl" $logger) }}
{{- /* The recurring run decides under the same safety policy the ConfigMap ships. */}}
{{- $_ := merge $defaults (dict "safetyPolicy" (include "driftpilot.safetyPolicy" .) "stateDir" .Values.decisions.mountPath) }}
{{- $params := merge (deepCopy .Values.kfpDeploy.parameters) $defaults }}
{{- range $name := keys $params | sortAlpha }}
{{- $value := index $params $name }}
- --param
- {{ printf "%s=%v" ($name | snakecase) (ternary (toJson $value) $value (kindIs "slice" $value)) | quote }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- NetworkPolicy peers */}}

{{/* Pods of one of the release's components: driftpilot.peer.component (dict "ctx" . "component" "mlflow"). */}}
{{- define "driftpilot.peer.component" -}}
- podSelector:
    matchLabels:
      {{- include "driftpilot.selectorLabels" . | nindent 6 }}
{{- end }}

{{/* Pipeline pods: pods with pipeline.podLabels in the pipeline namespace. */}}
{{- define "driftpilot.peer.pipelinePods" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ include "driftpilot.pipeline.namespace" . }}
  podSelector:
    matchLabels:
      {{- toYaml .Values.pipeline.podLabels | nindent 6 }}
{{- end }}

{{/* The Dask scheduler and workers a pipeline step starts (they read and write the lake). */}}
{{- define "driftpilot.peer.daskPods" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ include "driftpilot.pipeline.namespace" . }}
  podSelector:
    matchExpressions:
      - key: dask.org/cluster-name
        operator: Exists
{{- end }}

{{/* KServe predictor pods (their logger posts to the monitor, their storage initializer reads MLflow). */}}
{{- define "driftpilot.peer.kservePredictors" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ include "driftpilot.kserve.namespace" . }}
  podSelector:
    matchExpressions:
      - key: serving.kserve.io/inferenceservice
        operator: Exists
{{- end }}

{{/* Every pod of a namespace: driftpilot.peer.namespace "monitoring". */}}
{{- define "driftpilot.peer.namespace" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . }}
{{- end }}

{{/*
Check kfpDeploy.schedule field by field (the schema checks its shape), so a value out of range
fails `helm install` with a message naming the field instead of failing the Job later.
*/}}
{{- define "driftpilot.validateSchedule" -}}
{{- $cron := .Values.kfpDeploy.schedule }}
{{- if not (hasPrefix "@" $cron) }}
{{- $fields := splitList " " $cron }}
{{- if eq (len $fields) 5 }}
{{- $fields = prepend $fields "0" }}
{{- end }}
{{- $names := "(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)" }}
{{- $days := "(?i:sun|mon|tue|wed|thu|fri|sat)" }}
{{- $specs := list (list "second" "0-59" "[0-5]?[0-9]") (list "minute" "0-59" "[0-5]?[0-9]") (list "hour" "0-23" "(1?[0-9]|2[0-3])") (list "day-of-month" "1-31" "(0?[1-9]|[12][0-9]|3[01])") (list "month" "1-12 or JAN-DEC" (printf "(0?[1-9]|1[0-2]|%s)" $names)) (list "day-of-week" "0-6 or SUN-SAT" (printf "([0-6]|%s)" $days)) }}
{{- range $i, $spec := $specs }}
{{- $value := index $spec 2 }}
{{- $item := printf "(\\*|\\?|%s(-%s)?)(/[1-9][0-9]*)?" $value $value }}
{{- $field := index $fields $i }}
{{- if not (regexMatch (printf "^%s(,%s)*$" $item $item) $field) }}
{{- fail (printf "kfpDeploy.schedule %q: the %s field %q is not a list of values %s, ranges and steps" $cron (index $spec 0) $field (index $spec 1)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Where pipeline pods take their environment from, as JSON (names only, never a value): the
settings ConfigMap, its keys, and Secret name -> {key: variable}. The kfp-deploy Job gives every
step these; the ConfigMap hands the same to the pods a step starts (Dask workers).
*/}}
{{- define "driftpilot.podEnv" -}}
{{- $secrets := dict (include "driftpilot.s3.secretName" .) (dict (include "driftpilot.s3.accessKeyIdKey" .) "AWS_ACCESS_KEY_ID" (include "driftpilot.s3.secretAccessKeyKey" .) "AWS_SECRET_ACCESS_KEY") }}
{{- if .Values.optuna.enabled }}
{{- $_ := set $secrets (include "driftpilot.postgresql.secretName" .) (dict (include "driftpilot.postgresql.passwordKey" .) "PGPASSWORD") }}
{{- end }}
{{- $keys := list "DRIFTPILOT_LAKE" "DRIFTPILOT_TRACKING_URI" "DRIFTPILOT_S3_ENDPOINT" "AWS_REGION" "DRIFTPILOT_SERVING_IMAGE" "DRIFTPILOT_OPTUNA_STORAGE" }}
{{- dict "configMap" (include "driftpilot.componentName" (dict "ctx" . "component" "pipeline-env")) "configMapKeys" $keys "secrets" $secrets | toJson }}
{{- end }}
