package emulator

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/silo-saas/silo/internal/grants"
)

// The proxy records, per caller, the IAM authorizations each request
// needs (Stats.Accesses), so a test can hold what a role's code calls to
// what its policy grants (internal/grants). The action is not always the
// operation's name: AWS documents which actions authorize each call, and
// these are the differences silo meets:
//
//   - a DynamoDB transaction is authorized by its items' actions
//     (PutItem, UpdateItem, DeleteItem, ConditionCheckItem, GetItem) on
//     their tables; a Query or Scan of an index by the index's ARN;
//   - SQS's batch calls by their single calls' actions (SendMessage,
//     DeleteMessage, ChangeMessageVisibility);
//   - S3 by its own action names: HeadObject is s3:GetObject, a listing
//     and HeadBucket s3:ListBucket, a version's read s3:GetObjectVersion,
//     a copy s3:GetObject on its source and s3:PutObject on its target,
//     a multipart upload's steps s3:PutObject, bucket encryption
//     s3:PutEncryptionConfiguration, ...;
//   - sts:GetCallerIdentity needs no grant (AWS allows it to everyone);
//     AssumeRole with session tags needs sts:TagSession as well;
//   - a service's signing name is not always its action prefix:
//     CloudWatch signs as monitoring (cloudwatch:PutMetricData), the
//     tagging API as tagging (tag:GetResources).
//
// The resource is the ARN the request names where the proxy can tell it:
// a table, index, queue, bus, rule, secret, key, parameter, log group,
// stack set or stack, role, bucket or object (path-style addressing, as
// the emulator's clients use), hosted zone. A resource named by name in
// the caller's own account gets an empty account field, which the
// reader fills (grants.Access.InAccount); a stack set, whose id the
// request does not give, ends in ":*". Calls whose grants take no
// narrower resource than "*" (Organizations, Cost Explorer, CloudWatch
// metrics) have none. A REST operation the proxy cannot name shows as
// its method and path after the prefix ("lambda:GET /2015-03-31/..."):
// no policy grants that, so a test reports it rather than passing it by.

// actionPrefixes are the IAM action prefixes of the services whose
// signing name differs.
var actionPrefixes = map[string]string{"monitoring": "cloudwatch", "tagging": "tag"}

// accesses returns the authorizations AWS checks for the request c of r.
func accesses(c *call, r *http.Request) []grants.Access {
	signing, region := signingName(r), signingRegion(r)
	prefix := signing
	if p, ok := actionPrefixes[signing]; ok {
		prefix = p
	}
	a := accessReader{c: c, prefix: prefix, region: region, partition: partitionOf(region)}
	switch signing {
	case "s3":
		return a.s3(r)
	case "dynamodb":
		return a.dynamodb()
	case "sqs":
		return a.sqs()
	case "events":
		return a.events()
	case "sts":
		return a.sts()
	case "route53":
		return a.route53(r)
	}
	return []grants.Access{a.on(a.named(signing))}
}

// accessReader reads one request's authorizations.
type accessReader struct {
	c                         *call
	prefix, region, partition string
	// body is the JSON request's top-level members, decoded once.
	body map[string]json.RawMessage
}

// on is the request's own action on resource.
func (a *accessReader) on(resource string) grants.Access {
	return a.action(a.c.op.Operation, resource)
}

func (a *accessReader) action(name, resource string) grants.Access {
	return grants.Access{Action: a.prefix + ":" + name, Resource: resource}
}

// param is a top-level string parameter of the request: a JSON member or
// a query form value.
func (a *accessReader) param(name string) string {
	if a.c.proto == protoQuery {
		return a.c.form.Get(name)
	}
	if a.body == nil {
		a.body = map[string]json.RawMessage{}
		_ = json.Unmarshal(a.c.body, &a.body)
	}
	var s string
	_ = json.Unmarshal(a.body[name], &s)
	return s
}

// decode decodes the JSON body into v (best effort: a malformed body
// leaves v as it was, and the service refuses the request anyway).
func (a *accessReader) decode(v any) { _ = json.Unmarshal(a.c.body, v) }

// arn builds an ARN in the request's region and the caller's account
// (left empty, see grants.Access.InAccount).
func (a *accessReader) arn(service, resource string) string {
	return "arn:" + a.partition + ":" + service + ":" + a.region + "::" + resource
}

// named returns the resource the request names for the services whose
// resource is one parameter, or "".
func (a *accessReader) named(signing string) string {
	switch signing {
	case "secretsmanager":
		id := a.param("SecretId")
		if id == "" {
			id = a.param("Name")
		}
		if id == "" || strings.HasPrefix(id, "arn:") {
			return id
		}
		// By name: the ARN's random suffix is unknown here.
		return a.arn("secretsmanager", "secret:"+id)
	case "kms":
		id := a.param("KeyId")
		switch {
		case id == "" || strings.HasPrefix(id, "arn:"):
			return id
		case strings.HasPrefix(id, "alias/"):
			return a.arn("kms", id)
		}
		return a.arn("kms", "key/"+id)
	case "ssm":
		name := a.param("Name")
		if name == "" {
			name = a.param("Path")
		}
		if name == "" || strings.HasPrefix(name, "arn:") {
			return name
		}
		return a.arn("ssm", "parameter/"+strings.TrimPrefix(name, "/"))
	case "logs":
		group := a.param("logGroupName")
		if group == "" {
			return ""
		}
		res := "log-group:" + group
		if stream := a.param("logStreamName"); stream != "" {
			res += ":log-stream:" + stream
		}
		return a.arn("logs", res)
	case "cloudformation":
		if set := a.param("StackSetName"); set != "" {
			if strings.HasPrefix(set, "arn:") {
				return set
			}
			return a.arn("cloudformation", "stackset/"+set+":*")
		}
		if stack := a.param("StackName"); stack != "" {
			if strings.HasPrefix(stack, "arn:") {
				return stack
			}
			return a.arn("cloudformation", "stack/"+stack+"/*")
		}
	case "iam":
		for _, p := range [][2]string{{"RoleName", "role/"}, {"UserName", "user/"}, {"InstanceProfileName", "instance-profile/"}} {
			if v := a.param(p[0]); v != "" {
				return "arn:" + a.partition + ":iam:::" + p[1] + v
			}
		}
		return a.param("PolicyArn")
	}
	return ""
}

func (a *accessReader) dynamodb() []grants.Access {
	table := func(name string) string {
		if strings.HasPrefix(name, "arn:") {
			return name
		}
		return a.arn("dynamodb", "table/"+name)
	}
	var in struct {
		TableName, IndexName, Statement string
		TransactItems                   []map[string]struct{ TableName string }
		RequestItems                    map[string]json.RawMessage
	}
	a.decode(&in)
	switch op := a.c.op.Operation; op {
	case "TransactWriteItems", "TransactGetItems":
		// No action of their own: each item's (patch 15 of the
		// emulator judges them so too).
		items := map[string]string{"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
		var out []grants.Access
		for _, item := range in.TransactItems {
			for kind, it := range item {
				name, ok := items[kind]
				if !ok {
					name = kind
				}
				out = appendNew(out, a.action(name, table(it.TableName)))
			}
		}
		return out
	case "BatchGetItem", "BatchWriteItem":
		var out []grants.Access
		for name := range in.RequestItems {
			out = appendNew(out, a.on(table(name)))
		}
		return out
	case "ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction":
		// PartiQL is authorized by its statement's verb, on the tables it
		// names, which the proxy does not parse.
		verb, _, _ := strings.Cut(strings.TrimSpace(in.Statement), " ")
		if v := strings.ToUpper(verb); v != "" {
			return []grants.Access{a.action("PartiQL"+v[:1]+strings.ToLower(v[1:]), "")}
		}
		return []grants.Access{a.on("")}
	case "Query", "Scan":
		if in.IndexName != "" {
			return []grants.Access{a.on(table(in.TableName) + "/index/" + in.IndexName)}
		}
	}
	if in.TableName == "" {
		return []grants.Access{a.on("")}
	}
	return []grants.Access{a.on(table(in.TableName))}
}

// sqsSingle are the SQS batch calls and the actions that authorize them.
var sqsSingle = map[string]string{
	"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage", "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}

func (a *accessReader) sqs() []grants.Access {
	op := a.c.op.Operation
	if single, ok := sqsSingle[op]; ok {
		op = single
	}
	var queue string
	if u := a.param("QueueUrl"); u != "" {
		// https://sqs.REGION.amazonaws.com/ACCOUNT/NAME, or the emulator's
		// own host with the same path.
		if pu, err := url.Parse(u); err == nil {
			if parts := strings.Split(strings.Trim(pu.Path, "/"), "/"); len(parts) == 2 {
				queue = "arn:" + a.partition + ":sqs:" + a.region + ":" + parts[0] + ":" + parts[1]
			}
		}
	} else if name := a.param("QueueName"); name != "" {
		queue = "arn:" + a.partition + ":sqs:" + a.region + ":" + a.param("QueueOwnerAWSAccountId") + ":" + name
	}
	return []grants.Access{a.action(op, queue)}
}

func (a *accessReader) events() []grants.Access {
	bus := func(name string) string {
		if name == "" {
			name = "default"
		}
		if strings.HasPrefix(name, "arn:") {
			return name
		}
		return a.arn("events", "event-bus/"+name)
	}
	switch op := a.c.op.Operation; op {
	case "PutEvents":
		// Each entry's bus is checked.
		var in struct {
			Entries []struct{ EventBusName string }
		}
		a.decode(&in)
		var out []grants.Access
		for _, e := range in.Entries {
			out = appendNew(out, a.on(bus(e.EventBusName)))
		}
		return out
	case "PutRule", "DescribeRule", "DeleteRule", "EnableRule", "DisableRule", "PutTargets", "RemoveTargets", "ListTargetsByRule":
		name := a.param("Name")
		if name == "" {
			name = a.param("Rule")
		}
		rule := "rule/" + name
		if b := a.param("EventBusName"); b != "" && b != "default" {
			rule = "rule/" + b[strings.LastIndexByte(b, '/')+1:] + "/" + name
		}
		return []grants.Access{a.on(a.arn("events", rule))}
	case "DescribeEventBus", "CreateEventBus", "DeleteEventBus":
		return []grants.Access{a.on(bus(a.param("Name")))}
	}
	return []grants.Access{a.on("")}
}

func (a *accessReader) sts() []grants.Access {
	switch a.c.op.Operation {
	case "GetCallerIdentity":
		return nil // allowed to everyone, whatever the policies say
	case "AssumeRole":
		out := []grants.Access{a.on(a.param("RoleArn"))}
		if a.param("Tags.member.1.Key") != "" {
			out = append(out, a.action("TagSession", a.param("RoleArn")))
		}
		return out
	}
	return []grants.Access{a.on("")}
}

func (a *accessReader) route53(r *http.Request) []grants.Access {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) >= 3 && (parts[1] == "hostedzone" || parts[1] == "change") {
		return []grants.Access{a.on("arn:" + a.partition + ":route53:::" + parts[1] + "/" + parts[2])}
	}
	return []grants.Access{a.on("")}
}

// s3ObjectSubresources are the object subresources with actions of their
// own, by method (GET/HEAD, PUT, DELETE) and whether a version is named.
var s3ObjectSubresources = map[string]map[string]string{
	"tagging":    {"GET": "GetObjectTagging", "GET+v": "GetObjectVersionTagging", "PUT": "PutObjectTagging", "PUT+v": "PutObjectVersionTagging", "DELETE": "DeleteObjectTagging", "DELETE+v": "DeleteObjectVersionTagging"},
	"acl":        {"GET": "GetObjectAcl", "GET+v": "GetObjectVersionAcl", "PUT": "PutObjectAcl", "PUT+v": "PutObjectVersionAcl"},
	"attributes": {"GET": "GetObjectAttributes", "GET+v": "GetObjectVersionAttributes"},
	"retention":  {"GET": "GetObjectRetention", "PUT": "PutObjectRetention"},
	"legal-hold": {"GET": "GetObjectLegalHold", "PUT": "PutObjectLegalHold"},
	"restore":    {"POST": "RestoreObject"},
	"select":     {"POST": "GetObject"},
	"uploads":    {"POST": "PutObject"},
	"uploadId":   {"GET": "ListMultipartUploadParts", "PUT": "PutObject", "POST": "PutObject", "DELETE": "AbortMultipartUpload"},
}

// s3BucketSubresources are the bucket subresources and their actions by
// method; IAM's names differ from the operations' for several
// (GetBucketEncryption is s3:GetEncryptionConfiguration, and a delete of
// a configuration is its put).
var s3BucketSubresources = map[string]map[string]string{
	"policy":            {"GET": "GetBucketPolicy", "PUT": "PutBucketPolicy", "DELETE": "DeleteBucketPolicy"},
	"policyStatus":      {"GET": "GetBucketPolicyStatus"},
	"versioning":        {"GET": "GetBucketVersioning", "PUT": "PutBucketVersioning"},
	"versions":          {"GET": "ListBucketVersions"},
	"uploads":           {"GET": "ListBucketMultipartUploads"},
	"location":          {"GET": "GetBucketLocation"},
	"encryption":        {"GET": "GetEncryptionConfiguration", "PUT": "PutEncryptionConfiguration", "DELETE": "PutEncryptionConfiguration"},
	"lifecycle":         {"GET": "GetLifecycleConfiguration", "PUT": "PutLifecycleConfiguration", "DELETE": "PutLifecycleConfiguration"},
	"publicAccessBlock": {"GET": "GetBucketPublicAccessBlock", "PUT": "PutBucketPublicAccessBlock", "DELETE": "PutBucketPublicAccessBlock"},
	"tagging":           {"GET": "GetBucketTagging", "PUT": "PutBucketTagging", "DELETE": "PutBucketTagging"},
	"acl":               {"GET": "GetBucketAcl", "PUT": "PutBucketAcl"},
	"cors":              {"GET": "GetBucketCORS", "PUT": "PutBucketCORS", "DELETE": "PutBucketCORS"},
	"ownershipControls": {"GET": "GetBucketOwnershipControls", "PUT": "PutBucketOwnershipControls", "DELETE": "PutBucketOwnershipControls"},
	"notification":      {"GET": "GetBucketNotification", "PUT": "PutBucketNotification"},
	"logging":           {"GET": "GetBucketLogging", "PUT": "PutBucketLogging"},
	"website":           {"GET": "GetBucketWebsite", "PUT": "PutBucketWebsite", "DELETE": "DeleteBucketWebsite"},
	"replication":       {"GET": "GetReplicationConfiguration", "PUT": "PutReplicationConfiguration", "DELETE": "PutReplicationConfiguration"},
	"object-lock":       {"GET": "GetBucketObjectLockConfiguration", "PUT": "PutBucketObjectLockConfiguration"},
	"delete":            {"POST": "DeleteObject"},
}

func (a *accessReader) s3(r *http.Request) []grants.Access {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	q := r.URL.Query()
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet // a HEAD is authorized as its GET
	}
	arn := "arn:" + a.partition + ":s3:::" + bucket
	if bucket == "" {
		return []grants.Access{a.action("ListAllMyBuckets", "")}
	}
	if key == "" {
		for _, sub := range slices.Sorted(maps.Keys(s3BucketSubresources)) {
			actions := s3BucketSubresources[sub]
			if !q.Has(sub) {
				continue
			}
			if name, ok := actions[method]; ok {
				if sub == "delete" {
					// The keys are in the body, which the proxy streams.
					return []grants.Access{a.action(name, arn+"/*")}
				}
				return []grants.Access{a.action(name, arn)}
			}
		}
		switch method {
		case http.MethodGet: // ListObjects(V2), HeadBucket
			return []grants.Access{a.action("ListBucket", arn)}
		case http.MethodPut:
			return []grants.Access{a.action("CreateBucket", arn)}
		case http.MethodDelete:
			return []grants.Access{a.action("DeleteBucket", arn)}
		}
		return []grants.Access{a.action(r.Method+" "+r.URL.Path, arn)}
	}
	object := arn + "/" + key
	version := ""
	if q.Has("versionId") {
		version = "+v"
	}
	for _, sub := range slices.Sorted(maps.Keys(s3ObjectSubresources)) {
		actions := s3ObjectSubresources[sub]
		if !q.Has(sub) {
			continue
		}
		if name, ok := actions[method+version]; ok {
			return []grants.Access{a.action(name, object)}
		} else if name, ok := actions[method]; ok {
			return []grants.Access{a.action(name, object)}
		}
	}
	switch method {
	case http.MethodGet:
		if version != "" {
			return []grants.Access{a.action("GetObjectVersion", object)}
		}
		return []grants.Access{a.action("GetObject", object)}
	case http.MethodPut:
		out := []grants.Access{a.action("PutObject", object)}
		if src := r.Header.Get("X-Amz-Copy-Source"); src != "" {
			// /bucket/key[?versionId=...], URL-encoded.
			path, query, _ := strings.Cut(src, "?")
			if p, err := url.PathUnescape(path); err == nil {
				path = p
			}
			read := "GetObject"
			if strings.Contains(query, "versionId=") {
				read = "GetObjectVersion"
			}
			out = append(out, a.action(read, "arn:"+a.partition+":s3:::"+strings.TrimPrefix(path, "/")))
		}
		return out
	case http.MethodDelete:
		if version != "" {
			return []grants.Access{a.action("DeleteObjectVersion", object)}
		}
		return []grants.Access{a.action("DeleteObject", object)}
	}
	return []grants.Access{a.action(r.Method+" "+r.URL.Path, object)}
}

// appendNew appends a unless out has it.
func appendNew(out []grants.Access, a grants.Access) []grants.Access {
	for _, x := range out {
		if x == a {
			return out
		}
	}
	return append(out, a)
}

// signingRegion returns the region of the SigV4 credential scope.
func signingRegion(r *http.Request) string {
	scope := r.URL.Query().Get("X-Amz-Credential")
	if auth := r.Header.Get("Authorization"); auth != "" {
		if _, after, ok := strings.Cut(auth, "Credential="); ok {
			scope, _, _ = strings.Cut(after, ",")
		}
	}
	parts := strings.Split(strings.TrimSpace(scope), "/")
	if len(parts) < 5 {
		return ""
	}
	return parts[2]
}

// partitionOf is the partition of a region's ARNs.
func partitionOf(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}
