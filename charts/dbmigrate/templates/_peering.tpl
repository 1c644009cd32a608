{{/* Name of the kopf peering object the replicas share. */}}
{{- define "dbmigrate.peeringName" -}}
{{- default (include "dbmigrate.fullname" .) .Values.peering.name -}}
{{- end -}}
