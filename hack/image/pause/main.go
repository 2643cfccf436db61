// Command pause is the sandbox ("pause") container of the test node that
// hack/kube/node.sh starts: it holds a pod's namespaces open and exits on
// SIGTERM or SIGINT. Built static, it is the whole of its image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
