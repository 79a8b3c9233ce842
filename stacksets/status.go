package stacksets

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"

	"github.com/silo-saas/silo/internal/awsx"
)

// OperationStatus describes the operation once, without waiting: what a
// caller that gave up waiting (a tenant past its deadline) reports. An
// unknown id is an error wrapping ErrNotFound.
func (m *Manager) OperationStatus(ctx context.Context, opID string) (Result, error) {
	out, err := m.cfn.DescribeStackSetOperation(ctx, &cloudformation.DescribeStackSetOperationInput{
		StackSetName: aws.String(m.opts.StackSetName), OperationId: aws.String(opID), CallAs: m.opts.CallAs,
	})
	if err != nil {
		unknown := awsx.IsNotFound(err)
		if !unknown && awsx.IsInvalid(err) {
			// moto answers ValidationError for an unknown id (see Wait).
			known, lerr := m.operationListed(ctx, opID)
			unknown = lerr == nil && !known
		}
		if unknown {
			return Result{}, fmt.Errorf("describe stack set operation %s: %w: %w", opID, ErrNotFound, err)
		}
		return Result{}, fmt.Errorf("describe stack set operation %s: %w", opID, err)
	}
	return result(out.StackSetOperation), nil
}
