{{/* Names and labels, the usual `helm create` way. */}}
{{- define "reasoning-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reasoning-operator.fullname" -}}
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

{{- define "reasoning-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reasoning-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reasoning-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "reasoning-operator.labels" -}}
helm.sh/chart: {{ include "reasoning-operator.chart" . }}
{{ include "reasoning-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: reasoning-operator
{{- end }}

{{- define "reasoning-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "reasoning-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "reasoning-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The namespaces a namespaced-mode operator watches: the list, or the release namespace. */}}
{{- define "reasoning-operator.watchedNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- join "," .Values.watch.namespaces }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* The operator's arguments: the Deployment and tests/chart's local operator both use these. */}}
{{- define "reasoning-operator.args" -}}
- operator
{{- if .Values.watch.allNamespaces }}
- --all-namespaces
{{- else }}
{{- range splitList "," (include "reasoning-operator.watchedNamespaces" .) }}
- --namespace={{ . }}
{{- end }}
{{- end }}
- --metrics-port={{ .Values.operator.metricsPort }}
- --health-port={{ .Values.operator.healthPort }}
- --resync-seconds={{ .Values.operator.resyncSeconds }}
- --log-format={{ .Values.operator.logFormat }}
{{- if .Values.operator.verbose }}
- --verbose
{{- end }}
{{- end }}

{{/*
What the operator does to the API (operator/reasoning_operator/kube.py and handlers.py), verb by verb.
The same rules go into the ClusterRole (all namespaces) or into one Role per watched namespace.
*/}}
{{- define "reasoning-operator.rules" -}}
# The runs: kopf watches them; kube.py lists and reads them and patches only their status. No finalizers
# (the resync is one operator-wide loop, not kopf timers), so a run can be deleted while the operator is
# down, and spec is never written (tests/chart checks metadata.generation stays 1 through a whole run).
- apiGroups: [reasoning-operator.dev]
  resources: [reasoningruns]
  verbs: [get, list, watch]
- apiGroups: [reasoning-operator.dev]
  resources: [reasoningruns/status]
  verbs: [patch]
# Children carry ownerReferences with blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement
# admission plugin (on in OpenShift, for one) allows only to who may update the owner's finalizers.
- apiGroups: [reasoning-operator.dev]
  resources: [reasoningruns/finalizers]
  verbs: [update]
# Stage Jobs: watched (cached, by the operator's label), created once (the garbage collector deletes them with
# the run); patched (server-side apply of spec.suspend alone) to suspend and resume them for spec.suspend.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch]
# Kueue's Workloads (with spec.queueName): read to tell in status why a queued Job waits for admission, and
# patched (server-side apply of spec.active and one annotation) to hold a queued run for spec.suspend: Kueue
# unsuspends an admitted Job that is merely suspended, and evicts an inactive Workload.
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [get, list, watch, patch]
# The Triton Deployment: watched, server-side applied (patch; create when it is absent), deleted after evaluation.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# The Triton Service: watched (cached, by the operator's label), server-side applied, deleted after evaluation.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
# The stage configs: watched (cached, by the operator's label), server-side applied.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch]
# The run's volume: watched (cached, by the operator's label), created once (kept or collected by its
# ownerReference).
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, watch, create]
# Stage pods: watched (scheduling, termination messages) and their log tails read for training progress.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# One Event per stage transition; the Job controller's FailedCreate events are listed (by field selector)
# to report a pod the apiserver refused (Pod Security, quota, an invalid image).
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
{{- if .Values.curation.rayCluster.enabled }}
# Curation on a KubeRay cluster: the run's RayJob is read and listed (not watched) and created once; the
# garbage collector deletes it with the run, and KubeRay deletes its cluster.
- apiGroups: [ray.io]
  resources: [rayjobs]
  verbs: [get, list, create]
{{- end }}
{{- end }}
