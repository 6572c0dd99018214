{{/* Names and labels shared by every template. */}}

{{- define "cams-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cams-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cams-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cams-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cams-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cams-exporter.labels" -}}
helm.sh/chart: {{ include "cams-exporter.chart" . }}
{{ include "cams-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cams-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cams-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cams-exporter.configMapName" -}}
{{- default (printf "%s-config" (include "cams-exporter.fullname" .)) .Values.config.existingConfigMap }}
{{- end }}

{{- define "cams-exporter.scheme" -}}
{{- if .Values.webConfig.tls }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{- define "cams-exporter.shards" -}}
{{- $shards := int .Values.shards }}
{{- if lt $shards 1 }}
{{- fail (printf "shards: must be at least 1, got %v" .Values.shards) }}
{{- end }}
{{- $shards }}
{{- end }}

{{/*
The pod template of the Deployment (shards: 1) and of the StatefulSet (shards > 1).
*/}}
{{- define "cams-exporter.podTemplate" -}}
{{- $shards := include "cams-exporter.shards" . | int -}}
metadata:
  labels:
    {{- include "cams-exporter.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: exporter
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if not .Values.config.existingConfigMap }}
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "cams-exporter.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: cams-exporter
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config.file
        - /etc/cams-exporter/config.yml
        - --web.listen-address
        - :{{ .Values.service.port }}
        - --log.level
        - {{ .Values.log.level }}
        - --log.format
        - {{ .Values.log.format }}
        {{- if .Values.webConfig.existingSecret }}
        - --web.config.file
        - /etc/cams-exporter/web/{{ .Values.webConfig.key }}
        {{- end }}
        {{- if gt $shards 1 }}
        - --shard
        - $(POD_INDEX)/{{ $shards }}
        {{- end }}
        {{- with .Values.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if or (gt $shards 1) .Values.credentials.existingSecret .Values.env }}
      env:
        {{- if gt $shards 1 }}
        - name: POD_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        {{- end }}
        {{- with .Values.credentials.existingSecret }}
        - name: ALIBABA_CLOUD_ACCESS_KEY_ID
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.credentials.accessKeyIdKey }}
        - name: ALIBABA_CLOUD_ACCESS_KEY_SECRET
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.credentials.accessKeySecretKey }}
        {{- if $.Values.credentials.securityTokenKey }}
        - name: ALIBABA_CLOUD_SECURITY_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.credentials.securityTokenKey }}
        {{- end }}
        {{- end }}
        {{- with .Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- with .Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: metrics
          containerPort: {{ .Values.service.port }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /-/healthy
          port: metrics
          scheme: {{ include "cams-exporter.scheme" . }}
          {{- with .Values.probes.httpHeaders }}
          httpHeaders:
            {{- toYaml . | nindent 12 }}
          {{- end }}
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /-/ready
          port: metrics
          scheme: {{ include "cams-exporter.scheme" . }}
          {{- with .Values.probes.httpHeaders }}
          httpHeaders:
            {{- toYaml . | nindent 12 }}
          {{- end }}
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /etc/cams-exporter
          readOnly: true
        {{- if .Values.webConfig.existingSecret }}
        - name: web-config
          mountPath: /etc/cams-exporter/web
          readOnly: true
        {{- end }}
        - name: state
          mountPath: /var/lib/cams-exporter
        - name: tmp
          mountPath: /tmp
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "cams-exporter.configMapName" . }}
        items:
          - key: config.yml
            path: config.yml
    {{- with .Values.webConfig.existingSecret }}
    - name: web-config
      secret:
        secretName: {{ . }}
    {{- end }}
    {{- if not .Values.persistence.enabled }}
    - name: state
      emptyDir: {}
    {{- else if eq $shards 1 }}
    - name: state
      persistentVolumeClaim:
        claimName: {{ default (printf "%s-state" (include "cams-exporter.fullname" .)) .Values.persistence.existingClaim }}
    {{- end }}
    - name: tmp
      emptyDir: {}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
