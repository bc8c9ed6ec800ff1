{{/*
Traffic into the gateway from outside the release (Ingress, Gateway API HTTPRoute, a LoadBalancer
Service), the egress to external services (PostgreSQL, Redis), and the verbatim extra rules of
every component's NetworkPolicy.
*/}}

{{/*
lathe.checkGatewayExposure: fails the install with one line for a way in that cannot work;
renders nothing otherwise. Included by the gateway's Service, so it runs whatever else is on.
*/}}
{{- define "lathe.checkGatewayExposure" -}}
{{- $g := .Values.gateway -}}
{{- $svc := $g.service -}}
{{- $np := .Values.networkPolicy.enabled -}}
{{- if and $svc.loadBalancerSourceRanges (ne $svc.type "LoadBalancer") -}}
{{- fail (printf "gateway.service.loadBalancerSourceRanges applies to a LoadBalancer only (gateway.service.type is %s)" $svc.type) -}}
{{- end -}}
{{- if and (ne $svc.type "ClusterIP") (or $g.ingress.enabled $g.httpRoute.enabled) -}}
{{- fail (printf "gateway.service.type %s exposes the gateway besides its Ingress/HTTPRoute, past their TLS: keep the Service ClusterIP, or turn the Ingress/HTTPRoute off" $svc.type) -}}
{{- end -}}
{{- if $g.ingress.enabled -}}
{{- if not $g.ingress.hosts -}}
{{- fail "gateway.ingress.hosts: name at least one host the Ingress serves (e.g. lathe.example.com)" -}}
{{- end -}}
{{- range $i, $tls := $g.ingress.tls -}}
{{- if not $tls.secretName -}}
{{- fail (printf "gateway.ingress.tls[%d]: set secretName (the Secret holding the certificate, or the one cert-manager fills)" $i) -}}
{{- end -}}
{{- range $tls.hosts -}}
{{- if not (has . $g.ingress.hosts) -}}
{{- fail (printf "gateway.ingress.tls[%d]: host %s is not among gateway.ingress.hosts" $i .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $np (empty $g.ingress.controllerNamespaceSelector) -}}
{{- fail "gateway.ingress.controllerNamespaceSelector is empty: name the ingress controller's namespace (e.g. kubernetes.io/metadata.name: ingress-nginx) so the NetworkPolicy admits it" -}}
{{- end -}}
{{- end -}}
{{- if and $g.httpRoute.enabled (not $g.httpRoute.parentRefs) -}}
{{- fail "gateway.httpRoute.parentRefs: name the Gateway (name, namespace, sectionName) the HTTPRoute attaches to" -}}
{{- end -}}
{{- end -}}

{{/* lathe.namespacePeer: a namespaceSelector peer matching these labels; call with the label map. */}}
{{- define "lathe.namespacePeer" -}}
- namespaceSelector:
    matchLabels:
      {{- toYaml . | nindent 6 }}
{{- end -}}

{{/*
lathe.gatewayClientIngress: the NetworkPolicy rules that admit clients to the gateway's API port.
In-cluster clients come from networkPolicy.gatewayClientNamespaceSelector; left empty, every
namespace is admitted unless an outside path is on, which then stands alone: the ingress
controller's namespace, the Gateway proxies' namespace, or the load balancer's client ranges.
RAG and the agent, which generate through the gateway, are always admitted.
*/}}
{{- define "lathe.gatewayClientIngress" -}}
{{- $g := .Values.gateway -}}
{{- $port := printf "- {protocol: TCP, port: %v}" $g.port -}}
{{- $exposed := ne $g.service.type "ClusterIP" -}}
{{- $outside := or $g.ingress.enabled $g.httpRoute.enabled $exposed -}}
{{- with .Values.networkPolicy.gatewayClientNamespaceSelector }}
# In-cluster clients (networkPolicy.gatewayClientNamespaceSelector).
- from:
    {{- include "lathe.namespacePeer" . | nindent 4 }}
  ports:
    {{- $port | nindent 4 }}
{{- else }}
{{- if not $outside }}
# In-cluster clients: every namespace (networkPolicy.gatewayClientNamespaceSelector is empty).
- from:
    - namespaceSelector: {}
  ports:
    {{- $port | nindent 4 }}
{{- end }}
{{- end }}
{{- $peers := list }}
{{- if .Values.rag.enabled }}{{ $peers = append $peers "rag" }}{{ end }}
{{- if .Values.agent.enabled }}{{ $peers = append $peers "agent" }}{{ end }}
{{- if $peers }}
# RAG and the agent generate through the gateway.
- from:
    {{- range $peers }}
    {{- include "lathe.netpolPeer" (dict "root" $ "component" .) | nindent 4 }}
    {{- end }}
  ports:
    {{- $port | nindent 4 }}
{{- end }}
{{- if $g.ingress.enabled }}
# The ingress controller (gateway.ingress.controllerNamespaceSelector).
- from:
    {{- include "lathe.namespacePeer" $g.ingress.controllerNamespaceSelector | nindent 4 }}
  ports:
    {{- $port | nindent 4 }}
{{- end }}
{{- if $g.httpRoute.enabled }}
# The Gateway API proxies (gateway.httpRoute.proxyNamespaceSelector, else the parentRefs' namespaces).
- from:
    {{- with $g.httpRoute.proxyNamespaceSelector }}
    {{- include "lathe.namespacePeer" . | nindent 4 }}
    {{- else }}
    {{- $seen := list }}
    {{- range $g.httpRoute.parentRefs }}
    {{- $ns := default $.Release.Namespace .namespace }}
    {{- if not (has $ns $seen) }}
    {{- $seen = append $seen $ns }}
    {{- include "lathe.namespacePeer" (dict "kubernetes.io/metadata.name" $ns) | nindent 4 }}
    {{- end }}
    {{- end }}
    {{- end }}
  ports:
    {{- $port | nindent 4 }}
{{- end }}
{{- if $exposed }}
# Clients of the {{ $g.service.type }} Service: gateway.service.loadBalancerSourceRanges, else every address.
- from:
    {{- range (default (list "0.0.0.0/0") $g.service.loadBalancerSourceRanges) }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  ports:
    {{- $port | nindent 4 }}
{{- end }}
{{- end -}}

{{/*
lathe.externalEgress: one egress rule on a port to a service in another namespace of the cluster (a database
operator's) or at the CIDRs outside it; call with (dict "cidrs" LIST "port" N "what" "comment").
*/}}
{{- define "lathe.externalEgress" -}}
# {{ .what }}
- to:
    - namespaceSelector: {}
    {{- range .cidrs }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  ports:
    - {protocol: TCP, port: {{ .port }}}
{{- end -}}

{{/*
lathe.gatewayExternalEgress: the gateway's egress to an external database (gateway.database.existingSecret)
and an external Redis (redis.external.urlSecret with the bundled Redis off).
*/}}
{{- define "lathe.gatewayExternalEgress" -}}
{{- $np := .Values.networkPolicy -}}
{{- with .Values.gateway.database }}
{{- if .existingSecret }}
{{ include "lathe.externalEgress" (dict "cidrs" (default $np.externalEgressCidrs .egress.cidrs) "port" .egress.port "what" "The external database of gateway.database.existingSecret.") }}
{{- end }}
{{- end }}
{{- if include "lathe.externalRedis" . }}
{{- with .Values.redis.external }}
{{ include "lathe.externalEgress" (dict "cidrs" (default $np.externalEgressCidrs .cidrs) "port" .port "what" "The external Redis of redis.external.urlSecret.") }}
{{- end }}
{{- end }}
{{- end -}}

{{/* lathe.ragExternalEgress: RAG's egress to an external Qdrant, on the port of qdrant.externalUrl. */}}
{{- define "lathe.ragExternalEgress" -}}
{{- if not .Values.qdrant.enabled }}
{{ include "lathe.externalEgress" (dict "cidrs" .Values.networkPolicy.externalEgressCidrs "port" (include "lathe.urlPort" .Values.qdrant.externalUrl | int) "what" "The external Qdrant of qdrant.externalUrl.") }}
{{- end }}
{{- end -}}

{{/* lathe.externalRedis: "true" when the gateway uses an external Redis (bundled off, URL Secret named), else empty. */}}
{{- define "lathe.externalRedis" -}}
{{- if and (not .Values.redis.enabled) .Values.redis.external.urlSecret.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* lathe.gatewayRedisEnv: LATHE_GATEWAY_REDIS_URL for the bundled Redis or from the external Redis's Secret; nothing without Redis. */}}
{{- define "lathe.gatewayRedisEnv" -}}
{{- if .Values.redis.enabled }}
{{- $host := include "lathe.componentName" (dict "root" . "component" "redis") }}
{{- if .Values.redis.existingSecret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.redis.existingSecret }}, key: {{ .Values.redis.passwordKey }}}
- name: LATHE_GATEWAY_REDIS_URL
  value: "redis://:$(REDIS_PASSWORD)@{{ $host }}:6379/0"
{{- else }}
- name: LATHE_GATEWAY_REDIS_URL
  value: "redis://{{ $host }}:6379/0"
{{- end }}
{{- else if include "lathe.externalRedis" . }}
- name: LATHE_GATEWAY_REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.redis.external.urlSecret.existingSecret }}, key: {{ .Values.redis.external.urlSecret.key }}}
{{- end }}
{{- end -}}

{{/*
lathe.netpolExtra: the rules of networkPolicy.extraIngress.<component> or extraEgress.<component>,
verbatim; call with (dict "root" $ "component" "gateway" "direction" "Ingress").
*/}}
{{- define "lathe.netpolExtra" -}}
{{- $key := printf "extra%s" .direction -}}
{{- with get (get .root.Values.networkPolicy $key) .component }}
# networkPolicy.{{ $key }}.{{ $.component }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Tracing's settings as env entries (LATHE_TRACING_*), for every Lathe service's container. */}}
{{- define "lathe.tracingEnv" -}}
{{- with .Values.tracing }}
{{- if .enabled }}
- {name: LATHE_TRACING_ENABLED, value: "true"}
- {name: LATHE_TRACING_SAMPLE_RATIO, value: {{ .sampleRatio | quote }}}
{{- with .otlpEndpoint }}
- {name: LATHE_TRACING_OTLP_ENDPOINT, value: {{ . | quote }}}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Egress to the trace collector, when tracing exports somewhere. */}}
{{- define "lathe.tracingEgress" -}}
{{- with .Values.tracing }}
{{- if and .enabled .otlpEndpoint }}
# Spans to the OpenTelemetry collector (tracing.collector).
- to:
    - namespaceSelector:
        matchLabels:
          {{- toYaml .collector.namespaceSelector | nindent 10 }}
  ports:
    - {protocol: TCP, port: {{ .collector.port }}}
{{- end }}
{{- end }}
{{- end -}}
