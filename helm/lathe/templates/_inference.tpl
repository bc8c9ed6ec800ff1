{{/*
The vLLM servers of one model, stable and canary rendered from one source.

A model's stable servers follow `models[].alias` (resolved at pod start, or `models[].version`
when pinned). With `models[].canary.version` set, a second Deployment and Service named like the
stable ones plus `-canary` serve exactly that version beside them; the gateway discovers both
and a rollout moves traffic between them by version. The canary's pods carry the model id plus
`-canary` in `lathe.dev/model-id`, so the stable selectors (immutable on a Deployment) never
match them, and `lathe.dev/track: canary`. Every object carries `lathe.dev/model-version`: the
pinned version, or `auto` for a stable that follows the alias (the gateway then takes the version
from a backend's /health when it reports one; vLLM's does not).
*/}}

{{/*
lathe.inferenceTrack: the names and labels that tell a model's stable servers from its canary,
as YAML for fromYaml; call with (dict "root" $ "model" $model "canary" false|true).
*/}}
{{- define "lathe.inferenceTrack" -}}
{{- $stable := include "lathe.modelServiceName" (dict "root" .root "model" .model) -}}
{{- if .canary -}}
{{- $canary := .model.canary | default dict -}}
name: {{ printf "%s-canary" ($stable | trunc 56 | trimSuffix "-") }}
id: {{ printf "%s-canary" .model.id }}
version: {{ $canary.version | toString | quote }}
label: {{ $canary.version | toString | quote }}
replicas: {{ $canary.replicas | default 1 }}
canary: true
{{- else -}}
name: {{ $stable }}
id: {{ .model.id }}
version: {{ .model.version | default "" | toString | quote }}
label: {{ .model.version | default "auto" | toString | quote }}
replicas: {{ .model.replicas }}
canary: false
{{- end -}}
{{- end -}}

{{/* lathe.inferenceCanaryVersion: the model's canary version, or empty when it has none; call with the model. */}}
{{- define "lathe.inferenceCanaryVersion" -}}
{{- with .canary }}{{ .version | default "" | toString }}{{ end -}}
{{- end -}}

{{/* lathe.inferenceLabels: the labels of one track's objects and pods; call with (dict "root" $ "track" $t). */}}
{{- define "lathe.inferenceLabels" -}}
{{ include "lathe.labels" (dict "root" .root "component" "inference") }}
lathe.dev/model-id: {{ .track.id }}
lathe.dev/model-version: {{ .track.label | quote }}
{{- if .track.canary }}
lathe.dev/track: canary
{{- end }}
{{- end -}}

{{/* lathe.inferenceSelector: what the track's Deployment, Service, PDB and spread select (stable across upgrades). */}}
{{- define "lathe.inferenceSelector" -}}
{{ include "lathe.selectorLabels" (dict "root" .root "component" "inference") }}
lathe.dev/model-id: {{ .track.id }}
{{- end -}}

{{/*
lathe.inferenceDeployment: the vLLM Deployment of one track; call with (dict "root" $ "model" $model "track" $t).
The stable follows inference.autoscaling; the canary runs canary.replicas and no autoscaler (its
share of traffic is the rollout's to set, so queue-based scaling would chase the rollout's steps).
Only the stable registers a first version from models[].source: a canary's version is registered already.
*/}}
{{- define "lathe.inferenceDeployment" -}}
{{- $root := .root }}
{{- $inf := .root.Values.inference }}
{{- $model := .model }}
{{- $t := .track }}
{{- $ctx := dict "root" .root "component" "inference" }}
{{- $args := dict "root" .root "track" $t }}
# vLLM serving {{ if $t.canary }}{{ $model.name }} version {{ $t.version }}, the candidate of a rollout{{ else }}{{ $model.name }}@{{ $model.alias }}{{ end }}. The pod template
# carries a checksum of what it serves: when the version moves, the pods roll.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $t.name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "lathe.inferenceLabels" $args | nindent 4 }}
spec:
  {{- if or $t.canary (not $inf.autoscaling.enabled) }}
  replicas: {{ $t.replicas }}
  {{- end }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # A new server must be healthy before an old one goes; with maxSurge 0 no spare GPU is needed
      # and one replica is replaced at a time instead.
      maxSurge: {{ $inf.maxSurge }}
      maxUnavailable: {{ if eq (int $inf.maxSurge) 0 }}1{{ else }}0{{ end }}
  selector:
    matchLabels:
      {{- include "lathe.inferenceSelector" $args | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "lathe.inferenceLabels" $args | nindent 8 }}
      annotations:
        lathe.dev/model: {{ if $t.canary }}"{{ $model.name }}/{{ $t.version }}"{{ else }}"{{ $model.name }}@{{ $model.alias }}"{{ end }}
        {{- if $t.canary }}
        checksum/model: {{ printf "%s/%s" $model.name $t.version | sha256sum }}
        {{- else }}
        checksum/model: {{ printf "%s@%s=%s" $model.name $model.alias ($model.version | toString) | sha256sum }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "lathe.componentName" $ctx }}
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ $inf.terminationGracePeriodSeconds }}
      {{- include "lathe.imagePullSecrets" $root | nindent 6 }}
      securityContext:
        {{- include "lathe.podSecurityContext" (dict "root" $root "user" $inf.runAsUser) | nindent 8 }}
      initContainers:
        - name: lathe-model-fetch
          image: {{ include "lathe.image" $root.Values.image }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command:
            - python
            - -m
            - lathe.model_fetch
            - --name={{ $model.name }}
            - --alias={{ $model.alias }}
            {{- if $t.version }}
            - --version={{ $t.version }}
            {{- end }}
            - --dest=/models
            - --link=/served/model
            - --wait-for-alias
            - --wait-s={{ $inf.fetchWaitSeconds }}
            {{- if and $model.source (not $t.canary) }}
            - --source={{ $model.source }}
            {{- end }}
          env:
            - {name: LATHE_MLFLOW_TRACKING_URI, value: {{ include "lathe.mlflowUrl" $root | quote }}}
            {{- if $t.version }}
            # The pinned version, as the inference service reads it (model_fetch's --version default).
            - {name: LATHE_INFERENCE_VERSION, value: {{ $t.version | quote }}}
            {{- end }}
            {{- if and $model.source (not $t.canary) $inf.huggingFaceToken.existingSecret }}
            - name: HF_TOKEN
              valueFrom:
                secretKeyRef: {name: {{ $inf.huggingFaceToken.existingSecret }}, key: {{ $inf.huggingFaceToken.key }}}
            {{- end }}
            - {name: HOME, value: /tmp}
          resources:
            {{- toYaml $inf.fetchResources | nindent 12 }}
          securityContext:
            {{- include "lathe.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - {name: models, mountPath: /models}
            - {name: served, mountPath: /served}
            - {name: tmp, mountPath: /tmp}
        {{- /* One fetch per LoRA adapter, after the model's: --adapter-of refuses, in one line, an adapter
        whose base is not the version /served/model links to. A canary serves another version of the
        base, which the adapters were not trained on: it serves none, and the gateway sends adapter
        requests to the stable servers only. */}}
        {{- range $i, $adapter := (ternary list ($model.adapters | default list) (not (not $t.canary))) }}
        - name: lathe-fetch-adapter-{{ $i }}
          image: {{ include "lathe.image" $root.Values.image }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command:
            - python
            - -m
            - lathe.model_fetch
            - --name={{ $adapter.name }}
            - --alias={{ $adapter.alias | default $model.alias }}
            {{- with $adapter.version | default "" | toString }}
            - --version={{ . }}
            {{- end }}
            - --dest=/models
            - --link=/served/adapters/{{ $adapter.name }}
            - --adapter-of=/served/model
            - --wait-for-alias
            - --wait-s={{ $inf.fetchWaitSeconds }}
          env:
            # Without the model's LATHE_INFERENCE_VERSION: model_fetch would take it as the adapter's --version.
            - {name: LATHE_MLFLOW_TRACKING_URI, value: {{ include "lathe.mlflowUrl" $root | quote }}}
            - {name: HOME, value: /tmp}
          resources:
            {{- toYaml $inf.fetchResources | nindent 12 }}
          securityContext:
            {{- include "lathe.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - {name: models, mountPath: /models}
            - {name: served, mountPath: /served}
            - {name: tmp, mountPath: /tmp}
        {{- end }}
      containers:
        - name: lathe-vllm
          image: {{ include "lathe.image" $inf.image }}
          imagePullPolicy: {{ $inf.image.pullPolicy }}
          command: ["python3", "-m", "vllm.entrypoints.openai.api_server"]
          args:
            - --model=/served/model
            - --served-model-name={{ $model.name }}
            - --host=0.0.0.0
            - --port={{ $inf.port }}
            - --max-model-len={{ $model.maxModelLen }}
            {{- if gt (int $model.gpus) 0 }}
            - --tensor-parallel-size={{ $model.gpus }}
            - --gpu-memory-utilization={{ $model.gpuMemoryUtilization }}
            {{- end }}
            {{- if and $root.Values.tracing.enabled $root.Values.tracing.otlpEndpoint }}
            # vLLM continues the gateway's traceparent and exports its own spans.
            - --otlp-traces-endpoint={{ $root.Values.tracing.otlpEndpoint }}
            {{- end }}
            {{- include "lathe.vllmKnobArgs" (dict "model" $model) | nindent 12 }}
            {{- with include "lathe.vllmLoraArgs" (dict "model" (ternary (omit $model "adapters") $model (not (not $t.canary)))) }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- range $model.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          ports:
            - {name: http, containerPort: {{ $inf.port }}, protocol: TCP}
          lifecycle:
            # Keep serving while the endpoint leaves the Service, then SIGTERM lets vLLM finish its streams.
            preStop:
              exec:
                command: ["sleep", "{{ $inf.preStopSeconds }}"]
          env:
            # Every cache vLLM, Triton and torch write goes to an emptyDir: the root filesystem is read-only.
            - {name: HOME, value: /cache}
            - {name: XDG_CACHE_HOME, value: /cache}
            - {name: VLLM_CACHE_ROOT, value: /cache/vllm}
            - {name: HF_HOME, value: /cache/huggingface}
            - {name: HF_HUB_OFFLINE, value: "1"}
            - {name: VLLM_NO_USAGE_STATS, value: "1"}
            - {name: DO_NOT_TRACK, value: "1"}
          startupProbe:
            # Loading weights and capturing CUDA graphs takes minutes on big models.
            httpGet: {path: /health, port: http}
            periodSeconds: 10
            failureThreshold: 90
          readinessProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 5
            failureThreshold: 3
          livenessProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 15
            failureThreshold: 4
          resources:
            requests:
              {{- toYaml $model.resources.requests | nindent 14 }}
              ephemeral-storage: {{ $model.ephemeralStorage | default "30Gi" }}
              {{- if gt (int $model.gpus) 0 }}
              nvidia.com/gpu: {{ $model.gpus }}
              {{- end }}
            limits:
              {{- toYaml $model.resources.limits | nindent 14 }}
              ephemeral-storage: {{ $model.ephemeralStorage | default "30Gi" }}
              {{- if gt (int $model.gpus) 0 }}
              nvidia.com/gpu: {{ $model.gpus }}
              {{- end }}
          securityContext:
            {{- include "lathe.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - {name: models, mountPath: /models, readOnly: true}
            - {name: served, mountPath: /served, readOnly: true}
            - {name: cache, mountPath: /cache}
            - {name: tmp, mountPath: /tmp}
            - {name: dshm, mountPath: /dev/shm}
      volumes:
        - name: models
          {{- with (include "lathe.modelCacheClaim" $root) }}
          # Shared by every vLLM pod: a version is downloaded once; restarts and new replicas load it from here.
          persistentVolumeClaim:
            claimName: {{ . }}
          {{- else }}
          emptyDir:
            sizeLimit: {{ $model.modelVolumeSize }}
          {{- end }}
        - name: served
          # The link to the version this pod serves (the cache holds several).
          emptyDir:
            sizeLimit: 1Mi
        - name: cache
          emptyDir:
            sizeLimit: {{ $inf.cacheVolumeSize }}
        {{- include "lathe.tmpVolume" dict | nindent 8 }}
        - name: dshm
          # NCCL and vLLM's workers share tensors through /dev/shm.
          emptyDir:
            medium: Memory
            sizeLimit: {{ $inf.shmSize }}
      {{- if gt (int $model.gpus) 0 }}
      {{- with $inf.gpuNodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $inf.gpuTolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- end }}
      {{- with $inf.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- if and $inf.runtimeClassName (gt (int $model.gpus) 0) }}
      runtimeClassName: {{ $inf.runtimeClassName }}
      {{- end }}
      {{- with $inf.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- range . }}
        - {{- toYaml . | nindent 10 }}
          labelSelector:
            matchLabels:
              {{- include "lathe.inferenceSelector" $args | nindent 14 }}
        {{- end }}
      {{- end }}
{{- end -}}

{{/* lathe.inferenceService: the Service of one track, which the gateway discovers through its EndpointSlices (they carry its labels). */}}
{{- define "lathe.inferenceService" -}}
{{- $args := dict "root" .root "track" .track }}
apiVersion: v1
kind: Service
metadata:
  name: {{ .track.name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "lathe.inferenceLabels" $args | nindent 4 }}
    lathe.dev/job: lathe-vllm
spec:
  type: ClusterIP
  selector:
    {{- include "lathe.inferenceSelector" $args | nindent 4 }}
  ports:
    - {name: http, port: {{ .root.Values.inference.port }}, targetPort: http, protocol: TCP}
{{- end -}}

{{/*
lathe.inferenceTracks: the tracks a model renders, as a YAML list for fromYamlArray: the stable
one, and the canary when models[].canary.version is set; call with (dict "root" $ "model" $model).
*/}}
{{- define "lathe.inferenceTracks" -}}
- {{- include "lathe.inferenceTrack" (dict "root" .root "model" .model "canary" false) | nindent 2 }}
{{- if include "lathe.inferenceCanaryVersion" .model }}
- {{- include "lathe.inferenceTrack" (dict "root" .root "model" .model "canary" true) | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
lathe.vllmKnobArgs: a model's scheduler, KV-cache and speculation settings as vLLM flags, one
`- --flag=value` line each; the same flags services/inference/engine.py (serving_knob_args) gives
vLLM outside Kubernetes. A key left out of a models[] entry takes the default values.yaml states.
Checks what vLLM would refuse later, naming the key. Call with (dict "model" $model).
*/}}
{{- define "lathe.vllmKnobArgs" -}}
{{- $m := .model }}
{{- $prefix := ternary $m.prefixCaching true (hasKey $m "prefixCaching") }}
{{- $chunked := ternary $m.chunkedPrefill true (hasKey $m "chunkedPrefill") }}
{{- $kv := $m.kvCacheDtype | default "auto" }}
{{- $seqs := int ($m.maxNumSeqs | default 0) }}
{{- $batched := int ($m.maxNumBatchedTokens | default 0) }}
{{- $spec := $m.speculative | default dict }}
{{- $method := $spec.method | default "off" }}
{{- $cpuKv := list "auto" "fp8" "fp8_e4m3" "fp8_e5m2" }}
{{- if and (eq (int $m.gpus) 0) (not (has $kv $cpuKv)) }}
{{- fail (printf "inference model %s: kvCacheDtype %s is not served on CPUs (gpus: 0); vLLM's CPU backend stores the KV cache as auto, fp8, fp8_e4m3 or fp8_e5m2" $m.id $kv) }}
{{- end }}
{{- if and $batched $seqs (lt $batched $seqs) }}
{{- fail (printf "inference model %s: maxNumBatchedTokens (%d) is below maxNumSeqs (%d)" $m.id $batched $seqs) }}
{{- end }}
{{- if and $batched (not $chunked) (lt $batched (int $m.maxModelLen)) }}
{{- fail (printf "inference model %s: maxNumBatchedTokens (%d) is below maxModelLen (%d); without chunkedPrefill a whole prompt must fit in one step" $m.id $batched (int $m.maxModelLen)) }}
{{- end }}
{{- if and (eq $method "draft") (not $spec.draftModel) }}
{{- fail (printf "inference model %s: speculative.method draft needs speculative.draftModel (a folder in the pod with the draft model, sharing the served model's tokenizer)" $m.id) }}
{{- end }}
- {{ ternary "--enable-prefix-caching" "--no-enable-prefix-caching" $prefix }}
- {{ ternary "--enable-chunked-prefill" "--no-enable-chunked-prefill" $chunked }}
- --kv-cache-dtype={{ $kv }}
{{- if $seqs }}
- --max-num-seqs={{ $seqs }}
{{- end }}
{{- if $batched }}
- --max-num-batched-tokens={{ $batched }}
{{- end }}
{{- if eq $method "ngram" }}
{{- $config := dict "method" "ngram" "num_speculative_tokens" (int ($spec.tokens | default 3)) "prompt_lookup_max" (int ($spec.ngramMax | default 4)) "prompt_lookup_min" (int ($spec.ngramMin | default 1)) }}
- {{ printf "--speculative-config=%s" (toJson $config) | quote }}
{{- else if eq $method "draft" }}
{{- $config := dict "method" "draft_model" "model" $spec.draftModel "num_speculative_tokens" (int ($spec.tokens | default 3)) }}
- {{ printf "--speculative-config=%s" (toJson $config) | quote }}
{{- end }}
{{- end -}}

{{/*
lathe.vllmLoraArgs: a model's LoRA adapters as vLLM flags, one `- --flag` line each, nothing when
models[].adapters is empty. Each adapter is served under its registered name from the link its
fetch init container leaves at /served/adapters/<name>. A key left out of a models[] entry takes
the default values.yaml states. Checks what vLLM would refuse later (vllm/config/lora.py and
vllm/engine/arg_utils.py), naming the key. Call with (dict "model" $model).
*/}}
{{- define "lathe.vllmLoraArgs" -}}
{{- $m := .model }}
{{- $lora := $m.lora | default dict }}
{{- $maxLoras := int ($lora.maxLoras | default 4) }}
{{- $rank := int ($lora.maxLoraRank | default 16) }}
{{- $cpuLoras := int ($lora.maxCpuLoras | default 0) }}
{{- $ranks := list 1 8 16 32 64 128 256 320 512 }}
{{- if not (has $rank $ranks) }}
{{- fail (printf "inference model %s: lora.maxLoraRank %d is not a rank vLLM serves: 1, 8, 16, 32, 64, 128, 256, 320 or 512" $m.id $rank) }}
{{- end }}
{{- if and $cpuLoras (lt $cpuLoras $maxLoras) }}
{{- fail (printf "inference model %s: lora.maxCpuLoras (%d) is below lora.maxLoras (%d); vLLM keeps at least one batch's adapters in memory (0: maxLoras)" $m.id $cpuLoras $maxLoras) }}
{{- end }}
{{- with $m.adapters }}
{{- $spec := $m.speculative | default dict }}
{{- $seqs := int ($m.maxNumSeqs | default 0) }}
{{- $batched := int ($m.maxNumBatchedTokens | default 0) }}
{{- $tokens := int ($spec.tokens | default 3) }}
{{- if and (ne ($spec.method | default "off") "off") $seqs $batched (lt $batched (mul $seqs (add1 $tokens))) }}
{{- fail (printf "inference model %s: with adapters and speculative decoding, maxNumBatchedTokens (%d) must be at least maxNumSeqs x (speculative.tokens + 1) (%d)" $m.id $batched (mul $seqs (add1 $tokens))) }}
{{- end }}
- --enable-lora
- --max-loras={{ $maxLoras }}
- --max-lora-rank={{ $rank }}
{{- if $cpuLoras }}
- --max-cpu-loras={{ $cpuLoras }}
{{- end }}
# --lora-modules takes the name=path items that follow it.
- --lora-modules
{{- range . }}
- {{ printf "%s=/served/adapters/%s" .name .name }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
lathe.inferenceAdapterChecks: refuses adapter names the gateway could not route, naming the key:
an adapter without a name, one named like a served model, and one listed twice (across all
models: a name routes to one model's servers). Call with the root context.
*/}}
{{- define "lathe.inferenceAdapterChecks" -}}
{{- $served := dict }}
{{- range .Values.inference.models }}{{ $_ := set $served .name .id }}{{ end }}
{{- $owners := dict }}
{{- range $model := .Values.inference.models }}
{{- range $i, $adapter := $model.adapters | default list }}
{{- if not $adapter.name }}
{{- fail (printf "inference model %s: adapters[%d] has no name; set adapters[%d].name to the adapter's registered model name" $model.id $i $i) }}
{{- end }}
{{- if hasKey $served $adapter.name }}
{{- fail (printf "inference model %s: adapters[%d].name %s is the name of served model %s; clients ask for an adapter by its name, so it needs one of its own" $model.id $i $adapter.name (get $served $adapter.name)) }}
{{- end }}
{{- if hasKey $owners $adapter.name }}
{{- fail (printf "inference model %s: adapters[%d].name %s is listed twice (also under model %s); an adapter name routes to one model, so list it once" $model.id $i $adapter.name (get $owners $adapter.name)) }}
{{- end }}
{{- $_ := set $owners $adapter.name $model.id }}
{{- end }}
{{- end }}
{{- end -}}
