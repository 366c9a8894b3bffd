{{/* The name every object of a component starts with: <fullnameOverride or release>-<component>. */}}
{{- define "palisade.name" -}}
{{- printf "%s-%s" (.root.Values.fullnameOverride | default .root.Release.Name) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object: commonLabels, then Palisade's own (which win). */}}
{{- define "palisade.labels" -}}
{{- $own := dict
  "app.kubernetes.io/name" "palisade"
  "app.kubernetes.io/instance" .root.Release.Name
  "app.kubernetes.io/component" .component
  "app.kubernetes.io/version" .root.Chart.AppVersion
  "app.kubernetes.io/managed-by" .root.Release.Service
  "helm.sh/chart" (printf "%s-%s" .root.Chart.Name .root.Chart.Version) -}}
{{- toYaml (merge $own (deepCopy (.root.Values.commonLabels | default dict))) -}}
{{- end -}}

{{/* Labels on a component's pods: its selector labels (which win), podLabels, commonLabels. */}}
{{- define "palisade.podLabels" -}}
{{- $selector := include "palisade.selector" . | fromYaml -}}
{{- $values := index .root.Values .component -}}
{{- toYaml (merge $selector (deepCopy ($values.podLabels | default dict)) (deepCopy (.root.Values.commonLabels | default dict))) -}}
{{- end -}}

{{/* Annotations on a component's pods: scrape annotations, then podAnnotations. */}}
{{- define "palisade.podAnnotations" -}}
{{- $scrape := include "palisade.scrape" . | fromYaml | default dict -}}
{{- $values := index .root.Values .component -}}
{{- $all := merge (deepCopy ($values.podAnnotations | default dict)) $scrape -}}
{{- if $all }}{{ toYaml $all }}{{ else }}{}{{ end -}}
{{- end -}}

{{/*
Whether the enforcer runs in a namespace of its own: enforcer.namespace.create when set; unset (the
default), yes, except that an upgrade of a release whose enforcer already runs in the release
namespace keeps it there, so the upgrade never deletes the DaemonSet (which would remove every
node's rules until the new one's first sync). `helm template` cannot look, and says yes.
*/}}
{{- define "palisade.enforcerOwnNamespace" -}}
{{- $create := .Values.enforcer.namespace.create -}}
{{- if not .Values.enforcer.enabled -}}
false
{{- else if kindIs "bool" $create -}}
{{ $create }}
{{- else -}}
{{- $existing := lookup "apps/v1" "DaemonSet" .Release.Namespace (include "palisade.name" (dict "root" . "component" "enforcer")) -}}
{{- $annotations := (($existing | default dict).metadata | default dict).annotations | default dict -}}
{{- if eq (index $annotations "meta.helm.sh/release-name" | default "") .Release.Name -}}
false
{{- else -}}
true
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The namespace the enforcer runs in: its own (see palisade.enforcerOwnNamespace) or the release's. */}}
{{- define "palisade.enforcerNamespace" -}}
{{- if eq (include "palisade.enforcerOwnNamespace" .) "true" -}}
{{- if eq .Values.enforcer.namespace.name .Release.Namespace -}}
{{- fail (printf "enforcer.namespace.name must differ from the release namespace %s: the chart creates that namespace (labelled privileged); to run the enforcer in the release namespace, set enforcer.namespace.create=false" .Release.Namespace) -}}
{{- end -}}
{{ .Values.enforcer.namespace.name }}
{{- else -}}
{{ .Release.Namespace }}
{{- end -}}
{{- end -}}

{{/* A component's scheduling and priority: priorityClassName, nodeSelector, affinity, tolerations. */}}
{{- define "palisade.scheduling" -}}
{{- $values := index .root.Values .component -}}
{{- with $values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Labels a component's pods are selected by. */}}
{{- define "palisade.selector" -}}
app.kubernetes.io/name: palisade
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "palisade.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Restricted container security: non-root, read-only root, no escalation, no capabilities. */}}
{{- define "palisade.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Scrape annotations on a pod, when enabled. */}}
{{- define "palisade.scrape" -}}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}


{{/* Probes on a component's admin port. */}}
{{- define "palisade.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: admin}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: admin}
  periodSeconds: 5
{{- end -}}

{{/* Egress rules of Palisade's own NetworkPolicies: the apiserver and DNS. */}}
{{- define "palisade.networkPolicyEgress" -}}
- ports:
    {{- range .ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  {{- with .np.apiServer.cidrs }}
  to:
    {{- range . }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  {{- end }}
- ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
  {{- with .np.dns.to }}
  to: {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
