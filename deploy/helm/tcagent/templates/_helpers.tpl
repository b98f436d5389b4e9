{{/*
tcagent.headers joins exporter.headers into OTEL_EXPORTER_OTLP_HEADERS'
form, name=value pairs separated by commas, sorted by name so that the
rendering does not change from run to run.
*/}}
{{- define "tcagent.headers" -}}
{{- $pairs := list -}}
{{- range $k, $v := . -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
