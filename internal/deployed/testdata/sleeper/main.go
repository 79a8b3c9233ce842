// Command sleeper is a test function for the deployed-mode harness: it
// stands in for a control-plane function to show what the harness does
// with one that outlives its timeout or dies. It records its process id
// in $SLEEPER_DIR/pid before it sleeps, so a test can check the process
// is gone afterwards.
//
// An SQS batch: a message whose body is "sleep" on its first delivery
// makes it sleep an hour, past any timeout, ignoring its deadline; every
// other message succeeds. A direct event {"sleep": seconds} sleeps that
// long and answers {"slept": seconds}.
package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	Records []events.SQSMessage `json:"Records"`
	Sleep   *int                `json:"sleep"`
}

func main() {
	lambda.Start(func(ctx context.Context, ev event) (any, error) {
		if ev.Sleep != nil {
			recordPID()
			time.Sleep(time.Duration(*ev.Sleep) * time.Second)
			return map[string]int{"slept": *ev.Sleep}, nil
		}
		for _, r := range ev.Records {
			if r.Body == "sleep" && r.Attributes["ApproximateReceiveCount"] == "1" {
				recordPID()
				time.Sleep(time.Hour)
			}
		}
		return events.SQSEventResponse{}, nil
	})
}

func recordPID() {
	if dir := os.Getenv("SLEEPER_DIR"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
}
