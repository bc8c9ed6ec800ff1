{{/*
Names, labels and shared pod pieces. Every template builds its names and labels here,
so a component is always `<fullname>-<component>` and carries the app.kubernetes.io set.
*/}}

{{/* lathe.name: the chart name, or nameOverride. */}}
{{- define "lathe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* lathe.fullname: the prefix of every resource; the release name, plus "-lathe" unless it already says so. */}}
{{- define "lathe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "lathe.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* lathe.chart: chart name and version, for the helm.sh/chart label. */}}
{{- define "lathe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* lathe.componentName: `<fullname>-<component>`; call with (dict "root" $ "component" "gateway"). */}}
{{- define "lathe.componentName" -}}
{{- printf "%s-%s" (include "lathe.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* lathe.selectorLabels: the labels a component's selectors match (stable across upgrades). */}}
{{- define "lathe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lathe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* lathe.labels: every label of a component's objects: selector labels plus version, chart and commonLabels. */}}
{{- define "lathe.labels" -}}
{{ include "lathe.selectorLabels" . }}
app.kubernetes.io/part-of: lathe
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "lathe.chart" .root }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* lathe.jobLabel: the Prometheus job name of a component's Service (ServiceMonitors use it as jobLabel), so rules and dashboards do not depend on the release name. */}}
{{- define "lathe.jobLabel" -}}
lathe.dev/job: lathe-{{ .component }}
{{- end -}}

{{/* lathe.image: "repository:tag" of an image block, "repository:tag@digest" when it sets a digest; refuses an empty or `latest` tag. */}}
{{- define "lathe.image" -}}
{{- if or (not .tag) (eq (toString .tag) "latest") -}}
{{- fail (printf "image %s: pin a tag (got %q); `latest` is not allowed" .repository (toString .tag)) -}}
{{- end -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- with .digest }}@{{ . }}{{ end -}}
{{- end -}}

{{/* lathe.podSecurityContext: non-root pod defaults; call with (dict "root" $ "user" UID). */}}
{{- define "lathe.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .user }}
runAsGroup: {{ .user }}
fsGroup: {{ default .user .group }}
seccompProfile:
  type: {{ .root.Values.security.seccompProfile }}
{{- end -}}

{{/* lathe.containerSecurityContext: no privilege escalation, every capability dropped, read-only root. */}}
{{- define "lathe.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* lathe.imagePullSecrets: the pod's imagePullSecrets, when any. */}}
{{- define "lathe.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* In-cluster URLs of the components, built from their Service names. */}}
{{- define "lathe.mlflowUrl" -}}
http://{{ include "lathe.componentName" (dict "root" . "component" "mlflow") }}:{{ .Values.mlflow.port }}
{{- end -}}

{{- define "lathe.gatewayUrl" -}}
http://{{ include "lathe.componentName" (dict "root" . "component" "gateway") }}:{{ .Values.gateway.port }}
{{- end -}}

{{- define "lathe.ragUrl" -}}
http://{{ include "lathe.componentName" (dict "root" . "component" "rag") }}:{{ .Values.rag.port }}
{{- end -}}

{{- define "lathe.qdrantUrl" -}}
{{- if .Values.qdrant.enabled -}}
http://{{ include "lathe.componentName" (dict "root" . "component" "qdrant") }}:6333
{{- else -}}
{{- required "qdrant.externalUrl is required when qdrant.enabled is false" .Values.qdrant.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* lathe.modelServiceName: the Service of one served model; call with (dict "root" $ "model" $model). */}}
{{- define "lathe.modelServiceName" -}}
{{- include "lathe.componentName" (dict "root" .root "component" (printf "inference-%s" .model.id)) -}}
{{- end -}}

{{/* lathe.postgresPasswordEnv: POSTGRES_PASSWORD from the bundled database's existing Secret. */}}
{{- define "lathe.postgresPasswordEnv" -}}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgresql.existingSecret }}
      key: {{ .Values.postgresql.passwordKey }}
{{- end -}}

{{/* lathe.postgresHost: the bundled database's Service. */}}
{{- define "lathe.postgresHost" -}}
{{ include "lathe.componentName" (dict "root" . "component" "postgresql") }}:5432
{{- end -}}

{{/* lathe.tmpVolume: an emptyDir for a read-only root filesystem's scratch space. */}}
{{- define "lathe.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ default "1Gi" .size }}
{{- end -}}

{{/* lathe.netpolDns: the egress every pod needs, DNS to kube-system. */}}
{{- define "lathe.netpolDns" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}

{{/* lathe.netpolMonitoring: ingress from Prometheus to a metrics port; call with (dict "root" $ "port" N). */}}
{{- define "lathe.netpolMonitoring" -}}
- from:
    - namespaceSelector:
        matchLabels:
          {{- toYaml .root.Values.networkPolicy.monitoringNamespaceSelector | nindent 10 }}
  ports:
    - {protocol: TCP, port: {{ .port }}}
{{- end -}}

{{/* lathe.netpolPeer: a peer that is one component of this release; call with (dict "root" $ "component" "gateway"). */}}
{{- define "lathe.netpolPeer" -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/instance: {{ .root.Release.Name }}
      app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
GPU requests need a GPU pool to land on: inference.gpuNodeSelector or inference.gpuTolerations must say where it is.
Call with (dict "root" $ "what" "model X"); renders nothing or fails the install with one line.
*/}}
{{- define "lathe.requireGpuPool" -}}
{{- $inf := .root.Values.inference -}}
{{- if and (empty $inf.gpuNodeSelector) (empty $inf.gpuTolerations) -}}
{{- fail (printf "%s requests GPUs but no GPU pool is declared: set inference.gpuNodeSelector (e.g. lathe.dev/node-pool: gpu, or nvidia.com/gpu.present: \"true\") and inference.gpuTolerations to the GPU nodes' labels and taint, or set gpus: 0" .what) -}}
{{- end -}}
{{- end -}}

{{/* lathe.modelCacheClaim: the claim of the shared model cache (existing, or the one the chart creates); empty: none. */}}
{{- define "lathe.modelCacheClaim" -}}
{{- $cache := .Values.inference.modelCache -}}
{{- if $cache.existingClaim -}}
{{ $cache.existingClaim }}
{{- else if $cache.create -}}
{{ include "lathe.componentName" (dict "root" . "component" "model-cache") }}
{{- end -}}
{{- end }}
