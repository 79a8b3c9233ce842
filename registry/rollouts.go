package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// Rollouts: one release taken across the fleet in waves. The rollout is a
// ROLLOUT#<id> item holding the plan, the waves and every gate decision;
// each tenant it covers has a ROLLOUT#<id> / TENANT#<tenant> item with the
// release it came from and how far it got. Everything the rollout engine
// knows is here, so a new engine resumes where a crashed one stopped.
//
// One rollout runs at a time (the stack set takes one operation at a time
// anyway): starting one also writes the ROLLOUT#ACTIVE lock in the same
// transaction, and the rollout's end deletes it in the same transaction
// as its final state.

// RolloutState is a rollout's state.
type RolloutState string

// The rollout states. Running, paused and rolling back are live; the rest
// are final.
const (
	RolloutRunning     RolloutState = "running"
	RolloutPaused      RolloutState = "paused"
	RolloutRollingBack RolloutState = "rolling_back"
	RolloutCompleted   RolloutState = "completed"
	RolloutRolledBack  RolloutState = "rolled_back"
	RolloutAborted     RolloutState = "aborted"
)

// Final reports whether the rollout has ended.
func (s RolloutState) Final() bool {
	return s == RolloutCompleted || s == RolloutRolledBack || s == RolloutAborted
}

// rolloutTransitions is the rollout's state machine.
var rolloutTransitions = map[RolloutState][]RolloutState{
	RolloutRunning:     {RolloutRunning, RolloutPaused, RolloutRollingBack, RolloutCompleted, RolloutAborted},
	RolloutPaused:      {RolloutPaused, RolloutRunning, RolloutRollingBack, RolloutAborted},
	RolloutRollingBack: {RolloutRollingBack, RolloutRolledBack},
}

// WavePhase is how far one wave got.
type WavePhase string

// The wave phases, in order; a wave ends passed or halted.
const (
	WavePending   WavePhase = "pending"
	WaveDeploying WavePhase = "deploying"
	WaveBaking    WavePhase = "baking"
	WaveGating    WavePhase = "gating"
	WavePassed    WavePhase = "passed"
	WaveHalted    WavePhase = "halted"
)

// Gate is one health gate's decision, with the figures it was made on.
type Gate struct {
	Pass bool `json:"pass" dynamodbav:"pass"`
	// Healthy, Unhealthy, DeployFailed and NoProbe count the wave's
	// tenants: up on a probe taken after their update, not up, whose
	// update failed, and with no probe after their update in time.
	Healthy      int `json:"healthy" dynamodbav:"healthy"`
	Unhealthy    int `json:"unhealthy" dynamodbav:"unhealthy"`
	DeployFailed int `json:"deploy_failed" dynamodbav:"deploy_failed"`
	NoProbe      int `json:"no_probe" dynamodbav:"no_probe"`
	// MaxFailures is the threshold the failures were compared with.
	MaxFailures int `json:"max_failures" dynamodbav:"max_failures"`
	// Why says it in a sentence.
	Why string    `json:"why" dynamodbav:"why"`
	At  time.Time `json:"at" dynamodbav:"at"`
}

// Failures is what the gate compares with MaxFailures.
func (g Gate) Failures() int { return g.Unhealthy + g.DeployFailed + g.NoProbe }

// Wave is one step of a rollout.
type Wave struct {
	Name string `json:"name" dynamodbav:"name"`
	// Tenants is how many tenants the wave covers.
	Tenants int       `json:"tenants" dynamodbav:"tenants"`
	Phase   WavePhase `json:"phase" dynamodbav:"phase"`
	// MaxConcurrency and FailureTolerance are the StackSet operation
	// preferences of the wave's update.
	MaxConcurrency   int `json:"max_concurrency" dynamodbav:"max_concurrency"`
	FailureTolerance int `json:"failure_tolerance" dynamodbav:"failure_tolerance"`
	// Operation is the id the wave's update is issued under (recorded
	// before it is issued).
	Operation  string     `json:"operation,omitempty" dynamodbav:"operation,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty" dynamodbav:"started_at,omitempty"`
	DeployedAt *time.Time `json:"deployed_at,omitempty" dynamodbav:"deployed_at,omitempty"`
	Gate       *Gate      `json:"gate,omitempty" dynamodbav:"gate,omitempty"`
}

// Note is one line of a rollout's log: a decision and why.
type Note struct {
	At   time.Time `json:"at" dynamodbav:"at"`
	Text string    `json:"text" dynamodbav:"text"`
}

// Rollout is one release's way across the fleet.
type Rollout struct {
	ID      string `json:"id"`
	Release string `json:"release"`
	// Plan is the wave plan as given ("canary:3,10%,50%,100%").
	Plan  string       `json:"plan"`
	State RolloutState `json:"state"`
	// Reason says why the rollout halted, was aborted or paused.
	Reason string `json:"reason,omitempty"`
	Waves  []Wave `json:"waves"`
	// Current is the index of the wave under way (or the last one).
	Current     int           `json:"current"`
	Bake        time.Duration `json:"bake"`
	GateTimeout time.Duration `json:"gate_timeout"`
	MaxFailures int           `json:"max_failures"`
	// AbortRequested asks the engine to stop once the wave in flight has
	// deployed; RollbackOnAbort makes that stop a rollback.
	AbortRequested  bool `json:"abort_requested,omitempty"`
	RollbackOnAbort bool `json:"rollback_on_abort,omitempty"`
	// Skipped counts tenants left out when the plan was made (pinned,
	// already on the release, not ACTIVE), by reason.
	Skipped   map[string]int `json:"skipped,omitempty"`
	Notes     []Note         `json:"notes,omitempty"`
	CreatedBy string         `json:"created_by"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	EndedAt   *time.Time     `json:"ended_at,omitempty"`
	Version   int64          `json:"version"`
}

// Tenants counts the tenants of every wave.
func (r *Rollout) Tenants() int {
	n := 0
	for _, w := range r.Waves {
		n += w.Tenants
	}
	return n
}

// RolloutTenantStatus is how far one tenant got in a rollout.
type RolloutTenantStatus string

// The per-tenant statuses.
const (
	RTPending     RolloutTenantStatus = "pending"
	RTUpdating    RolloutTenantStatus = "updating"
	RTUpdated     RolloutTenantStatus = "updated"
	RTHealthy     RolloutTenantStatus = "healthy"
	RTUnhealthy   RolloutTenantStatus = "unhealthy"
	RTFailed      RolloutTenantStatus = "failed"
	RTSkipped     RolloutTenantStatus = "skipped"
	RTRollingBack RolloutTenantStatus = "rolling_back"
	RTRolledBack  RolloutTenantStatus = "rolled_back"
)

// OnRelease reports whether a tenant in this status runs the rollout's
// release (and so is one a rollback must take back).
func (s RolloutTenantStatus) OnRelease() bool {
	return s == RTUpdated || s == RTHealthy || s == RTUnhealthy || s == RTRollingBack
}

// RolloutTenant is one tenant's part in a rollout.
type RolloutTenant struct {
	RolloutID string `json:"rollout_id" dynamodbav:"rollout_id"`
	TenantID  string `json:"tenant_id" dynamodbav:"tenant_id"`
	Tier      Tier   `json:"tier" dynamodbav:"tier"`
	Wave      int    `json:"wave" dynamodbav:"wave"`
	// From is the release the tenant ran before the rollout reached it.
	From   string              `json:"from" dynamodbav:"from"`
	Status RolloutTenantStatus `json:"status" dynamodbav:"status"`
	Reason string              `json:"reason,omitempty" dynamodbav:"reason,omitempty"`
	// UpdatedAt is when the tenant's update (or rollback) finished: the
	// gate only counts probes taken after it.
	UpdatedAt *time.Time `json:"updated_at,omitempty" dynamodbav:"updated_at,omitempty"`
	// Health is the probe the gate decided on.
	Health *Health `json:"health,omitempty" dynamodbav:"health,omitempty"`
}

const (
	prefixRollout    = "ROLLOUT#"
	rolloutListPK    = "ROLLOUTS"
	rolloutActiveKey = "ROLLOUT#ACTIVE"
)

// ErrRolloutActive: another rollout is under way.
var ErrRolloutActive = errors.New("another rollout is under way")

type rolloutItem struct {
	PK      string `dynamodbav:"pk"`
	SK      string `dynamodbav:"sk"`
	StatePK string `dynamodbav:"gsi1pk"`
	StateSK string `dynamodbav:"gsi1sk"`

	ID              string         `dynamodbav:"id"`
	Release         string         `dynamodbav:"release"`
	Plan            string         `dynamodbav:"plan"`
	State           string         `dynamodbav:"state"`
	Reason          string         `dynamodbav:"reason,omitempty"`
	Waves           []Wave         `dynamodbav:"waves"`
	Current         int            `dynamodbav:"current"`
	BakeMS          int64          `dynamodbav:"bake_ms"`
	GateTimeoutMS   int64          `dynamodbav:"gate_timeout_ms"`
	MaxFailures     int            `dynamodbav:"max_failures"`
	AbortRequested  bool           `dynamodbav:"abort_requested,omitempty"`
	RollbackOnAbort bool           `dynamodbav:"rollback_on_abort,omitempty"`
	Skipped         map[string]int `dynamodbav:"skipped,omitempty"`
	Notes           []Note         `dynamodbav:"notes,omitempty"`
	CreatedBy       string         `dynamodbav:"created_by"`
	CreatedAt       time.Time      `dynamodbav:"created_at"`
	UpdatedAt       time.Time      `dynamodbav:"updated_at"`
	EndedAt         *time.Time     `dynamodbav:"ended_at,omitempty"`
	Version         int64          `dynamodbav:"version"`
}

func (r *Rollout) item() rolloutItem {
	return rolloutItem{
		PK: prefixRollout + r.ID, SK: skMeta,
		// Listed newest first on the by-state index, under one key.
		StatePK: rolloutListPK, StateSK: sortTime(r.CreatedAt) + "#" + r.ID,
		ID: r.ID, Release: r.Release, Plan: r.Plan, State: string(r.State), Reason: r.Reason,
		Waves: r.Waves, Current: r.Current, BakeMS: r.Bake.Milliseconds(), GateTimeoutMS: r.GateTimeout.Milliseconds(),
		MaxFailures: r.MaxFailures, AbortRequested: r.AbortRequested, RollbackOnAbort: r.RollbackOnAbort,
		Skipped: r.Skipped, Notes: r.Notes, CreatedBy: r.CreatedBy,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, EndedAt: r.EndedAt, Version: r.Version,
	}
}

func (it rolloutItem) rollout() *Rollout {
	return &Rollout{
		ID: it.ID, Release: it.Release, Plan: it.Plan, State: RolloutState(it.State), Reason: it.Reason,
		Waves: it.Waves, Current: it.Current, Bake: time.Duration(it.BakeMS) * time.Millisecond,
		GateTimeout: time.Duration(it.GateTimeoutMS) * time.Millisecond, MaxFailures: it.MaxFailures,
		AbortRequested: it.AbortRequested, RollbackOnAbort: it.RollbackOnAbort, Skipped: it.Skipped, Notes: it.Notes,
		CreatedBy: it.CreatedBy, CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt, EndedAt: it.EndedAt, Version: it.Version,
	}
}

type rolloutTenantItem struct {
	PK string `dynamodbav:"pk"`
	SK string `dynamodbav:"sk"`
	RolloutTenant
}

func rolloutTenantSK(tenant string) string { return prefixTenant + tenant }

// putRollout writes r if the stored version is prev (0: must not exist).
func (s *Store) putRollout(r *Rollout, prev int64) (types.TransactWriteItem, error) {
	item, err := attributevalue.MarshalMap(r.item())
	if err != nil {
		return types.TransactWriteItem{}, fmt.Errorf("encode rollout %s: %w", r.ID, err)
	}
	put := &types.Put{TableName: aws.String(s.table), Item: item}
	if prev == 0 {
		put.ConditionExpression = aws.String("attribute_not_exists(pk)")
	} else {
		put.ConditionExpression = aws.String("version = :v")
		put.ExpressionAttributeValues = map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: strconv.FormatInt(prev, 10)}}
	}
	return types.TransactWriteItem{Put: put}, nil
}

// CreateRollout records a new rollout and its tenants, and takes the
// one-rollout-at-a-time lock. It fails with ErrRolloutActive while another
// rollout is live. The tenants are written after the rollout in batches;
// the rollout starts in state RolloutPaused with reason "planning" until
// they all are, so a crash in between leaves a rollout that is resumed
// (and its tenants written again) rather than one with tenants missing.
func (s *Store) CreateRollout(ctx context.Context, r *Rollout, tenants []RolloutTenant) (*Rollout, error) {
	if r.ID == "" || r.Release == "" || len(r.Waves) == 0 {
		return nil, &FieldError{"rollout", "id, release and at least one wave are required"}
	}
	now := s.now()
	next := *r
	next.State, next.Reason = RolloutPaused, planning
	next.CreatedAt, next.UpdatedAt, next.Version = now, now, 1
	put, err := s.putRollout(&next, 0)
	if err != nil {
		return nil, err
	}
	lock, err := attributevalue.MarshalMap(map[string]string{attrPK: rolloutActiveKey, attrSK: skMeta, "rollout": r.ID})
	if err != nil {
		return nil, err
	}
	_, err = s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: aws.String(s.table), Item: lock, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
		put,
	}})
	if err != nil {
		if awsx.TransactionReasons(err) != nil || awsx.IsConflict(err) {
			active, _ := s.ActiveRollout(ctx)
			if active != "" {
				return nil, fmt.Errorf("rollout %s is under way: %w", active, ErrRolloutActive)
			}
			return nil, fmt.Errorf("rollout %s: %w", r.ID, ErrAlreadyExists)
		}
		return nil, fmt.Errorf("record rollout %s: %w", r.ID, err)
	}
	if err := s.PutRolloutTenants(ctx, tenants); err != nil {
		return nil, err
	}
	return s.UpdateRollout(ctx, &next, func(n *Rollout) { n.State, n.Reason = RolloutRunning, "" })
}

// planning is the reason of a rollout whose tenants are being written.
const planning = "planning"

// Planning reports whether r's tenants may not all be written yet.
func (r *Rollout) Planning() bool { return r.State == RolloutPaused && r.Reason == planning }

// ActiveRollout returns the id of the live rollout, or "".
func (s *Store) ActiveRollout(ctx context.Context) (string, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table), ConsistentRead: aws.Bool(true), Key: keyOf(rolloutActiveKey, skMeta),
	})
	if err != nil {
		return "", fmt.Errorf("read the active rollout: %w", err)
	}
	if out.Item == nil {
		return "", nil
	}
	var v struct {
		Rollout string `dynamodbav:"rollout"`
	}
	if err := attributevalue.UnmarshalMap(out.Item, &v); err != nil {
		return "", fmt.Errorf("decode the active rollout: %w", err)
	}
	return v.Rollout, nil
}

// UpdateRollout writes r changed by mutate, conditional on r.Version. A
// move to a final state releases the lock in the same transaction.
func (s *Store) UpdateRollout(ctx context.Context, r *Rollout, mutate func(*Rollout)) (*Rollout, error) {
	if r.Version < 1 {
		return nil, &FieldError{"version", "must come from a stored rollout"}
	}
	next := *r
	next.Waves = slices.Clone(r.Waves)
	next.Notes = slices.Clone(r.Notes)
	mutate(&next)
	next.ID, next.CreatedAt, next.CreatedBy, next.Release = r.ID, r.CreatedAt, r.CreatedBy, r.Release
	if next.State != r.State && !slices.Contains(rolloutTransitions[r.State], next.State) {
		return nil, fmt.Errorf("rollout %s cannot go from %s to %s: %w", r.ID, r.State, next.State, ErrInvalidTransition)
	}
	next.Version = r.Version + 1
	next.UpdatedAt = s.now()
	if !next.UpdatedAt.After(r.UpdatedAt) {
		next.UpdatedAt = r.UpdatedAt.Add(time.Microsecond)
	}
	items := []types.TransactWriteItem{}
	if next.State.Final() && !r.State.Final() {
		ended := next.UpdatedAt
		next.EndedAt = &ended
		items = append(items, types.TransactWriteItem{Delete: &types.Delete{
			TableName: aws.String(s.table), Key: keyOf(rolloutActiveKey, skMeta),
			ConditionExpression:       aws.String("#r = :r"),
			ExpressionAttributeNames:  map[string]string{"#r": "rollout"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":r": &types.AttributeValueMemberS{Value: r.ID}},
		}})
	}
	put, err := s.putRollout(&next, r.Version)
	if err != nil {
		return nil, err
	}
	if err := s.transact(ctx, "update rollout "+r.ID, append(items, put)...); err != nil {
		return nil, err
	}
	return &next, nil
}

// GetRollout returns one rollout.
func (s *Store) GetRollout(ctx context.Context, id string) (*Rollout, error) {
	if err := ValidateRolloutID(id); err != nil {
		return nil, err
	}
	var it rolloutItem
	if err := s.getItem(ctx, prefixRollout+id, "rollout "+id, &it); err != nil {
		return nil, err
	}
	return it.rollout(), nil
}

// ValidateRolloutID checks a rollout id: 1–64 letters, digits and dashes.
func ValidateRolloutID(id string) error {
	if len(id) < 1 || len(id) > 64 {
		return &FieldError{"rollout", fmt.Sprintf("id must be 1 to 64 characters, got %d", len(id))}
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return &FieldError{"rollout", fmt.Sprintf("id %q may hold only a-z, 0-9 and -", printable(id))}
		}
	}
	return nil
}

// ListRollouts returns the latest rollouts, newest first (a query on the
// by-state index), at most limit of them.
func (s *Store) ListRollouts(ctx context.Context, limit int) ([]*Rollout, error) {
	if limit < 1 || limit > MaxPageSize {
		limit = MaxPageSize
	}
	out, err := s.db.Query(ctx, &dynamodb.QueryInput{
		TableName: aws.String(s.table), IndexName: aws.String(IndexByState),
		KeyConditionExpression:    aws.String("#k = :k"),
		ExpressionAttributeNames:  map[string]string{"#k": attrStatePK},
		ExpressionAttributeValues: map[string]types.AttributeValue{":k": &types.AttributeValueMemberS{Value: rolloutListPK}},
		ScanIndexForward:          aws.Bool(false),
		Limit:                     aws.Int32(int32(limit)),
	})
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	rs := make([]*Rollout, 0, len(out.Items))
	for _, raw := range out.Items {
		var it rolloutItem
		if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
			return nil, fmt.Errorf("decode rollout: %w", err)
		}
		rs = append(rs, it.rollout())
	}
	return rs, nil
}

// PutRolloutTenants writes tenants' rollout records (25 to a batch). The
// rollout engine is their one writer, so plain puts suffice.
func (s *Store) PutRolloutTenants(ctx context.Context, tenants []RolloutTenant) error {
	reqs := make([]types.WriteRequest, 0, len(tenants))
	for _, t := range tenants {
		item, err := attributevalue.MarshalMap(rolloutTenantItem{PK: prefixRollout + t.RolloutID, SK: rolloutTenantSK(t.TenantID), RolloutTenant: t})
		if err != nil {
			return fmt.Errorf("encode rollout tenant %s: %w", t.TenantID, err)
		}
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
	}
	if err := s.batchWrite(ctx, reqs); err != nil {
		return fmt.Errorf("record rollout tenants: %w", err)
	}
	return nil
}

// RolloutTenants returns every tenant record of a rollout, by tenant id.
func (s *Store) RolloutTenants(ctx context.Context, id string) ([]RolloutTenant, error) {
	if err := ValidateRolloutID(id); err != nil {
		return nil, err
	}
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
		KeyConditionExpression:   aws.String("#pk = :pk AND begins_with(#sk, :t)"),
		ExpressionAttributeNames: map[string]string{"#pk": attrPK, "#sk": attrSK},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: prefixRollout + id},
			":t":  &types.AttributeValueMemberS{Value: prefixTenant},
		},
	})
	var out []RolloutTenant
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list tenants of rollout %s: %w", id, err)
		}
		for _, raw := range page.Items {
			var it rolloutTenantItem
			if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
				return nil, fmt.Errorf("decode rollout tenant: %w", err)
			}
			out = append(out, it.RolloutTenant)
		}
	}
	return out, nil
}
