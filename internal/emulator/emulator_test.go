package emulator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-cmp/cmp"
)

var emu *Emulator

func TestMain(m *testing.M) {
	// The child half of TestParentDeathStopsEmulator: start an emulator,
	// report its pid, then wait to be killed.
	if os.Getenv("SILO_EMULATOR_CHILD") == "1" {
		e, err := Start(context.Background(), nil)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("pid", e.cmd.Process.Pid)
		select {}
	}
	os.Exit(RunTests(m, &emu))
}

func TestSeedLooksLikeManagementAccount(t *testing.T) {
	ctx := context.Background()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(id.Arn), "arn:aws:iam::"+o.ManagementAccountID+":user/"+AdminUser; got != want {
		t.Errorf("caller = %s, want %s", got, want)
	}
	if strings.HasPrefix(o.AccessKeyID, "test") {
		t.Errorf("access key %q is a placeholder, want a real IAM key", o.AccessKeyID)
	}

	org := organizations.NewFromConfig(cfg)
	desc, err := org.DescribeOrganization(ctx, &organizations.DescribeOrganizationInput{})
	if err != nil {
		t.Fatal(err)
	}
	if fs := desc.Organization.FeatureSet; fs != "ALL" {
		t.Errorf("feature set = %s, want ALL", fs)
	}
	// Walk the tree from the root and compare paths with what Seed reported.
	got := map[string]string{}
	var walk func(parent, prefix string)
	walk = func(parent, prefix string) {
		p := organizations.NewListOrganizationalUnitsForParentPaginator(org, &organizations.ListOrganizationalUnitsForParentInput{ParentId: aws.String(parent)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, ou := range page.OrganizationalUnits {
				path := prefix + aws.ToString(ou.Name)
				got[path] = aws.ToString(ou.Id)
				walk(aws.ToString(ou.Id), path+"/")
			}
		}
	}
	walk(o.RootID, "")
	if diff := cmp.Diff(o.OUs, got); diff != "" {
		t.Errorf("OU tree (-seeded +found):\n%s", diff)
	}
	for _, path := range []string{OUProduction, OUPreview, OUSuspended, OUPool} {
		if got[path] == "" {
			t.Errorf("OU %s missing", path)
		}
	}
}

func TestResetClearsState(t *testing.T) {
	ctx := context.Background()
	o := emu.ResetT(t)
	cfg, _ := o.Config(ctx, nil)
	if _, err := organizations.NewFromConfig(cfg).CreateAccount(ctx, &organizations.CreateAccountInput{
		AccountName: aws.String("leftover"), Email: aws.String("leftover@example.com"),
	}); err != nil {
		t.Fatal(err)
	}
	o2 := emu.ResetT(t)
	cfg2, _ := o2.Config(ctx, nil)
	out, err := organizations.NewFromConfig(cfg2).ListAccounts(ctx, &organizations.ListAccountsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Accounts) != 1 {
		t.Errorf("after reset: %d accounts, want only the management account", len(out.Accounts))
	}
}

func TestStopEndsProcess(t *testing.T) {
	e, err := Start(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	pid := e.cmd.Process.Pid
	e.Stop()
	e.Stop() // idempotent
	select {
	case <-e.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if alive(pid) {
		t.Errorf("emulator pid %d still alive after Stop", pid)
	}
}

func TestParentDeathStopsEmulator(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "SILO_EMULATOR_CHILD=1")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var word string
	var pid int
	if _, err := fmt.Fscan(stdout, &word, &pid); err != nil || word != "pid" {
		_ = cmd.Process.Kill()
		t.Fatalf("child did not report the emulator pid: %v %q", err, word)
	}
	if !alive(pid) {
		t.Fatalf("emulator %d not running in child", pid)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("emulator %d outlived its killed parent", pid)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-t.Context().Done():
			return
		}
	}
}

func TestMissingEmulatorGivesInstallHint(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Start(context.Background(), nil)
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("err = %v, want ErrNotInstalled", err)
	}
	if !strings.Contains(err.Error(), "pip install") {
		t.Errorf("error %q has no install hint", err)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
