// Package stacksets publishes the tenant template and code artifacts and
// manages the StackSet and its instances.
//
// The tenant template is synthesized from cdk/tenantapp by `make synth` and
// committed here; it is embedded so the control plane needs neither CDK nor
// Node at run time. A test in cdk/tenantapp fails when it is stale.
//
// Against the emulator (moto 5.2.1) StackSets differ from AWS in ways the
// code tolerates and the tests pin down: instance operations ignore the
// caller's OperationId (UpdateStackSet honours it), so re-issuing is made
// idempotent by looking for the instance first; an unknown operation id is
// a ValidationError, not OperationNotFound; DescribeStackInstance of a
// missing instance is a 500, so instances are listed instead; a
// self-managed instance's stack is named "StackSet:<name>" and its reported
// StackId names nothing; UpdateStackInstances changes only the instance's
// overrides, not the member stack (with Options.ApplyUpdates the manager
// updates it), and records a UsePreviousValue override as given, with an
// empty value, instead of resolving it; DeleteStackInstances ignores
// RetainStacks and deletes the stack (resources with DeletionPolicy Retain
// stay); operations are SUCCEEDED at once.
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
