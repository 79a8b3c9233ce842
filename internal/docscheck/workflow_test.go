package docscheck

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

const (
	workflowFile = "../../docs/github-actions/preview.yml"
	previewsPage = "../../docs/previews.md"
)

// workflow is the part of a GitHub Actions workflow the test looks at.
type workflow struct {
	On struct {
		PullRequest struct {
			Types []string `yaml:"types"`
		} `yaml:"pull_request"`
	} `yaml:"on"`
	Permissions map[string]string `yaml:"permissions"`
	Concurrency struct {
		Group            string `yaml:"group"`
		CancelInProgress *bool  `yaml:"cancel-in-progress"`
	} `yaml:"concurrency"`
	Jobs map[string]job `yaml:"jobs"`
}

type job struct {
	If             string `yaml:"if"`
	TimeoutMinutes int    `yaml:"timeout-minutes"`
	Steps          []step `yaml:"steps"`
}

type step struct {
	ID   string            `yaml:"id"`
	Name string            `yaml:"name"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	With map[string]string `yaml:"with"`
	Env  map[string]string `yaml:"env"`
}

func readWorkflow(t *testing.T) ([]byte, workflow) {
	t.Helper()
	b, err := os.ReadFile(workflowFile)
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&w); err != nil {
		t.Fatalf("%s: %v", workflowFile, err)
	}
	return b, w
}

// runStep returns the step of j whose run line starts with prefix.
func runStep(t *testing.T, j job, prefix string) step {
	t.Helper()
	for _, s := range j.Steps {
		if strings.HasPrefix(strings.TrimSpace(s.Run), prefix) {
			return s
		}
	}
	t.Fatalf("no step runs %q", prefix)
	return step{}
}

func TestWorkflowTriggersAndSettings(t *testing.T) {
	_, w := readWorkflow(t)
	if diff := cmp.Diff([]string{"opened", "synchronize", "reopened", "closed"}, w.On.PullRequest.Types); diff != "" {
		t.Errorf("pull_request types (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"contents": "read", "pull-requests": "write"}, w.Permissions); diff != "" {
		t.Errorf("permissions (-want +got):\n%s", diff)
	}
	if w.Concurrency.Group != "preview-${{ github.event.number }}" {
		t.Errorf("concurrency group %q", w.Concurrency.Group)
	}
	if c := w.Concurrency.CancelInProgress; c == nil || *c {
		t.Error("cancel-in-progress must be false: a cancelled deploy leaves a half-made preview")
	}
	var names []string
	for name := range w.Jobs {
		names = append(names, name)
	}
	slices.Sort(names)
	if diff := cmp.Diff([]string{"preview", "release"}, names); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
}

func TestWorkflowUp(t *testing.T) {
	_, w := readWorkflow(t)
	j := w.Jobs["preview"]
	if j.If != "github.event.action != 'closed'" {
		t.Errorf("preview job if = %q, want it to skip closed", j.If)
	}
	up := runStep(t, j, "silo preview up")
	if up.ID != "up" {
		t.Errorf("up step id %q, want up (the comment reads steps.up.outputs)", up.ID)
	}
	tests := []struct{ name, want string }{
		{"repo", `--repo "${{ github.repository }}"`},
		{"pr", `--pr "${{ github.event.number }}"`},
		{"artifact", `--artifact dist/tenantapp.zip`},
		{"ttl", `--ttl 24h`},
		{"wait", `--wait`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !hasArg(up.Run, tc.want) {
				t.Errorf("up runs %q, without %s", up.Run, tc.want)
			}
		})
	}
	if strings.Contains(up.Run, "\n") {
		t.Errorf("up command spans lines (a folded scalar gives one line): %q", up.Run)
	}
	// up --wait must give up with its own message (where the build stands)
	// before GitHub cancels the job, with time left for the steps before
	// it (checkout, build, install).
	m := regexp.MustCompile(`(^|\s)--timeout (\S+)`).FindStringSubmatch(up.Run)
	if m == nil {
		t.Errorf("up runs %q, without --timeout: the job's timeout-minutes would cut the wait short with no reason", up.Run)
	} else if d, err := time.ParseDuration(m[2]); err != nil || d+5*time.Minute > time.Duration(j.TimeoutMinutes)*time.Minute {
		t.Errorf("up --timeout %s (%v) leaves less than 5 minutes of the job's timeout-minutes %d", m[2], err, j.TimeoutMinutes)
	}
	wantEnv := map[string]string{"SILO_API": "${{ vars.SILO_API_URL }}", "SILO_TOKEN": "${{ secrets.SILO_TOKEN }}"}
	if diff := cmp.Diff(wantEnv, up.Env); diff != "" {
		t.Errorf("up env (-want +got):\n%s", diff)
	}

	// The build runs the pull request's code: it must not see the token.
	build := runStep(t, j, "make ")
	if _, ok := build.Env["SILO_TOKEN"]; ok {
		t.Error("the build step gets SILO_TOKEN")
	}
	upAt, buildAt, commentAt := -1, -1, -1
	for i, s := range j.Steps {
		switch {
		case s.ID == "up":
			upAt = i
		case s.Run == build.Run:
			buildAt = i
		case strings.HasPrefix(s.Uses, "actions/github-script@"):
			commentAt = i
			script := s.With["script"] + s.Env["URL"] + s.Env["ACCOUNT_ID"]
			for _, out := range []string{"steps.up.outputs.url", "steps.up.outputs.account_id"} {
				if !strings.Contains(script, out) {
					t.Errorf("the comment step does not use %s", out)
				}
			}
		}
	}
	if !(buildAt < upAt && upAt < commentAt) {
		t.Errorf("steps out of order: build %d, up %d, comment %d", buildAt, upAt, commentAt)
	}
	var setupGo step
	for _, s := range j.Steps {
		if strings.HasPrefix(s.Uses, "actions/setup-go@") {
			setupGo = s
		}
	}
	if setupGo.With["go-version-file"] != "go.mod" {
		t.Errorf("setup-go with %v, want go-version-file: go.mod", setupGo.With)
	}
	install := runStep(t, j, "go install ")
	if install.Run != "go install github.com/silo-saas/silo/cmd/silo@${{ vars.SILO_VERSION }}" {
		t.Errorf("install runs %q", install.Run)
	}
}

func TestWorkflowDown(t *testing.T) {
	_, w := readWorkflow(t)
	j := w.Jobs["release"]
	if j.If != "github.event.action == 'closed'" {
		t.Errorf("release job if = %q, want it to run on closed only", j.If)
	}
	down := runStep(t, j, "silo preview down")
	for _, want := range []string{`--repo "${{ github.repository }}"`, `--pr "${{ github.event.number }}"`} {
		if !hasArg(down.Run, want) {
			t.Errorf("down runs %q, without %s", down.Run, want)
		}
	}
	if down.Env["SILO_TOKEN"] != "${{ secrets.SILO_TOKEN }}" || down.Env["SILO_API"] != "${{ vars.SILO_API_URL }}" {
		t.Errorf("down env %v", down.Env)
	}
}

// hasArg reports whether the command line cmd contains arg as whole words.
func hasArg(cmd, arg string) bool {
	return regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(arg) + `(\s|$)`).MatchString(cmd)
}

// TestWorkflowInlineMatchesFile: the workflow in docs/previews.md ("GitHub
// Actions") is the file, byte for byte, so copying either gives the same.
func TestWorkflowInlineMatchesFile(t *testing.T) {
	file, _ := readWorkflow(t)
	page, err := os.ReadFile(previewsPage)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := bytes.Cut(page, []byte("\n## GitHub Actions\n"))
	if !ok {
		t.Fatalf("%s has no GitHub Actions section", previewsPage)
	}
	if next := bytes.Index(section, []byte("\n## ")); next >= 0 {
		section = section[:next]
	}
	_, block, ok := bytes.Cut(section, []byte("\n```yaml\n"))
	if !ok {
		t.Fatalf("%s: no yaml block in the GitHub Actions section", previewsPage)
	}
	block, _, ok = bytes.Cut(block, []byte("\n```\n"))
	if !ok {
		t.Fatalf("%s: the yaml block is not closed", previewsPage)
	}
	block = append(block, '\n')
	if !bytes.Equal(block, file) {
		t.Errorf("the workflow in %s differs from %s:\n%s", previewsPage, workflowFile, cmp.Diff(string(file), string(block)))
	}
}
