{{/*
lathe.appDeployment: the Deployment of a Lathe HTTP service (RAG, agent) run from the Lathe
image as `python -m services.<component>`; call with
(dict "root" $ "component" "rag" "values" .Values.rag "env" (list ...)).
*/}}
{{- define "lathe.appDeployment" -}}
{{- $root := .root }}
{{- $ctx := dict "root" .root "component" .component }}
{{- $v := .values }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "lathe.componentName" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "lathe.labels" $ctx | nindent 4 }}
  annotations:
    checkov.io/skip1: CKV_K8S_35=Lathe services read their settings (pydantic BaseSettings) from the environment; every secret comes by secretKeyRef from an existing Secret, never inline
spec:
  replicas: {{ $v.replicaCount }}
  selector:
    matchLabels:
      {{- include "lathe.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "lathe.labels" $ctx | nindent 8 }}
    spec:
      serviceAccountName: {{ include "lathe.componentName" $ctx }}
      automountServiceAccountToken: false
      {{- include "lathe.imagePullSecrets" $root | nindent 6 }}
      securityContext:
        {{- include "lathe.podSecurityContext" (dict "root" $root "user" $root.Values.security.runAsUser "group" $root.Values.security.fsGroup) | nindent 8 }}
      containers:
        - name: lathe-{{ .component }}
          image: {{ include "lathe.image" $root.Values.image }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["python", "-m", "services.{{ .component }}"]
          ports:
            - {name: http, containerPort: {{ $v.port }}, protocol: TCP}
          env:
            - {name: LATHE_PROFILE, value: k8s}
            - {name: LATHE_HOME, value: /var/lib/lathe}
            {{- include "lathe.tracingEnv" $root | nindent 12 }}
            - {name: LATHE_MLFLOW_TRACKING_URI, value: {{ include "lathe.mlflowUrl" $root | quote }}}
            - {name: LATHE_INFERENCE_URL, value: {{ include "lathe.gatewayUrl" $root | quote }}}
            # Generation goes through the gateway, with the key of the caller.
            - {name: {{ printf "LATHE_%s_GATEWAY_URL" (upper .component) }}, value: {{ include "lathe.gatewayUrl" $root | quote }}}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          # Liveness waits until the service has started once: building its models (RAG exports its
          # encoder to ONNX on a fresh pod) may take longer than liveness would allow.
          startupProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 5
            failureThreshold: 36
          livenessProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 10
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 5
            failureThreshold: 2
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "lathe.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            - {name: home, mountPath: /var/lib/lathe}
      volumes:
        {{- include "lathe.tmpVolume" dict | nindent 8 }}
        - name: home
          emptyDir:
            sizeLimit: 2Gi
{{- end -}}

{{/* lathe.appService: the ClusterIP Service of a Lathe HTTP service; same arguments. */}}
{{- define "lathe.appService" -}}
{{- $ctx := dict "root" .root "component" .component }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "lathe.componentName" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "lathe.labels" $ctx | nindent 4 }}
    {{- include "lathe.jobLabel" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "lathe.selectorLabels" $ctx | nindent 4 }}
  ports:
    - {name: http, port: {{ .values.port }}, targetPort: http, protocol: TCP}
{{- end -}}
