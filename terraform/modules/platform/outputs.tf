output "lathe_namespace" {
  description = "Namespace of the Lathe release."
  value       = helm_release.lathe.namespace
}

output "lathe_release" {
  description = "Name and deployed chart version of the Lathe release."
  value       = "${helm_release.lathe.name}@${helm_release.lathe.version}"
}

output "grafana_port_forward" {
  description = "Command that opens Grafana on http://127.0.0.1:3000."
  value       = "kubectl -n ${helm_release.kube_prometheus_stack.namespace} port-forward svc/kube-prometheus-stack-grafana 3000:80"
}
