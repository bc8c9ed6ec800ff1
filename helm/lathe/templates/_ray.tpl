{{/*
lathe.rayContainer: a Ray container (head or worker); call with
(dict "root" $ "name" "lathe-ray-head" "resources" R "gpus" N "head" true).
*/}}
{{- define "lathe.rayContainer" -}}
{{- $root := .root }}
- name: {{ .name }}
  image: {{ include "lathe.image" $root.Values.ray.image }}
  imagePullPolicy: {{ $root.Values.ray.image.pullPolicy }}
  env:
    - {name: MLFLOW_TRACKING_URI, value: {{ include "lathe.mlflowUrl" $root | quote }}}
    - {name: LATHE_MLFLOW_TRACKING_URI, value: {{ include "lathe.mlflowUrl" $root | quote }}}
    - {name: LATHE_HOME, value: /app/.lathe}
    - {name: RAY_USAGE_STATS_ENABLED, value: "0"}
    - {name: TORCH_EXTENSIONS_DIR, value: /app/.lathe/torch-extensions}
    - {name: XDG_CACHE_HOME, value: /tmp/cache}
    {{- include "lathe.rayPipelineEnv" $root | nindent 4 }}
  ports:
    {{- if .head }}
    - {name: gcs-server, containerPort: 6379, protocol: TCP}
    - {name: dashboard, containerPort: 8265, protocol: TCP}
    - {name: client, containerPort: 10001, protocol: TCP}
    {{- end }}
    - {name: metrics, containerPort: 8080, protocol: TCP}
  {{- if .head }}
  livenessProbe:
    httpGet: {path: /api/gcs_healthz, port: 8265}
    initialDelaySeconds: 30
    periodSeconds: 10
    failureThreshold: 6
  readinessProbe:
    httpGet: {path: /api/gcs_healthz, port: 8265}
    initialDelaySeconds: 10
    periodSeconds: 5
  {{- else }}
  livenessProbe:
    httpGet: {path: /api/local_raylet_healthz, port: 52365}
    initialDelaySeconds: 30
    periodSeconds: 10
    failureThreshold: 6
  readinessProbe:
    httpGet: {path: /api/local_raylet_healthz, port: 52365}
    initialDelaySeconds: 10
    periodSeconds: 5
  {{- end }}
  resources:
    requests:
      {{- toYaml .resources.requests | nindent 6 }}
      {{- if gt (int .gpus) 0 }}
      nvidia.com/gpu: {{ .gpus }}
      {{- end }}
    limits:
      {{- toYaml .resources.limits | nindent 6 }}
      {{- if gt (int .gpus) 0 }}
      nvidia.com/gpu: {{ .gpus }}
      {{- end }}
  securityContext:
    {{- include "lathe.containerSecurityContext" $root | nindent 4 }}
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
    - {name: dshm, mountPath: /dev/shm}
    - {name: lathe-home, mountPath: /app/.lathe}
{{- end -}}

{{/* lathe.rayVolumes: scratch, shared memory (Ray's object store) and the shared data folder. */}}
{{- define "lathe.rayVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 20Gi
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: 4Gi
- name: lathe-home
  {{- if .Values.ray.sharedStorageClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.ray.sharedStorageClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: 50Gi
  {{- end }}
{{- end -}}

{{/* lathe.rayPodSpecCommon: what every Ray pod shares besides its containers. */}}
{{- define "lathe.rayPodSpecCommon" -}}
serviceAccountName: {{ include "lathe.componentName" (dict "root" . "component" "ray") }}
{{- include "lathe.imagePullSecrets" . }}
securityContext:
  # 1000 is the ray user of the rayproject images.
  {{- include "lathe.podSecurityContext" (dict "root" . "user" 1000 "group" 100) | nindent 2 }}
{{- end -}}
