//go:build tools

// Package tools records the Kubernetes commands the e2e lab runs as
// dependencies so that `go build k8s.io/kubernetes/cmd/...` works from this
// module: kube-apiserver for every lab, the rest for the cluster lab.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
