{{/* Names and labels. */}}
{{- define "vipcast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vipcast.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "vipcast.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "vipcast.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vipcast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vipcast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vipcast.labels" -}}
{{ include "vipcast.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "vipcast.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds = the SIGTERM sequence plus 10 s of slack:
the RFC 8326 graceful-shutdown wait (policy.gracefulShutdown.wait, 3s by
default, 0 when disabled) + shutdown.drainPeriod. The schema restricts these
durations to one unit (ms, s or m) so they can be computed here.
*/}}
{{- define "vipcast.terminationGracePeriodSeconds" -}}
{{- $gshut := 0 -}}
{{- $g := (.Values.policy | default dict).gracefulShutdown | default dict -}}
{{- if ne (toString $g.enabled) "false" -}}
{{- $gshut = include "vipcast.seconds" ($g.wait | default "3s") | atoi -}}
{{- end -}}
{{- add (include "vipcast.seconds" .Values.shutdown.drainPeriod | atoi) $gshut 10 -}}
{{- end -}}

{{/* A one-unit duration (500ms, 2s, 1m) in whole seconds, rounded up. */}}
{{- define "vipcast.seconds" -}}
{{- $d := toString . -}}
{{- if hasSuffix "ms" $d -}}
{{- div (add (trimSuffix "ms" $d | atoi) 999) 1000 -}}
{{- else if hasSuffix "s" $d -}}
{{- trimSuffix "s" $d | atoi -}}
{{- else if hasSuffix "m" $d -}}
{{- mul (trimSuffix "m" $d | atoi) 60 -}}
{{- else -}}
0
{{- end -}}
{{- end -}}

{{/* A volume name for a peer Secret: DNS label, stable, <= 63 chars. */}}
{{- define "vipcast.secretVolume" -}}
{{- printf "peer-secret-%s" (sha256sum . | trunc 10) -}}
{{- end -}}

{{/* Secret name -> sorted list of keys referenced by peers[].passwordSecret, as JSON. */}}
{{- define "vipcast.peerSecrets" -}}
{{- $out := dict -}}
{{- range .Values.peers -}}
{{- with .passwordSecret -}}
{{- $keys := get $out .name | default list -}}
{{- $_ := set $out .name (append $keys .key | uniq | sortAlpha) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "vipcast.listen" -}}
{{- $addr := index . 0 -}}
{{- $port := index . 1 -}}
{{- if not $addr -}}
:{{ $port }}
{{- else if contains ":" $addr -}}
[{{ $addr }}]:{{ $port }}
{{- else -}}
{{ $addr }}:{{ $port }}
{{- end -}}
{{- end -}}

{{/*
The vipcast config file: the values' vips..policy, with the file paths this
chart mounts filled in. Rendered with toYaml, never by hand.
*/}}
{{- define "vipcast.config" -}}
{{- $v := .Values -}}
{{- $health := deepCopy $v.health -}}
{{- if eq $v.apiserver.caSource "hostPath" -}}
{{- $_ := set $health "caFile" "/etc/vipcast/apiserver-ca/ca.crt" -}}
{{- else -}}
{{- $_ := set $health "caFile" "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt" -}}
{{- end -}}
{{- if $v.apiserver.sendServiceAccountToken -}}
{{- $_ := set $health "tokenFile" "/var/run/secrets/kubernetes.io/serviceaccount/token" -}}
{{- end -}}
{{- $peers := list -}}
{{- range $v.peers -}}
{{- $p := omit . "passwordSecret" -}}
{{- with .passwordSecret -}}
{{- $_ := set $p "passwordFile" (printf "/etc/vipcast/secrets/%s/%s" .name .key) -}}
{{- end -}}
{{- $peers = append $peers $p -}}
{{- end -}}
{{- $cfg := dict "vips" $v.vips "loopback" $v.loopback "health" $health "damping" $v.damping "shutdown" $v.shutdown "bgp" $v.bgp "peers" $peers "policy" $v.policy -}}
{{- $grpcAddr := $v.grpc.bindAddress -}}
{{- if and (not $v.probes.enabled) (or (not $grpcAddr) (eq $grpcAddr "podIP")) -}}
{{- $grpcAddr = "127.0.0.1" -}}
{{- end -}}
{{- /* socket and stateFile: on the daemonset's writable mounts. "podIP" is
known only in the pod: VIPCAST_API_HEALTHLISTEN in the DaemonSet sets it. */ -}}
{{- $api := dict "socket" "/run/vipcast/vipcast.sock" "stateFile" "/var/lib/vipcast/state.json" -}}
{{- if ne $grpcAddr "podIP" -}}
{{- $_ := set $api "healthListen" (include "vipcast.listen" (list $grpcAddr $v.grpc.healthPort)) -}}
{{- end -}}
{{- $_ := set $cfg "api" $api -}}
{{- /* The status Leases go in the release namespace, where the Role allows them. */ -}}
{{- $_ := set $cfg "kubernetes" (dict "statusLease" $v.statusLease.enabled "namespace" .Release.Namespace) -}}
{{- if $v.metrics.enabled -}}
{{- $_ := set $cfg "metrics" (dict "listen" (include "vipcast.listen" (list $v.metrics.bindAddress $v.metrics.port))) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
