#!/usr/bin/env bash
# Renders the Helm chart with its default values, in namespace tcagent made
# by the manifest itself, as the plain manifest: prints it. `make manifest`
# writes it to deploy/kubernetes/daemonset.yaml, and deploy's tests check
# that the committed file is this rendering.
set -euo pipefail
cd "$(dirname "$0")"
helm=${HELM:-$(../scripts/helm.sh)}
cat <<'HEADER'
# Generated from the Helm chart deploy/helm/tcagent with its default values
# by `make manifest`: edit the chart, not this file.
# tcagent as a DaemonSet: one agent per node traces the Go processes the
# selectors in the ConfigMap match, in every pod of the node.
# README.md, "Deploying on Kubernetes", says why each privilege is here.
HEADER
"$helm" template tcagent helm/tcagent --namespace tcagent --set createNamespace=true |
	grep -v '^# Source: '
