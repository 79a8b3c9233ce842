package tenantapp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// The items table's key schema, which the tenant stack must create exactly:
// a partition key TableKey of type TableKeyType and no sort key. Items are
// spread by their random id; the table holds only this tenant's items (one
// table per account), so listing is a paginated Scan, not a hot path.
const (
	TableKey     = "id"
	TableKeyType = "S"
)

// AttachmentPrefix is where attachments live in the bucket:
// AttachmentPrefix + item id, encrypted with SSE-KMS under KMS_KEY_ID.
const AttachmentPrefix = "attachments/"

// Limits on items.
const (
	MaxNameBytes     = 256
	DefaultPageLimit = 25
	MaxPageLimit     = 100
)

// Item is an item as the API shows it.
type Item struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Data      json.RawMessage `json:"data,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	// AttachmentSize is set when the item has an attachment.
	AttachmentSize *int64 `json:"attachment_size,omitempty"`
	// Attachment is the attachment's content (base64 in JSON); only
	// GET /items/{id} includes it.
	Attachment []byte `json:"attachment,omitempty"`
}

// record is an item as the table stores it.
type record struct {
	ID             string `dynamodbav:"id"`
	Name           string `dynamodbav:"name"`
	Data           string `dynamodbav:"data,omitempty"` // compact JSON object
	CreatedAt      string `dynamodbav:"created_at"`     // RFC 3339, UTC
	AttachmentKey  string `dynamodbav:"attachment_key,omitempty"`
	AttachmentSize int64  `dynamodbav:"attachment_size,omitempty"`
}

func (rec record) item() Item {
	it := Item{ID: rec.ID, Name: rec.Name}
	if rec.Data != "" {
		it.Data = json.RawMessage(rec.Data)
	}
	it.CreatedAt, _ = time.Parse(time.RFC3339Nano, rec.CreatedAt)
	if rec.AttachmentKey != "" {
		it.AttachmentSize = aws.Int64(rec.AttachmentSize)
	}
	return it
}

// newID returns a random 128-bit id in lowercase hex.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return hex.EncodeToString(b)
}

// validID reports whether s has the shape newID produces; anything else
// cannot name an item, so it is a 404 without a round trip to the table.
func validID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func keyOf(id string) map[string]ddbtypes.AttributeValue {
	return map[string]ddbtypes.AttributeValue{TableKey: &ddbtypes.AttributeValueMemberS{Value: id}}
}

type createRequest struct {
	Name       string          `json:"name"`
	Data       json.RawMessage `json:"data"`
	Attachment *string         `json:"attachment"`
}

// validate checks req and returns the compact data and decoded attachment.
func (req createRequest) validate() (data string, attachment []byte, err error) {
	name := strings.TrimSpace(req.Name)
	switch {
	case name == "":
		return "", nil, badRequest("name is required")
	case len(name) > MaxNameBytes:
		return "", nil, badRequest("name is longer than %d bytes", MaxNameBytes)
	case !utf8.ValidString(name):
		return "", nil, badRequest("name is not valid UTF-8")
	}
	if d := bytes.TrimSpace(req.Data); len(d) > 0 && !bytes.Equal(d, []byte("null")) {
		if d[0] != '{' {
			return "", nil, badRequest("data must be a JSON object")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, d); err != nil {
			return "", nil, badRequest("data must be a JSON object")
		}
		data = buf.String()
	}
	if req.Attachment != nil {
		attachment, err = base64.StdEncoding.DecodeString(*req.Attachment)
		if err != nil {
			return "", nil, badRequest("attachment is not standard base64")
		}
		if len(attachment) == 0 {
			return "", nil, badRequest("attachment is empty; leave it out instead")
		}
	}
	return data, attachment, nil
}

func (a *App) createItem(w http.ResponseWriter, r *http.Request, p principal) {
	ctx := r.Context()
	var req createRequest
	if err := decodeJSON(w, r, &req); err != nil {
		a.fail(ctx, w, r, err)
		return
	}
	data, attachment, err := req.validate()
	if err != nil {
		a.fail(ctx, w, r, err)
		return
	}
	rec := record{ID: newID(), Name: strings.TrimSpace(req.Name), Data: data,
		CreatedAt: time.Now().UTC().Format(time.RFC3339Nano)}
	// The attachment goes first: an item never points at an object that
	// was not written. A failed item write removes the object again.
	if attachment != nil {
		rec.AttachmentKey, rec.AttachmentSize = AttachmentPrefix+rec.ID, int64(len(attachment))
		if err := a.putAttachment(ctx, rec.AttachmentKey, attachment); err != nil {
			a.fail(ctx, w, r, err)
			return
		}
	}
	if err := a.putRecord(ctx, rec); err != nil {
		if rec.AttachmentKey != "" {
			a.deleteAttachment(ctx, rec.AttachmentKey)
		}
		a.fail(ctx, w, r, err)
		return
	}
	a.log.InfoContext(ctx, "item created", "item", rec.ID, "subject", p.Subject, "attachment_bytes", rec.AttachmentSize)
	w.Header().Set("Location", "/items/"+rec.ID)
	writeJSON(w, http.StatusCreated, rec.item())
}

func (a *App) putAttachment(ctx context.Context, key string, body []byte) error {
	_, err := a.c.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:               aws.String(a.cfg.Bucket),
		Key:                  aws.String(key),
		Body:                 bytes.NewReader(body),
		ContentLength:        aws.Int64(int64(len(body))),
		ContentType:          aws.String("application/octet-stream"),
		ServerSideEncryption: s3types.ServerSideEncryptionAwsKms,
		SSEKMSKeyId:          aws.String(a.cfg.KMSKeyID),
		// An S3 Bucket Key cuts KMS requests (and cost) per object.
		BucketKeyEnabled: aws.Bool(true),
	})
	if err != nil {
		return fmt.Errorf("put attachment %s: %w", key, err)
	}
	return nil
}

// deleteAttachment removes an object, logging a failure: the callers have
// nothing better to do with it, and the log names the object to clean up.
func (a *App) deleteAttachment(ctx context.Context, key string) bool {
	_, err := a.c.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(a.cfg.Bucket), Key: aws.String(key)})
	if err != nil && !awsx.IsNotFound(err) {
		a.log.ErrorContext(ctx, "delete attachment", "key", key, "err", err)
		return false
	}
	return true
}

func (a *App) putRecord(ctx context.Context, rec record) error {
	av, err := attributevalue.MarshalMap(rec)
	if err != nil {
		return fmt.Errorf("marshal item %s: %w", rec.ID, err)
	}
	_, err = a.c.DynamoDB.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(a.cfg.TableName),
		Item:      av,
		// A random 128-bit id does not collide; the condition makes sure a
		// bug that reuses one fails loudly instead of overwriting.
		ConditionExpression:      aws.String("attribute_not_exists(#k)"),
		ExpressionAttributeNames: map[string]string{"#k": TableKey},
	})
	if err != nil {
		return fmt.Errorf("put item %s: %w", rec.ID, err)
	}
	return nil
}

// getRecord returns the stored item id, or errNotFound.
func (a *App) getRecord(ctx context.Context, id string) (record, error) {
	if !validID(id) {
		return record{}, errNotFound
	}
	out, err := a.c.DynamoDB.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(a.cfg.TableName), Key: keyOf(id), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return record{}, fmt.Errorf("get item %s: %w", id, err)
	}
	if out.Item == nil {
		return record{}, errNotFound
	}
	var rec record
	if err := attributevalue.UnmarshalMap(out.Item, &rec); err != nil {
		return record{}, fmt.Errorf("unmarshal item %s: %w", id, err)
	}
	return rec, nil
}

func (a *App) getItem(w http.ResponseWriter, r *http.Request, _ principal) {
	ctx := r.Context()
	rec, err := a.getRecord(ctx, r.PathValue("id"))
	if err != nil {
		a.fail(ctx, w, r, err)
		return
	}
	it := rec.item()
	if rec.AttachmentKey != "" {
		out, err := a.c.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(a.cfg.Bucket), Key: aws.String(rec.AttachmentKey)})
		if awsx.IsNotFound(err) {
			// Delete removes the object before the item: an item whose
			// object is gone is being deleted.
			a.fail(ctx, w, r, errNotFound)
			return
		}
		if err != nil {
			a.fail(ctx, w, r, fmt.Errorf("get attachment %s: %w", rec.AttachmentKey, err))
			return
		}
		it.Attachment, err = io.ReadAll(io.LimitReader(out.Body, MaxBodyBytes+1))
		out.Body.Close()
		if err != nil {
			a.fail(ctx, w, r, fmt.Errorf("read attachment %s: %w", rec.AttachmentKey, err))
			return
		}
	}
	writeJSON(w, http.StatusOK, it)
}

func (a *App) deleteItem(w http.ResponseWriter, r *http.Request, p principal) {
	ctx := r.Context()
	id := r.PathValue("id")
	rec, err := a.getRecord(ctx, id)
	if err != nil {
		a.fail(ctx, w, r, err)
		return
	}
	// Object first, item second: if the item delete fails, a retry finds
	// the item and finishes; the other order could leak an object that no
	// item names any more.
	if rec.AttachmentKey != "" && !a.deleteAttachment(ctx, rec.AttachmentKey) {
		a.fail(ctx, w, r, fmt.Errorf("delete item %s: attachment not deleted", id))
		return
	}
	_, err = a.c.DynamoDB.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                aws.String(a.cfg.TableName),
		Key:                      keyOf(id),
		ConditionExpression:      aws.String("attribute_exists(#k)"),
		ExpressionAttributeNames: map[string]string{"#k": TableKey},
	})
	if awsx.IsConditionFailed(err) {
		err = errNotFound // deleted concurrently
	} else if err != nil {
		err = fmt.Errorf("delete item %s: %w", id, err)
	}
	if err != nil {
		a.fail(ctx, w, r, err)
		return
	}
	a.log.InfoContext(ctx, "item deleted", "item", id, "subject", p.Subject)
	w.WriteHeader(http.StatusNoContent)
}

type listResponse struct {
	Items      []Item `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func (a *App) listItems(w http.ResponseWriter, r *http.Request, _ principal) {
	ctx := r.Context()
	q := r.URL.Query()
	limit := DefaultPageLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageLimit {
			a.fail(ctx, w, r, badRequest("limit must be an integer from 1 to %d", MaxPageLimit))
			return
		}
		limit = n
	}
	var after string
	if s := q.Get("cursor"); s != "" {
		var err error
		if after, err = decodeCursor(s); err != nil {
			a.fail(ctx, w, r, &apiError{status: http.StatusBadRequest, code: "bad_cursor", message: "cursor is not one this API returned"})
			return
		}
	}
	recs, more, err := a.scan(ctx, after, limit)
	if err != nil {
		a.fail(ctx, w, r, err)
		return
	}
	resp := listResponse{Items: make([]Item, 0, len(recs))}
	for _, rec := range recs {
		resp.Items = append(resp.Items, rec.item())
	}
	if more {
		resp.NextCursor = encodeCursor(recs[len(recs)-1].ID)
	}
	writeJSON(w, http.StatusOK, resp)
}

// scan returns up to limit records after the item id after, and whether
// more follow. It asks for one record more than the page so that the last
// page says so, rather than handing out a cursor to an empty page; it loops
// because a Scan page also ends at 1 MB.
func (a *App) scan(ctx context.Context, after string, limit int) ([]record, bool, error) {
	var start map[string]ddbtypes.AttributeValue
	if after != "" {
		start = keyOf(after)
	}
	var recs []record
	for {
		out, err := a.c.DynamoDB.Scan(ctx, &dynamodb.ScanInput{
			TableName:         aws.String(a.cfg.TableName),
			Limit:             aws.Int32(int32(limit + 1 - len(recs))),
			ExclusiveStartKey: start,
		})
		if err != nil {
			return nil, false, fmt.Errorf("scan items: %w", err)
		}
		var page []record
		if err := attributevalue.UnmarshalListOfMaps(out.Items, &page); err != nil {
			return nil, false, fmt.Errorf("unmarshal items: %w", err)
		}
		recs = append(recs, page...)
		if len(recs) > limit {
			return recs[:limit], true, nil
		}
		if len(out.LastEvaluatedKey) == 0 {
			return recs, false, nil
		}
		start = out.LastEvaluatedKey
	}
}
