// Command pause is the cluster lab's pod sandbox image: it blocks until
// SIGTERM or SIGINT, like registry.k8s.io/pause, which the lab cannot pull.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
}
