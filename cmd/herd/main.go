// Command herd is the video transcoding farm: server, workers and CLI in one binary.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/herdhq/herd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// First signal: the context ends and herd shuts down gracefully.
		// Second signal: exit now.
		<-ctx.Done()
		stop()
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		<-ch
		fmt.Fprintln(os.Stderr, "herd: second signal, exiting now")
		os.Exit(130)
	}()
	os.Exit(cli.Run(ctx, os.Args[1:], os.Getenv, os.Environ, os.Stdout, os.Stderr))
}
