// Package stacksets publishes the tenant template and code artifacts and
// manages the StackSet and its instances.
//
// The tenant template is synthesized from cdk/tenantapp by `make synth` and
// committed here; it is embedded so the control plane needs neither CDK nor
// Node at run time. A test in cdk/tenantapp fails when it is stale.
package stacksets

import (
	_ "embed"
	"slices"
)

//go:embed tenantapp.template.json
var tenantTemplate []byte

// TenantTemplateFile is the committed template's path, relative to the
// repository root.
const TenantTemplateFile = "stacksets/tenantapp.template.json"

// TenantTemplate returns the tenant stack's CloudFormation template (JSON).
// The caller owns the returned slice.
func TenantTemplate() []byte { return slices.Clone(tenantTemplate) }
