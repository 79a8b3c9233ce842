// Package guardrails defines silo's service control policies (SCPs) as Go
// values and applies them to the tenant OUs through AWS Organizations.
//
// The documents are data, not JSON files, so that tests can check every
// invariant (size under the SCP quota, unique statement ids, valid JSON) and
// the allowed regions come from configuration rather than a hand-edited file.
package guardrails

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/silo-saas/silo/internal/awsx"
)

// MaxPolicySize is the Organizations quota on an SCP document, in characters
// (whitespace counts, so documents are sent minified).
const MaxPolicySize = 5120

// OU paths, below the organization root, that the guardrails target.
const (
	OUProduction = "Tenants/Production"
	OUPreview    = "Tenants/Preview"
)

// TenantOUs are the OUs every tenant account lives in.
var TenantOUs = []string{OUProduction, OUPreview}

// PreviewSpendGuard is the name of the SCP that only Tenants/Preview gets.
const PreviewSpendGuard = "silo-preview-spend-guard"

// globalServices are the services whose calls go to us-east-1 (or have no
// region) whatever region the caller works in; the region guardrail must not
// deny them or IAM, billing and DNS stop working in every allowed region.
var globalServices = []string{
	"a4b:*", "account:*", "aws-marketplace:*", "aws-portal:*", "budgets:*", "ce:*",
	"chime:*", "cloudfront:*", "cur:*", "globalaccelerator:*", "health:*", "iam:*",
	"importexport:*", "kms:*", "networkmanager:*", "organizations:*", "pricing:*",
	"route53:*", "route53domains:*", "route53-recovery-cluster:*",
	"route53-recovery-control-config:*", "route53-recovery-readiness:*", "s3:GetAccountPublic*",
	"s3:ListAllMyBuckets", "s3:ListMultiRegionAccessPoints", "s3:PutAccountPublic*",
	"shield:*", "sts:*", "support:*", "supportplans:*", "trustedadvisor:*", "waf:*",
	"wafv2:*", "wellarchitected:*",
}

// Statement is one IAM policy statement. SCPs support only Allow/Deny with
// Action or NotAction, Resource and Condition (no Principal).
type Statement struct {
	Sid       string                         `json:"Sid"`
	Effect    string                         `json:"Effect"`
	Action    []string                       `json:"Action,omitempty"`
	NotAction []string                       `json:"NotAction,omitempty"`
	Resource  []string                       `json:"Resource"`
	Condition map[string]map[string][]string `json:"Condition,omitempty"`
}

// Document is an IAM policy document.
type Document struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Policy is one SCP with where it goes.
type Policy struct {
	// Name is the policy's name in Organizations; silo finds it by name.
	Name        string
	Description string
	// Targets lists OU paths ("Tenants/Production") the policy is attached to.
	Targets  []string
	Document Document
}

// JSON returns the minified document, as sent to Organizations.
func (p Policy) JSON() (string, error) {
	b, err := json.Marshal(p.Document)
	if err != nil {
		return "", fmt.Errorf("marshal policy %s: %w", p.Name, err)
	}
	return string(b), nil
}

// Options configure Policies.
type Options struct {
	// AllowedRegions are the regions tenants may use; required.
	AllowedRegions []string
	// MemberRole is the role the management account assumes in members;
	// awsx.MemberRole when empty.
	MemberRole string
	// Partition of ARNs; "aws" when empty.
	Partition string
}

// ErrNoRegions means Options.AllowedRegions is empty: the region guardrail
// would deny every regional call.
var ErrNoRegions = errors.New("guardrails: no allowed regions")

// Policies returns silo's SCPs for o, in a stable order.
func Policies(o Options) ([]Policy, error) {
	if len(o.AllowedRegions) == 0 {
		return nil, ErrNoRegions
	}
	for _, r := range o.AllowedRegions {
		if !awsx.KnownRegion(r) {
			return nil, fmt.Errorf("guardrails: unknown region %q", r)
		}
	}
	role := o.MemberRole
	if role == "" {
		role = awsx.MemberRole
	}
	partition := o.Partition
	if partition == "" {
		partition = "aws"
	}
	// Any account's copy of the member role: SCPs are written once for all
	// member accounts.
	roleArn := fmt.Sprintf("arn:%s:iam::*:role/%s", partition, role)
	regions := slices.Clone(o.AllowedRegions)
	slices.Sort(regions)
	all := []string{"*"}
	targets := slices.Clone(TenantOUs)

	return []Policy{
		{
			Name:        "silo-deny-leave-organization",
			Description: "Tenant accounts cannot leave the organization.",
			Targets:     targets,
			Document: doc(Statement{
				Sid: "DenyLeaveOrganization", Effect: "Deny",
				Action: []string{"organizations:LeaveOrganization"}, Resource: all,
			}),
		},
		{
			Name:        "silo-protect-security-services",
			Description: "Tenant accounts cannot stop or delete CloudTrail, AWS Config or GuardDuty.",
			Targets:     targets,
			Document: doc(
				Statement{Sid: "DenyCloudTrailChanges", Effect: "Deny", Resource: all, Action: []string{
					"cloudtrail:DeleteTrail", "cloudtrail:StopLogging", "cloudtrail:UpdateTrail",
					"cloudtrail:PutEventSelectors", "cloudtrail:DeleteEventDataStore",
					"cloudtrail:StopEventDataStoreIngestion",
				}},
				Statement{Sid: "DenyConfigChanges", Effect: "Deny", Resource: all, Action: []string{
					"config:DeleteConfigurationRecorder", "config:StopConfigurationRecorder",
					"config:DeleteDeliveryChannel", "config:DeleteRetentionConfiguration",
					"config:PutConfigurationRecorder", "config:PutDeliveryChannel",
				}},
				Statement{Sid: "DenyGuardDutyChanges", Effect: "Deny", Resource: all, Action: []string{
					"guardduty:DeleteDetector", "guardduty:UpdateDetector",
					"guardduty:DisassociateFromMasterAccount", "guardduty:DisassociateFromAdministratorAccount",
					"guardduty:DeleteMembers", "guardduty:DisassociateMembers",
					"guardduty:StopMonitoringMembers", "guardduty:CreateFilter", "guardduty:UpdateFilter",
					"guardduty:DeletePublishingDestination",
				}},
			),
		},
		{
			Name:        "silo-allowed-regions",
			Description: "Tenant accounts work only in the allowed regions; global services are exempt.",
			Targets:     targets,
			Document: doc(Statement{
				Sid: "DenyOutsideAllowedRegions", Effect: "Deny",
				NotAction: slices.Clone(globalServices), Resource: all,
				Condition: map[string]map[string][]string{
					"StringNotEquals": {"aws:RequestedRegion": regions},
				},
			}),
		},
		{
			// The management account reaches a member only through the member
			// role itself (AssumeRole from management), so "only the
			// management account may change the role" is "only the role may
			// change itself". Nobody else in the account can assume it: its
			// trust policy names the management account. PassRole is denied
			// too, or a tenant could hand the role to a function and act as it.
			Name:        "silo-protect-member-role",
			Description: "Only the management account, through " + role + ", may change or pass that role.",
			Targets:     targets,
			Document: doc(Statement{
				Sid: "DenyMemberRoleChanges", Effect: "Deny",
				Action: []string{
					"iam:AttachRolePolicy", "iam:DeleteRole", "iam:DeleteRolePermissionsBoundary",
					"iam:DeleteRolePolicy", "iam:DetachRolePolicy", "iam:PassRole",
					"iam:PutRolePermissionsBoundary", "iam:PutRolePolicy", "iam:TagRole",
					"iam:UntagRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole",
					"iam:UpdateRoleDescription",
				},
				Resource: []string{roleArn},
				Condition: map[string]map[string][]string{
					"ArnNotLike": {"aws:PrincipalArn": {roleArn}},
				},
			}),
		},
		{
			Name:        "silo-deny-root-user",
			Description: "The root user of a tenant account can do nothing; people and silo use roles.",
			Targets:     targets,
			Document: doc(Statement{
				Sid: "DenyRootUser", Effect: "Deny", Action: all, Resource: all,
				Condition: map[string]map[string][]string{
					"ArnLike": {"aws:PrincipalArn": {fmt.Sprintf("arn:%s:iam::*:root", partition)}},
				},
			}),
		},
		spendGuard(),
	}, nil
}

// spendGuard is the Preview OU's extra SCP. A preview account is leased by
// a pull request for hours and then reset for the next one, and the reset
// inventories only what the tenant app can create (functions, log groups,
// tables, buckets, secrets, keys): anything else would outlive the lease,
// unseen and billed. So the guard denies starting what the app never uses
// (it runs on Lambda, API Gateway, DynamoDB on demand, S3, KMS, Secrets
// Manager and CloudWatch Logs) and buying anything that outlasts a lease.
//
// It denies creating, never deleting or reading, so the reset can still
// remove whatever got in some other way. No principal is exempt: silo itself
// needs none of it. Service-linked roles ignore SCPs, so the guard denies
// the call that starts a service (CreateAutoScalingGroup, CreateNodegroup),
// not only the EC2 calls that service would make. docs/previews.md gives
// the reason for every action; a test keeps the two lists equal.
func spendGuard() Policy {
	all := []string{"*"}
	return Policy{
		Name:        PreviewSpendGuard,
		Description: "Preview accounts cannot start expensive or long-lived resources the tenant app never uses, buy commitments, or make data undeletable.",
		Targets:     []string{OUPreview},
		Document: doc(
			Statement{Sid: "DenyPreviewCompute", Effect: "Deny", Resource: all, Action: []string{
				"ec2:RunInstances", "ec2:RequestSpotInstances", "ec2:RequestSpotFleet", "ec2:CreateFleet",
				"ec2:AllocateHosts", "autoscaling:CreateAutoScalingGroup", "batch:CreateComputeEnvironment",
				"ecs:CreateService", "ecs:RunTask", "ecs:StartTask", "eks:CreateCluster", "eks:CreateNodegroup",
				"lightsail:CreateInstances", "workspaces:CreateWorkspaces", "lambda:PutProvisionedConcurrencyConfig",
			}},
			Statement{Sid: "DenyPreviewNetworking", Effect: "Deny", Resource: all, Action: []string{
				"ec2:CreateNatGateway", "ec2:CreateTransitGateway", "ec2:CreateVpnConnection",
				"elasticloadbalancing:CreateLoadBalancer", "globalaccelerator:CreateAccelerator",
			}},
			Statement{Sid: "DenyPreviewDataServices", Effect: "Deny", Resource: all, Action: []string{
				"rds:Create*", "rds:Restore*", "redshift:CreateCluster", "redshift:RestoreFromClusterSnapshot",
				"redshift-serverless:CreateWorkgroup", "elasticache:Create*", "memorydb:CreateCluster",
				"es:CreateDomain", "es:CreateElasticsearchDomain", "aoss:CreateCollection",
				"kafka:CreateCluster", "kafka:CreateClusterV2", "mq:CreateBroker", "fsx:CreateFileSystem",
				"dms:CreateReplicationInstance", "elasticmapreduce:RunJobFlow", "emr-serverless:CreateApplication",
				"glue:CreateDevEndpoint", "glue:CreateSession", "glue:StartJobRun",
			}},
			Statement{Sid: "DenyPreviewMachineLearning", Effect: "Deny", Resource: all, Action: []string{
				"sagemaker:Create*", "sagemaker:Start*", "bedrock:CreateModelCustomizationJob",
			}},
			Statement{Sid: "DenyPreviewCommitments", Effect: "Deny", Resource: all, Action: []string{
				"ec2:PurchaseReservedInstancesOffering", "ec2:PurchaseHostReservation", "ec2:PurchaseCapacityBlock",
				"ec2:CreateCapacityReservation", "rds:PurchaseReservedDBInstancesOffering",
				"redshift:PurchaseReservedNodeOffering", "elasticache:PurchaseReservedCacheNodesOffering",
				"es:PurchaseReservedInstanceOffering", "memorydb:PurchaseReservedNodesOffering",
				"dynamodb:PurchaseReservedCapacityOfferings", "savingsplans:CreateSavingsPlan",
				"bedrock:CreateProvisionedModelThroughput", "shield:CreateSubscription",
				"route53domains:RegisterDomain", "route53domains:TransferDomain", "aws-marketplace:Subscribe",
				"aws-marketplace:CreateAgreementRequest", "aws-marketplace:AcceptAgreementRequest",
				"outposts:CreateOrder",
			}},
			// The reset must be able to delete everything and hand the next
			// pull request a clean account: no locks, no credentials that
			// outlive the lease (the reset does not look for IAM users).
			Statement{Sid: "DenyPreviewLeftovers", Effect: "Deny", Resource: all, Action: []string{
				"s3:PutBucketObjectLockConfiguration", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
				"backup:PutBackupVaultLockConfiguration", "glacier:CompleteVaultLock",
				"iam:CreateUser", "iam:CreateAccessKey",
			}},
		),
	}
}

func doc(s ...Statement) Document { return Document{Version: "2012-10-17", Statement: s} }
