package stacksets

import (
	"encoding/json"
	"testing"
)

func TestTenantTemplateIsSelfContained(t *testing.T) {
	var tpl struct {
		Parameters map[string]any
		Resources  map[string]any
		Rules      map[string]any
		Outputs    map[string]any
	}
	if err := json.Unmarshal(TenantTemplate(), &tpl); err != nil {
		t.Fatalf("embedded template: %v", err)
	}
	for _, p := range []string{"TenantId", "AppVersion", "Tier", "CodeBucket", "CodeKey", "JwtIssuer", "JwtAudience"} {
		if _, ok := tpl.Parameters[p]; !ok {
			t.Errorf("parameter %s missing", p)
		}
	}
	if _, ok := tpl.Parameters["BootstrapVersion"]; ok {
		t.Error("template depends on CDK bootstrap")
	}
	if len(tpl.Rules) != 0 {
		t.Errorf("template has rules: %v", tpl.Rules)
	}
	if _, ok := tpl.Outputs["ApiUrl"]; !ok {
		t.Error("output ApiUrl missing")
	}
	b := TenantTemplate()
	b[0] = 'x'
	if TenantTemplate()[0] == 'x' {
		t.Error("TenantTemplate returns shared memory")
	}
}
