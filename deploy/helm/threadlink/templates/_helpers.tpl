{{/* Names, labels and the pieces every pod shares. */}}

{{- define "threadlink.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "threadlink.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "threadlink.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "threadlink.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* threadlink.yaml: the user's config with what the chart decides (listen addresses, ports, state). */}}
{{- define "threadlink.config" -}}
{{- $fixed := dict
      "http" (dict "host" "0.0.0.0" "port" 8787)
      "streams" (dict "web_host" "0.0.0.0" "web_port" 6066 "state_dir" "/var/lib/threadlink/streams") -}}
{{- toYaml (mergeOverwrite (deepCopy .Values.config) $fixed) -}}
{{- end -}}

{{- define "threadlink.podSecurity" -}}
serviceAccountName: {{ include "threadlink.fullname" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The container's settings shared by every threadlink process: image, env, config mount. */}}
{{- define "threadlink.containerBase" -}}
image: {{ include "threadlink.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
env:
  - name: THREADLINK_CONFIG
    value: /etc/threadlink/threadlink.yaml
envFrom:
  - secretRef:
      name: {{ required "existingSecret: name the Secret holding the THREADLINK_* secrets" .Values.existingSecret }}
{{- end -}}

{{- define "threadlink.probes" -}}
livenessProbe:
  httpGet: { path: /healthz, port: {{ .port }} }
  {{- toYaml .probes.liveness | nindent 2 }}
readinessProbe:
  httpGet: { path: /readyz, port: {{ .port }} }
  {{- toYaml .probes.readiness | nindent 2 }}
{{- end -}}
