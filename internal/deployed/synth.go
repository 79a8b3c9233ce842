package deployed

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/silo-saas/silo/cdk/controlplane"
)

// synthSpec is what a synthesis depends on: the zips (by content), the
// architecture, and the account and region the stack is pinned to, as
// `cdk deploy` pins it to the credentials' account.
type synthSpec struct {
	cache           string
	a               *artifacts
	account, region string
}

// assembly is a synthesized cloud assembly, read as the CDK CLI reads it.
type assembly struct {
	dir string
	// stack is the control-plane stack's artifact.
	stackName    string
	templateFile string
	// bootstrapParameter and bootstrapVersion are the SSM parameter that
	// holds the account's CDK bootstrap version and the least version
	// the stack needs.
	bootstrapParameter string
	bootstrapVersion   int
	// files are the file assets to publish before the stack is created.
	files []fileAsset
}

// fileAsset is one file of the asset manifest and where it goes.
type fileAsset struct {
	path           string // absolute
	bucket, object string
}

// synth synthesizes the control-plane stack into a cloud assembly, or
// returns the one a previous run made from the same inputs. The inputs
// are the zips' content, the architecture, account and region, and the
// running executable (whose compiled-in CDK code defines the stack).
func synth(s synthSpec) (*assembly, error) {
	key, err := synthKey(s)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.cache, "synth", key)
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
		touch(dir)
		return readAssembly(dir)
	}
	unlock, err := lock(s.cache)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
		return readAssembly(dir) // another harness made it while we waited
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.cache), ".synth-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	code := filepath.Join(tmp, "code")
	if err := os.MkdirAll(code, 0o755); err != nil {
		return nil, err
	}
	for fn, z := range s.a.zips {
		if err := copyFile(z, filepath.Join(code, fn+".zip")); err != nil {
			return nil, err
		}
	}
	if err := cdkSynth(filepath.Join(tmp, "out"), controlplane.Props{
		CodeDir:      code,
		Architecture: s.a.arch,
		Env:          &awscdk.Environment{Account: jsii.String(s.account), Region: jsii.String(s.region)},
	}); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(tmp, "out"), dir); err != nil {
		return nil, fmt.Errorf("keep the synthesized stack: %w", err)
	}
	if err := prune(filepath.Dir(dir), keepSyntheses); err != nil {
		return nil, err
	}
	return readAssembly(dir)
}

// cdkSynth runs the CDK app in this process (jsii starts Node) and stops
// Node afterwards: a harness synthesizes once, then runs for a long time.
func cdkSynth(out string, p controlplane.Props) (err error) {
	defer jsii.Close()
	defer func() {
		// jsii reports a failed synthesis (a construct's validation) as a
		// panic.
		if r := recover(); r != nil {
			err = fmt.Errorf("synthesize the control-plane stack: %v", r)
		}
	}()
	if _, err := controlplane.Synth(out, p); err != nil {
		return fmt.Errorf("synthesize the control-plane stack: %w", err)
	}
	return nil
}

// synthKey names a synthesis by its inputs.
func synthKey(s synthSpec) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "arch=%s account=%s region=%s\n", s.a.arch, s.account, s.region)
	for _, fn := range slices.Sorted(maps.Keys(s.a.sums)) {
		fmt.Fprintf(h, "%s=%s\n", fn, s.a.sums[fn])
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the running executable (its CDK code defines the stack): %w", err)
	}
	f, err := os.Open(exe)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", exe, err)
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// manifest is the part of a cloud assembly's manifest.json the harness
// reads, as the CDK CLI does.
type manifest struct {
	Artifacts map[string]struct {
		Type        string `json:"type"`
		Environment string `json:"environment"`
		Properties  struct {
			// Stack artifacts.
			TemplateFile                      string `json:"templateFile"`
			StackName                         string `json:"stackName"`
			RequiresBootstrapStackVersion     int    `json:"requiresBootstrapStackVersion"`
			BootstrapStackVersionSsmParameter string `json:"bootstrapStackVersionSsmParameter"`
			// Asset manifests.
			File string `json:"file"`
		} `json:"properties"`
	} `json:"artifacts"`
}

// assetManifest is an asset manifest (<stack>.assets.json).
type assetManifest struct {
	Files map[string]struct {
		Source struct {
			Path      string `json:"path"`
			Packaging string `json:"packaging"`
		} `json:"source"`
		Destinations map[string]struct {
			BucketName string `json:"bucketName"`
			ObjectKey  string `json:"objectKey"`
		} `json:"destinations"`
	} `json:"files"`
	DockerImages map[string]any `json:"dockerImages"`
}

// readAssembly reads the control-plane stack and its file assets from a
// cloud assembly.
func readAssembly(dir string) (*assembly, error) {
	var m manifest
	if err := readJSON(filepath.Join(dir, "manifest.json"), &m); err != nil {
		return nil, err
	}
	a := &assembly{dir: dir}
	for id, art := range m.Artifacts {
		switch art.Type {
		case "aws:cloudformation:stack":
			if a.templateFile != "" {
				return nil, fmt.Errorf("cloud assembly %s: two stacks (%s and %s); the harness deploys one", dir, a.stackName, id)
			}
			a.stackName = art.Properties.StackName
			if a.stackName == "" {
				a.stackName = id
			}
			a.templateFile = filepath.Join(dir, art.Properties.TemplateFile)
			a.bootstrapParameter = art.Properties.BootstrapStackVersionSsmParameter
			a.bootstrapVersion = art.Properties.RequiresBootstrapStackVersion
		case "cdk:asset-manifest":
			var am assetManifest
			if err := readJSON(filepath.Join(dir, art.Properties.File), &am); err != nil {
				return nil, err
			}
			if len(am.DockerImages) > 0 {
				return nil, fmt.Errorf("cloud assembly %s: container image assets are not supported", dir)
			}
			for hash, f := range am.Files {
				if f.Source.Packaging != "file" {
					return nil, fmt.Errorf("asset %s: packaging %q; the harness publishes files (zips are made before synthesis)", hash, f.Source.Packaging)
				}
				for _, d := range f.Destinations {
					a.files = append(a.files, fileAsset{path: filepath.Join(dir, f.Source.Path), bucket: d.BucketName, object: d.ObjectKey})
				}
			}
		}
	}
	if a.templateFile == "" {
		return nil, fmt.Errorf("cloud assembly %s has no stack", dir)
	}
	slices.SortFunc(a.files, func(x, y fileAsset) int { return strings.Compare(x.object, y.object) })
	return a, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
