{{- define "dbmigrate.fullname" -}}
{{- if contains "dbmigrate" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-dbmigrate" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "dbmigrate.serviceAccountName" -}}
{{- default (include "dbmigrate.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "dbmigrate.labels" -}}
app.kubernetes.io/name: dbmigrate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "dbmigrate.selectorLabels" -}}
app.kubernetes.io/name: dbmigrate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The operator's permissions: exactly what kube.py and kopf call, no wildcards. */}}
{{- define "dbmigrate.rules" -}}
- apiGroups: [dbmigrate.dev]
  resources: [migrations]
  verbs: [get, list, watch, patch]
# kopf watches CRDs to learn when the Migration resource appears or changes.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [dbmigrate.dev]
  resources: [migrations/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get]
- apiGroups: [""]
  resources: [services, secrets]
  verbs: [get]
{{- end -}}
