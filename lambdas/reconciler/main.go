// Command reconciler is the reconciler Lambda of the silo control plane.
//
// NOT IMPLEMENTED YET: the handler arrives with a later issue. This main
// exists so `make build` produces the zip the control-plane stack deploys;
// every invocation logs that and fails, so nobody mistakes it for working.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

var errNotImplemented = errors.New("silo reconciler: handler not implemented yet")

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	lambda.Start(func(ctx context.Context, event json.RawMessage) (json.RawMessage, error) {
		log.ErrorContext(ctx, "handler not implemented yet", "function", "reconciler")
		return nil, errNotImplemented
	})
}
