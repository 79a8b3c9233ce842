// Package registry is silo's tenant registry: the tenant model, its states and
// allowed transitions, and their storage in one DynamoDB table with an audit
// history, idempotent creation and optimistic locking.
//
// Every write that changes a tenant is conditional on its version, so two
// writers racing on one tenant never lose an update: one wins, the other gets
// ErrConflict and re-reads.
package registry
