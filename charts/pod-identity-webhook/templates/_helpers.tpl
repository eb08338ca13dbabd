{{/* Chart name, or nameOverride. */}}
{{- define "piw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name of every object. upstreamCompatible forces upstream's `pod-identity-webhook`;
otherwise the usual Helm rule: fullnameOverride, else the release name when it already
contains the chart name, else <release>-<chart>.
*/}}
{{- define "piw.fullname" -}}
{{- if .Values.upstreamCompatible -}}
pod-identity-webhook
{{- else if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "piw.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Selector labels. They cannot change on an existing Deployment, so upstreamCompatible uses
upstream's `app: pod-identity-webhook` and the Deployment can be adopted in place.
*/}}
{{- define "piw.selectorLabels" -}}
{{- if .Values.upstreamCompatible -}}
app: pod-identity-webhook
{{- else -}}
app.kubernetes.io/name: {{ include "piw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- end -}}

{{- define "piw.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "piw.selectorLabels" . }}
{{- if .Values.upstreamCompatible }}
app.kubernetes.io/name: {{ include "piw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pod-identity-webhook
{{- end -}}

{{- define "piw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "piw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "piw.secretName" -}}
{{- default (printf "%s-cert" (include "piw.fullname" .)) .Values.certificates.secretName -}}
{{- end -}}

{{- define "piw.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Service's DNS names, as `pod-identity-webhook certs` and cert-manager need them. */}}
{{- define "piw.dnsNames" -}}
{{- $svc := include "piw.fullname" . -}}
- {{ $svc }}
- {{ $svc }}.{{ .Release.Namespace }}
- {{ $svc }}.{{ .Release.Namespace }}.svc
- {{ $svc }}.{{ .Release.Namespace }}.svc.cluster.local
{{- end -}}

{{- define "piw.metricsAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.service.metricsPort | quote }}
prometheus.io/scheme: http
prometheus.io/path: /metrics
{{- end -}}
