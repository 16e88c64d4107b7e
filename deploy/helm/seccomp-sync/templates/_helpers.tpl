{{/*
The agent's image (the controller runs the same one).
*/}}
{{- define "seccomp-sync.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The directory the agent writes, on the host and in its container (the same path, so log lines
and events name the real file): <kubelet root>/seccomp/seccomp-sync.
*/}}
{{- define "seccomp-sync.seccompRoot" -}}
{{ clean (printf "%s/seccomp" .Values.kubeletRootDir) }}
{{- end }}

{{/*
The agent's tolerations: the user's, plus its own startup taint unless one of theirs already
covers it (an Exists toleration without a key or with that key, for any effect). Without it, a
node registered with the taint would never get an agent to remove it.
*/}}
{{- define "seccomp-sync.agentTolerations" -}}
{{- $covered := false }}
{{- range .Values.agent.tolerations }}
{{- if and (eq (.operator | default "Equal") "Exists") (has (.key | default "") (list "" "seccompsync.io/agent-not-ready")) (not .effect) }}
{{- $covered = true }}
{{- end }}
{{- end }}
{{- $tolerations := .Values.agent.tolerations }}
{{- if not $covered }}
{{- $tolerations = append $tolerations (dict "key" "seccompsync.io/agent-not-ready" "operator" "Exists") }}
{{- end }}
{{- toYaml $tolerations }}
{{- end }}

{{/*
The chart creates and labels the seccomp-sync namespace (Pod Security: privileged, for the one
hostPath), so Helm must keep its release record elsewhere: an existing namespace it did not
create cannot be adopted.
*/}}
{{- define "seccomp-sync.checkReleaseNamespace" -}}
{{- if eq .Release.Namespace "seccomp-sync" }}
{{- fail "install the release into another namespace (helm install --namespace kube-system, for example): the chart creates the seccomp-sync namespace itself, with its Pod Security label and quota, and Helm cannot adopt one that already exists" }}
{{- end }}
{{- end }}
