package awsx

import (
	"slices"
	"strings"
)

// regions lists the commercial AWS region codes silo accepts for tenants.
// Kept as data so a new region is a one-line change.
var regions = []string{
	"af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
	"ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
	"ap-southeast-4", "ap-southeast-5", "ap-southeast-7", "ca-central-1", "ca-west-1",
	"eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1",
	"eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1", "mx-central-1",
	"sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
}

// MaxRegionLen is the length of the longest codes in regions (every
// ap-northeast-N and ap-southeast-N). Names that carry a region are sized
// for it (registry.MaxNewIDLen); a test keeps it equal to the list's
// longest, so a longer new region shows up as a smaller id budget, not as
// a tenant whose bucket name AWS refuses.
const MaxRegionLen = 14

// KnownRegion reports whether code is a commercial AWS region.
func KnownRegion(code string) bool { return slices.Contains(regions, code) }

// Regions returns the known region codes, sorted.
func Regions() []string { return slices.Clone(regions) }

// ARNPartition is the partition of an ARN ("aws" for "arn:aws:iam::…",
// "aws-cn", "aws-us-gov"), or "aws" when arn is not one: the caller's
// identity (sts:GetCallerIdentity) names the partition silo runs in.
func ARNPartition(arn string) string {
	if parts := strings.SplitN(arn, ":", 3); len(parts) == 3 && parts[0] == "arn" && parts[1] != "" {
		return parts[1]
	}
	return "aws"
}
