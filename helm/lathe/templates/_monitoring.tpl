{{/*
lathe.serviceMonitor: a ServiceMonitor for one component's Service; call with
(dict "root" $ "component" "gateway" "port" "metrics" "path" "/metrics").
`jobLabel` makes the Prometheus job `lathe-<component>` whatever the release is called,
which is what the alert rules and dashboards select on.
*/}}
{{- define "lathe.serviceMonitor" -}}
{{- $ctx := dict "root" .root "component" .component }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "lathe.componentName" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "lathe.labels" $ctx | nindent 4 }}
    {{- with .root.Values.monitoring.selectorLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  jobLabel: lathe.dev/job
  namespaceSelector:
    matchNames: [{{ .root.Release.Namespace }}]
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ .root.Release.Name }}
      app.kubernetes.io/component: {{ .component }}
    matchExpressions:
      # Only the chart's own Services (not, e.g., the head Service KubeRay creates).
      - {key: lathe.dev/job, operator: Exists}
  endpoints:
    - port: {{ .port }}
      path: {{ default "/metrics" .path }}
      interval: {{ .root.Values.monitoring.interval }}
      scheme: http
{{- end -}}
