{{/*
What the pipeline driver and its stages read on every Ray pod, and the traffic that follows from it.
The names match pipelines/stagekit/settings.py (LATHE_RAY_AUTOSCALING), lathe/settings.py
(LATHE_GATEWAY_URL) and the evaluation recipe's api_key_env (LATHE_API_KEY, and the
variables ray.pipelines.providerKeys names for outside judges).
*/}}

{{/* lathe.rayMaxGpus: the most GPUs the cluster can ever have (autoscaling maxima, else replicas). */}}
{{- define "lathe.rayMaxGpus" -}}
{{- $ray := .Values.ray -}}
{{- $total := 0 -}}
{{- range $group := list $ray.cpuWorkers $ray.gpuWorkers -}}
{{- if $group.enabled -}}
{{- $count := ternary $group.maxReplicas $group.replicas $ray.autoscaling -}}
{{- $total = add $total (mul (int $count) (int (default 0 $group.gpus))) -}}
{{- end -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* lathe.pipelineStorage: the storage URI of stage outputs and checkpoints; empty when there is none. */}}
{{- define "lathe.pipelineStorage" -}}
{{- if .Values.ray.pipelines.storage -}}
{{- .Values.ray.pipelines.storage -}}
{{- else if .Values.ray.sharedStorageClaim -}}
/app/.lathe/pipelines
{{- end -}}
{{- end -}}

{{/* lathe.pipelineUsesObjectStore: "true" when stages reach object storage (a storage URI or S3 settings). */}}
{{- define "lathe.pipelineUsesObjectStore" -}}
{{- $p := .Values.ray.pipelines -}}
{{- if or $p.storage $p.s3.existingSecret $p.s3.endpointUrl -}}true{{- end -}}
{{- end -}}

{{/* lathe.urlPort: the port of an http(s) URL, explicit or by scheme; call with the URL. */}}
{{- define "lathe.urlPort" -}}
{{- $url := urlParse . -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" -}}
{{- if $port }}{{ $port }}{{ else if eq $url.scheme "https" }}443{{ else }}80{{ end -}}
{{- end -}}

{{/* lathe.redisPort: the port of ray.gcsFaultTolerance.redisAddress ([redis[s]://]host[:port]). */}}
{{- define "lathe.redisPort" -}}
{{- $port := regexFind ":[0-9]+$" .Values.ray.gcsFaultTolerance.redisAddress | trimPrefix ":" -}}
{{- default "6379" $port -}}
{{- end -}}

{{/* lathe.rayPipelineEnv: the pipeline variables of a Ray container (head and workers alike). */}}
{{- define "lathe.rayPipelineEnv" -}}
{{- $p := .Values.ray.pipelines -}}
- {name: LATHE_RAY_MAX_GPUS, value: {{ include "lathe.rayMaxGpus" . | quote }}}
{{- if .Values.ray.autoscaling }}
- {name: LATHE_RAY_AUTOSCALING, value: "1"}
{{- end }}
{{- with include "lathe.pipelineStorage" . }}
- {name: LATHE_PIPELINE_STORAGE, value: {{ . | quote }}}
{{- end }}
{{- with $p.s3.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $p.s3.accessKeyIdKey }}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $p.s3.secretAccessKeyKey }}}
{{- end }}
{{- with $p.s3.endpointUrl }}
- {name: AWS_ENDPOINT_URL, value: {{ . | quote }}}
{{- end }}
{{- with $p.s3.region }}
- {name: AWS_DEFAULT_REGION, value: {{ . | quote }}}
- {name: AWS_REGION, value: {{ . | quote }}}
{{- end }}
{{- with $p.gatewayApiKey.existingSecret }}
{{- if not $.Values.gateway.enabled }}
{{- fail "ray.pipelines.gatewayApiKey.existingSecret is set but gateway.enabled is false: the evaluation stage scores through this release's gateway" }}
{{- end }}
- {name: LATHE_GATEWAY_URL, value: {{ include "lathe.gatewayUrl" $ | quote }}}
- name: LATHE_API_KEY
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $p.gatewayApiKey.key }}}
{{- end }}
{{- $taken := list "LATHE_RAY_MAX_GPUS" "LATHE_RAY_AUTOSCALING" "LATHE_PIPELINE_STORAGE" "LATHE_GATEWAY_URL" "LATHE_API_KEY" "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "AWS_ENDPOINT_URL" "AWS_DEFAULT_REGION" "AWS_REGION" }}
{{- range $i, $provider := $p.providerKeys }}
{{- if has $provider.env $taken }}
{{- fail (printf "ray.pipelines.providerKeys[%d].env: %s is set by the chart itself or by an earlier entry; give the provider's key a variable of its own (the recipe's judge.endpoint.api_key_env names it)" $i $provider.env) }}
{{- end }}
{{- $taken = append $taken $provider.env }}
- name: {{ $provider.env }}
  valueFrom:
    secretKeyRef: {name: {{ $provider.existingSecret }}, key: {{ default "api-key" $provider.key }}}
{{- end }}
{{- end -}}

{{/* lathe.rayGcsFaultTolerance: spec.gcsFaultToleranceOptions of the RayCluster (KubeRay >= 1.3). */}}
{{- define "lathe.rayGcsFaultTolerance" -}}
{{- $ft := .Values.ray.gcsFaultTolerance -}}
{{- if $ft.enabled }}
{{- if not $ft.redisAddress }}
{{- fail "ray.gcsFaultTolerance.enabled needs ray.gcsFaultTolerance.redisAddress: the host:port of a highly available Redis outside the Ray cluster" }}
{{- end }}
gcsFaultToleranceOptions:
  redisAddress: {{ $ft.redisAddress | quote }}
  {{- with $ft.redisPassword.existingSecret }}
  redisPassword:
    valueFrom:
      secretKeyRef: {name: {{ . }}, key: {{ $ft.redisPassword.key }}}
  {{- end }}
  {{- with $ft.externalStorageNamespace }}
  externalStorageNamespace: {{ . | quote }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
lathe.netpolOutside: peers for a service that may run in the cluster (any namespace) or outside it
(networkPolicy.externalEgressCidrs): S3-compatible endpoints and Redis.
*/}}
{{- define "lathe.netpolOutside" -}}
- namespaceSelector: {}
{{- range .Values.networkPolicy.externalEgressCidrs }}
- ipBlock: {cidr: {{ . | quote }}}
{{- end }}
{{- end -}}

{{/* lathe.rayPipelineEgress: the Ray pods' egress rules for pipeline storage, the gateway and GCS Redis. */}}
{{- define "lathe.rayPipelineEgress" -}}
{{- $p := .Values.ray.pipelines -}}
{{- with $p.s3.endpointUrl }}
# The S3-compatible store, in the cluster or outside it.
- to:
    {{- include "lathe.netpolOutside" $ | nindent 4 }}
  ports:
    - {protocol: TCP, port: {{ include "lathe.urlPort" . | int }}}
{{- end }}
{{- if $p.gatewayApiKey.existingSecret }}
# The evaluation stage scores through the gateway.
- to:
    {{- include "lathe.netpolPeer" (dict "root" $ "component" "gateway") | nindent 4 }}
  ports:
    - {protocol: TCP, port: {{ .Values.gateway.port }}}
{{- end }}
{{- if .Values.ray.gcsFaultTolerance.enabled }}
# GCS fault tolerance: the head, and KubeRay's Redis cleanup Job (built from the head's pod template), reach Redis.
- to:
    {{- include "lathe.netpolOutside" $ | nindent 4 }}
  ports:
    - {protocol: TCP, port: {{ include "lathe.redisPort" . | int }}}
{{- end }}
{{- end -}}
