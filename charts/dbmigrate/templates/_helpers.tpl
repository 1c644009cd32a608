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
  verbs: [list, watch, patch]
# kopf watches CRDs to learn when the Migration resource appears or changes.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [dbmigrate.dev]
  resources: [migrations/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# ownerReferences with blockOwnerDeletion need this where OwnerReferencesPermissionEnforcement is on.
- apiGroups: [dbmigrate.dev]
  resources: [migrations/finalizers]
  verbs: [update]
# Read the source; create the target's children, never update them. delete is only used on
# children the Migration controls (kube.delete_owned checks the ownerReference and uses a UID
# precondition), for the test server's TTL expiry.
# patch: an execute repoints the source Service (selector), scales the source StatefulSet to 0,
# restarts the new server with another wal_level (strategy dump, its own StatefulSet only), and
# releases the new server's children from the Migration before the repoint (ownerReferences),
# and gives them back should the switchover not go through.
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, create, delete, patch]
- apiGroups: [""]
  resources: [services, secrets]
  verbs: [get, create, delete, patch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, create, delete, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create, delete]
# The copy Job reports its result in its pod's termination message.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# kopf peering (HA: which replica acts); cluster-wide when all namespaces are watched,
# a KopfPeering per watched namespace otherwise. list/watch to see the peers, patch to post
# this replica's keep-alive (kopf never gets or creates it: the chart creates the object).
{{- if .Values.peering.enabled }}
{{- if .Values.watchNamespaces }}
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [list, watch, patch]
{{- else }}
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [list, watch, patch]
{{- end }}
{{- end }}
{{- end -}}
