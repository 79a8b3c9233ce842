package deployed

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// sleeper is the test function (testdata/sleeper) that stands in for the
// reconciler and the prober here.
const sleeper = "./internal/deployed/testdata/sleeper"

// readPID waits for the sleeper's process id in dir and removes the file.
func readPID(t *testing.T, dir string) int {
	t.Helper()
	var pid int
	wait(t, func() string { return "the sleeper's pid in " + dir }, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(string(b))
		return err == nil
	})
	_ = os.Remove(filepath.Join(dir, "pid"))
	return pid
}

// running reports whether pid is a live process (not gone, not a zombie).
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	return !strings.HasPrefix(strings.TrimSpace(s[strings.LastIndexByte(s, ')')+1:]), "Z")
}

// TestTimeoutAndCrash: a function that outlives its timeout is killed (its
// process is gone) and its SQS message comes back after the visibility
// timeout, on a new execution environment, where it succeeds and is
// deleted; a runtime killed mid-invocation fails that invocation and the
// next one gets a new environment. When the harness closes, none of its
// processes is left.
func TestTimeoutAndCrash(t *testing.T) {
	clock := NewClock(noon, 1)
	recDir, probeDir := t.TempDir(), t.TempDir()
	f := start(t, Options{
		Clock: clock,
		Code:  map[string]string{"reconciler": sleeper, "prober": sleeper},
		Edit: func(tpl *Template) error {
			if err := tpl.SetFunctionTimeout("silo-reconciler", 2); err != nil {
				return err
			}
			if err := tpl.SetFunctionEnvironment("silo-reconciler", "SLEEPER_DIR", recDir); err != nil {
				return err
			}
			return tpl.SetFunctionEnvironment("silo-prober", "SLEEPER_DIR", probeDir)
		},
	})
	h := f.h
	src := h.EventSources()[0]
	if h.Function("silo-reconciler").Config.Timeout != 2*time.Second {
		t.Fatalf("the reconciler's timeout is %s, want the edited 2s", h.Function("silo-reconciler").Config.Timeout)
	}

	t.Run("a timed-out invocation is killed and its message redelivered", func(t *testing.T) {
		if _, err := sqs.NewFromConfig(f.cfg).SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(src.QueueURL), MessageBody: aws.String("sleep")}); err != nil {
			t.Fatal(err)
		}
		pid := readPID(t, recDir)
		wait(t, func() string { return "the timed-out invocation" }, func() bool {
			return len(invocations(h, "silo-reconciler", SourceSQS, nil)) == 1
		})
		first := invocations(h, "silo-reconciler", SourceSQS, nil)[0]
		if !first.Result.TimedOut() {
			t.Fatalf("first delivery ended %+v, want a timeout", first.Result)
		}
		if running(pid) {
			t.Errorf("the timed-out runtime (pid %d) is still running", pid)
		}
		clock.Advance(31 * time.Minute) // the message's visibility timeout passes
		wait(t, func() string { return "the redelivery" }, func() bool {
			return len(invocations(h, "silo-reconciler", SourceSQS, nil)) == 2
		})
		second := invocations(h, "silo-reconciler", SourceSQS, nil)[1]
		if second.Result.Failed() || !strings.Contains(string(second.Payload), `"ApproximateReceiveCount":"2"`) {
			t.Errorf("redelivery %+v %s, want it handled on its second receive", second.Result, second.Payload)
		}
		wait(t, func() string { return "the message's deletion" }, func() bool { return h.Stats().Queues[src.QueueARN].Deleted == 1 })
		want := QueueStats{Received: 2, Redelivered: 1, Failed: 1, Deleted: 1}
		if got := h.Stats().Queues[src.QueueARN]; got != want {
			t.Errorf("queue stats %+v, want %+v", got, want)
		}
		st := h.Function("silo-reconciler").Stats()
		if st.Timeouts != 1 || st.Environments < 2 {
			t.Errorf("reconciler stats %+v, want one timeout and a new environment after it", st)
		}
	})

	t.Run("a killed runtime fails its invocation and the next one runs anew", func(t *testing.T) {
		fn := h.Function("silo-prober")
		done := make(chan *Result, 1)
		go func() {
			res, err := fn.Invoke(context.WithoutCancel(t.Context()), SourceDirect, []byte(`{"sleep": 50}`))
			if err != nil {
				res = &Result{Error: "harness: " + err.Error()}
			}
			done <- res
		}()
		pid := readPID(t, probeDir)
		if n := fn.KillRuntimes(); n != 1 {
			t.Fatalf("killed %d runtimes, want the one sleeping", n)
		}
		var res *Result
		select {
		case res = <-done:
		case <-time.After(time.Minute):
			t.Fatal("the killed invocation did not end")
		}
		if res.Error != ErrorExit || running(pid) {
			t.Errorf("killed invocation ended %+v (pid %d running %v), want %s", res, pid, running(pid), ErrorExit)
		}
		res, err := fn.Invoke(t.Context(), SourceDirect, []byte(`{"sleep": 0}`))
		if err != nil || res.Failed() || string(res.Payload) != `{"slept":0}` {
			t.Errorf("the next invocation: %+v %v", res, err)
		}
		if st := fn.Stats(); st.Crashes != 1 {
			t.Errorf("prober stats %+v, want one crash", st)
		}
	})

	t.Run("nothing is left when the harness closes", func(t *testing.T) {
		if _, err := exec.LookPath("pgrep"); err != nil {
			t.Fatalf("pgrep: %v (apt-get install procps)", err)
		}
		work := h.workDir
		if out := pgrep(t, work); len(out) == 0 {
			t.Fatalf("no process of the harness under %s while it runs", work)
		}
		h.Close()
		if out := pgrep(t, work); len(out) > 0 {
			t.Errorf("processes left after Close:\n%s", strings.Join(out, "\n"))
		}
		if _, err := os.Stat(work); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("work directory %s left: %v", work, err)
		}
	})
}

// pgrep lists the processes whose command line mentions dir (the
// harness's working directory, where every bootstrap it runs lives).
func pgrep(t *testing.T, dir string) []string {
	t.Helper()
	out, err := exec.Command("pgrep", "-a", "-f", "--", regexp.QuoteMeta(dir+"/")).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 {
			return nil
		}
		t.Fatalf("pgrep: %v", err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}
