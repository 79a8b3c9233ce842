package registry

import (
	"context"
	"fmt"
	"testing"
)

// Registry operations against the emulator, with DynamoDB calls per op.
// The emulator's speed bounds these (moto serves a few hundred requests a
// second here); the calls-per-op column is the figure that carries to AWS.

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b)
	if _, _, err := f.store.Create(ctx, spec("bench"), "", ""); err != nil {
		b.Fatal(err)
	}
	f.counter.Reset()
	for b.Loop() {
		if _, err := f.store.Get(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(f.counter.Total())/float64(b.N), "ddb-calls/op")
}

func BenchmarkCreateAndWalkToActive(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b)
	f.counter.Reset()
	i := 0
	for b.Loop() {
		i++
		t, _, err := f.store.Create(ctx, spec(fmt.Sprintf("walk-%06d", i)), fmt.Sprintf("k-%d", i), "")
		if err != nil {
			b.Fatal(err)
		}
		for _, to := range []State{StateCreatingAccount, StatePreparing, StateDeploying, StateActive} {
			if t, err = f.store.Transition(ctx, t, to, Change{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(f.counter.Total())/float64(b.N), "ddb-calls/op")
}
