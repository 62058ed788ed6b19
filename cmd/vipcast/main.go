// Command vipcast advertises the Kubernetes API VIP over BGP while the
// node's own kube-apiserver is healthy.
package main

import (
	"os"
)

func main() {
	os.Exit(execute(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}
