# Loaded by Python at start-up (it is on PYTHONPATH) when silo's emulator
# harness starts moto_server. It closes gaps of moto 5.2.1 that silo's local
# mode cannot live with; each patch says what and why, and each is checked
# by a test through the real SDK (internal/emulator, cdk/tenantapp):
#
# 1. moto's DynamoDB TransactWriteItems deep-copies every table it touches
#   before applying the transaction, to roll back on failure. That makes one
#   transaction cost O(table size): about 0.4 s per transaction with a few
#   hundred items in the table, where DynamoDB answers in milliseconds.
#
# The patch keeps moto's own transaction logic (condition evaluation, error
# reporting) and replaces only its whole-table backup with a backup of the
# items the transaction touches. It relies on silo's proxy serializing
# DynamoDB writes, as DynamoDB does, so no other write interleaves.
#
# 2. CloudFormation's AWS::KMS::Key passes the standard Key/Value tags to
#    KMS, which expects TagKey/TagValue, and fails the stack; and it stores
#    the KeyPolicy as a JSON object where KMS keeps a string, so every later
#    call on the key (DescribeKey, ScheduleKeyDeletion) answers 500.
# 3. CloudFormation does not know AWS::SecretsManager::Secret: it skips it,
#    its Ref is null, and the tenant stack's IAM policy is then rejected.
# 4. Lambda reads its code only from a bucket of its own account. In AWS the
#    tenant function reads it from the organization's artifact bucket in the
#    management account (a bucket policy on aws:PrincipalOrgID allows it).
# 5. UpdateStack replaces each modified resource with what its type's
#    update handler returns, and None for a type that has none (KMS keys,
#    REST APIs, log groups): every later Fn::GetAtt on it then fails the
#    update ("references undefined resource"). A release changes AppVersion,
#    which tags every resource of the tenant stack, so no release could be
#    applied to a member stack. The patch keeps such a resource as it was,
#    as moto does with the properties it cannot update. Checked by
#    stacksets' TestUpdateInstances.
#
# Patches 6-9 make IAM enforcement (POST /moto-api/reset-auth, which the
# isolation audit switches on for its cross-tenant probes) mean something.
# Each is checked through the Go SDK by internal/emulator's enforce_test.go.
#
# 6. moto checks DynamoDB, Secrets Manager and KMS calls against the
#    resource "*" instead of the resource named in the request, so a role
#    whose policy names its own table is refused its own table, and a
#    refusal of another tenant's table proves nothing. The patch names the
#    real ARN (the table, secret or key of the request, in the account the
#    request names or else the caller's; for a Query or Scan of an index,
#    the index's ARN, table/NAME/index/INDEX, which is what AWS authorizes
#    it on: a grant on the table alone does not reach its indexes).
# 7. moto answers every refusal in one XML shape, also to JSON services
#    (DynamoDB, KMS, Secrets Manager, Organizations), whose SDKs cannot
#    decode it (the Go SDK reports a deserialization error, not
#    AccessDeniedException), and to the query services (STS, IAM,
#    CloudFormation) with the error inside an <Errors> element they do not
#    read (the code came out as UnknownError), and to REST-JSON services
#    (Lambda, API Gateway), whose SDKs want JSON. The patch answers JSON and
#    REST-JSON services in JSON and query services in their
#    <ErrorResponse><Error> shape (checked by deployed_test.go).
# 8. moto gives the OrganizationAccountAccessRole it creates in each new
#    account no policy: under enforcement it may do nothing, where in AWS it
#    holds AdministratorAccess. The patch attaches the equivalent inline.
# 9. moto's CloudFormation ignores an S3 bucket's
#    PublicAccessBlockConfiguration, so a bucket the template blocks from
#    the public reads back as having no public access block at all.
#
# 10. A stack instance whose stack fails in its member account. moto creates
#    the member stack inside the CreateStackInstances call itself: a resource
#    the service refuses (a bucket name taken in another account) makes the
#    call answer an HTTP error, records no operation and no instance, and
#    leaves the member stack half-created in CREATE_IN_PROGRESS, so a later
#    attempt collides with it. In AWS the call succeeds and the operation
#    ends FAILED: ListStackSetOperationResults gives the account FAILED with
#    the stack's status reason ("The following resource(s) failed to
#    create: [Bucket]. Delete requested by user."), the instance is listed
#    OUTDATED with DetailedStatus FAILED and that StatusReason, and the
#    member stack, created by StackSets with OnFailure DELETE, records the
#    failing resource's CREATE_FAILED event with the service's refusal
#    (ResourceStatusReason), deletes whatever was created (but keeps what
#    has DeletionPolicy Retain, as CloudFormation does) and ends
#    DELETE_COMPLETE, readable by its stack id ("view the events for the
#    stack, which will have a status of DELETED (for failed create
#    operations)", the StackSets troubleshooting guide). The patch does that.
#    The operation fails when any instance fails (silo deploys with a
#    failure tolerance of 0; the tolerance is not modelled). Afterwards, as
#    in AWS: UpdateStackInstances (or UpdateStackSet) on the failed instance
#    creates its stack again, with the stack set's current template (and
#    the operation the call answers with reports a new failure);
#    DeleteStackInstances removes the instance (its stack is gone already);
#    CreateStackInstances skips an account and region that already have an
#    instance instead of creating a second one (moto fixed this upstream
#    after 5.2.1, getmoto/moto#10171). StackSet operations run one at a
#    time, as AWS runs one operation per stack set at a time: moto_server
#    serves requests on threads, and two reconcilers creating one tenant's
#    instance at once would otherwise both create its stack, the second
#    failing with AlreadyExistsException. Checked through the Go SDK by
#    internal/emulator's stackfail_test.go.
#
# Patches 11-17 let the control-plane stack (cdk/controlplane) run as it is
# deployed, under the deployed-mode harness (internal/deployed), with IAM
# enforcement on. Each is checked through the Go SDK by internal/emulator's
# deployed_test.go.
#
# 11. Ref of an AWS::Events::EventBus is the bus's name in AWS; moto gave
#    the bus object itself, so a function whose environment names the bus
#    (SILO_EVENT_BUS) stored an object there, and ListFunctions and
#    GetFunctionConfiguration answered 500 ("Object of type EventBus is not
#    JSON serializable").
# 12. moto's CloudFormation skips AWS::ApiGateway::Stage, and Ref of an
#    AWS::ApiGateway::Deployment is not the deployment's id: a REST API
#    made by a template has no stage (GetStages answers none) and its
#    invoke URL output ends in /None/. The patch makes the stage, with its
#    deployment, variables, description and method settings (a tenant's
#    throttling), and gives the deployment its id as Ref.
# 13. moto checks events:PutEvents and CloudFormation's StackSet and stack
#    calls against the resource "*" instead of the resource the request
#    names, so a role granted PutEvents on its own bus, or
#    ListStackInstances on its own stack set, is refused under
#    enforcement while a grant on "*" passes: the control-plane stack's
#    narrow grants could not be told from missing ones. The patch names
#    the bus of each entry (each is checked) and the stack set or stack.
# 14. Under enforcement moto recomputes each request's signature, and for a
#    request with neither a body nor a query string (GET
#    /2015-03-31/functions, GET /restapis) it signs the request's headers
#    as if they were a form body (it falls back on them as parameters), so
#    every such call answered SignatureDoesNotMatch: the Lambda and API
#    Gateway reads of the harness (and of anyone) failed. The patch signs an
#    empty body as empty (a form body is still signed from its parameters,
#    as moto did).
# 15. DynamoDB has no IAM action for a transaction: TransactWriteItems and
#    TransactGetItems are allowed by the actions of their items (PutItem,
#    UpdateItem, DeleteItem, ConditionCheckItem, GetItem) on each item's
#    table, as AWS documents it ("Using IAM with DynamoDB transactions").
#    moto checked dynamodb:TransactWriteItems, an action no policy
#    grants, so a role granted read and write on the registry (CDK's
#    grantReadWriteData) was refused every registry write silo makes.
#    The patch checks each item's action on its table.
# 16. moto delivers a message sent to a queue that has a Lambda event source
#    mapping itself, inside SendMessage: it receives the message, tries to
#    run the function (which it cannot, without Docker) and makes the
#    message visible again. Every message so reached its real consumer on
#    its second receive (ApproximateReceiveCount 2) and one receive closer
#    to the dead-letter queue. The deployed-mode harness is the event
#    source mapping here, as Lambda is in AWS; the patch stops moto's.
# 17. SQS has no IAM action for its batch calls: SendMessageBatch,
#    DeleteMessageBatch and ChangeMessageVisibilityBatch are allowed by
#    sqs:SendMessage, sqs:DeleteMessage and sqs:ChangeMessageVisibility
#    ("Amazon SQS API permissions: Actions and resource reference"). moto
#    checked sqs:DeleteMessageBatch, which no policy grants, so the event
#    source mapping's deletions of handled messages (made with the
#    function's role, granted sqs:DeleteMessage by the stack) were refused
#    and every handled message came back. The patch checks the single
#    action.
import copy as _copy
import sys as _sys
import threading as _threading


def _install():
    try:
        from moto.dynamodb import models as _models
        from moto.dynamodb.models.table import Table as _Table
    except Exception as exc:  # moto missing or reorganised: run unpatched
        _sys.stderr.write("silo: moto transaction patch not installed: %r\n" % (exc,))
        return

    state = _threading.local()

    class _TableCopyIsIdentity:
        """Stands in for the copy module inside moto.dynamodb.models: while a
        transaction runs on this thread, deep-copying a Table returns the
        table itself, so moto's whole-table backup costs nothing."""

        def __getattr__(self, name):
            return getattr(_copy, name)

        @staticmethod
        def deepcopy(x, memo=None):
            if getattr(state, "in_txn", False) and isinstance(x, _Table):
                return x
            return _copy.deepcopy(x, memo)

    _models.copy = _TableCopyIsIdentity()
    backend_cls = _models.DynamoDBBackend
    original = backend_cls.transact_write_items

    def _key_of(backend, op_type, op):
        table = backend.get_table(op["TableName"])
        if op_type == "Put":
            attrs = op["Item"]
            key = {table.hash_key_attr: attrs[table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attrs[table.range_key_attr]
            return key
        return op["Key"]

    def transact_write_items(self, transact_items):
        saved = []
        try:
            for entry in transact_items:
                op_type, op = next(iter(entry.items()))
                key = _key_of(self, op_type, op)
                current = self.get_item(op["TableName"], key)
                saved.append((op["TableName"], key, _copy.deepcopy(current)))
        except Exception:
            # Malformed request: moto's own code reports it, with its own
            # (whole-table) backup.
            return original(self, transact_items)
        state.in_txn = True
        try:
            return original(self, transact_items)
        except Exception:
            for table_name, key, item in reversed(saved):
                if item is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, item.to_json()["Attributes"])
            raise
        finally:
            state.in_txn = False

    backend_cls.transact_write_items = transact_write_items



def _install_kms_tags():
    try:
        from moto.kms.models import Key
    except Exception as exc:
        _sys.stderr.write("silo: moto KMS tag patch not installed: %r\n" % (exc,))
        return
    original = Key.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = dict(cloudformation_json.get("Properties", {}))
        tags = props.get("Tags")
        if tags:
            props["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in tags if "Key" in t]
        if isinstance(props.get("KeyPolicy"), (dict, list)):
            import json as _json

            props["KeyPolicy"] = _json.dumps(props["KeyPolicy"])
        cloudformation_json = dict(cloudformation_json, Properties=props)
        return original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)

    Key.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


def _install_secret_resource():
    try:
        from moto.core.common_models import CloudFormationModel
        from moto.secretsmanager.models import secretsmanager_backends
    except Exception as exc:
        _sys.stderr.write("silo: moto secret resource not installed: %r\n" % (exc,))
        return
    import json as _json
    import secrets as _secrets
    import string as _string

    def _generate(spec):
        length = int(spec.get("PasswordLength", 32))
        alphabet = _string.ascii_letters + _string.digits
        if not spec.get("ExcludePunctuation"):
            alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
        alphabet = "".join(c for c in alphabet if c not in spec.get("ExcludeCharacters", ""))
        value = "".join(_secrets.choice(alphabet) for _ in range(length))
        template, key = spec.get("SecretStringTemplate"), spec.get("GenerateStringKey")
        if template and key:
            doc = _json.loads(template)
            doc[key] = value
            return _json.dumps(doc)
        return value

    class SiloCfnSecret(CloudFormationModel):
        """AWS::SecretsManager::Secret for moto's CloudFormation: Ref is the
        secret's ARN, as in AWS."""

        # moto's model metaclass files instances by the service named in the
        # module path.
        __module__ = "moto.secretsmanager.models"

        def __init__(self, arn, name, account_id, region_name):
            self.arn, self.name = arn, name
            self.account_id, self.region_name = account_id, region_name

        @staticmethod
        def cloudformation_name_type():
            return "Name"

        @staticmethod
        def cloudformation_type():
            return "AWS::SecretsManager::Secret"

        @property
        def physical_resource_id(self):
            return self.arn

        @classmethod
        def has_cfn_attr(cls, attr):
            return attr in ("Id",)

        def get_cfn_attribute(self, attribute_name):
            return self.arn

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
            props = cloudformation_json.get("Properties", {})
            backend = secretsmanager_backends[account_id][region_name]
            name = props.get("Name") or "%s-%s" % (resource_name, _secrets.token_hex(6))
            value = props.get("SecretString")
            if value is None:
                value = _generate(props.get("GenerateSecretString") or {})
            created = backend.create_secret(
                name=name, secret_string=value, secret_binary=None,
                description=props.get("Description"), tags=props.get("Tags") or [],
                kms_key_id=props.get("KmsKeyId"), client_request_token=None,
                replica_regions=[], force_overwrite=False,
            )
            arn = _json.loads(created)["ARN"] if isinstance(created, str) else created["ARN"]
            return cls(arn, name, account_id, region_name)

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
            backend = secretsmanager_backends[account_id][region_name]
            try:
                backend.delete_secret(resource_name, None, True)
            except Exception:
                pass

        def delete(self, account_id, region_name):
            backend = secretsmanager_backends[account_id][region_name]
            backend.delete_secret(self.arn, None, True)

    return SiloCfnSecret


def _install_lambda_code_from_org_bucket():
    try:
        from moto.awslambda import models as _lambda_models
        from moto.s3.models import s3_backends
    except Exception as exc:
        _sys.stderr.write("silo: moto lambda code patch not installed: %r\n" % (exc,))
        return
    original = _lambda_models._validate_s3_bucket_and_key

    def _validate_s3_bucket_and_key(account_id, partition, data):
        try:
            key = original(account_id, partition, data)
        except Exception:
            key = None
            failure = _sys.exc_info()
        else:
            failure = None
        if key is not None:
            return key
        # The bucket lives in another account of the organization.
        for other in list(s3_backends.keys()):
            if other == account_id:
                continue
            try:
                return s3_backends[other][partition].get_object(data["S3Bucket"], data["S3Key"])
            except Exception:
                continue
        if failure is not None:
            raise failure[1]
        return None

    _lambda_models._validate_s3_bucket_and_key = _validate_s3_bucket_and_key


def _install_update_keeps_resources():
    try:
        from moto.cloudformation import parsing as _parsing
    except Exception as exc:
        _sys.stderr.write("silo: moto stack update patch not installed: %r\n" % (exc,))
        return
    original = _parsing.parse_and_update_resource

    def parse_and_update_resource(logical_id, resource_json, resources_map, account_id, region_name):
        updated = original(logical_id, resource_json, resources_map, account_id, region_name)
        if updated is None:
            return resources_map._parsed_resources.get(logical_id)
        return updated

    _parsing.parse_and_update_resource = parse_and_update_resource


def _install_real_resource_arns():
    try:
        from moto.dynamodb.responses import DynamoHandler
        from moto.kms.responses import KmsResponse
        from moto.secretsmanager.models import secretsmanager_backends
        from moto.secretsmanager.responses import SecretsManagerResponse
    except Exception as exc:
        _sys.stderr.write("silo: moto resource arn patch not installed: %r\n" % (exc,))
        return

    def _param(self, name):
        body = self.body
        if isinstance(body, dict):
            return body.get(name)
        return self._get_param(name)

    def _partition(region):
        return "aws-cn" if region.startswith("cn-") else "aws"

    def dynamodb_resource(self):
        name = _param(self, "TableName")
        if not name:
            return "*"
        arn = name if name.startswith("arn:") else "arn:%s:dynamodb:%s:%s:table/%s" % (
            _partition(self.region), self.region, self.current_account, name)
        index = _param(self, "IndexName")
        if index and self._get_action() in ("Query", "Scan"):
            arn += "/index/" + index
        return arn

    def kms_resource(self):
        key = _param(self, "KeyId")
        if not key:
            return "*"
        if key.startswith("arn:"):
            return key
        kind = "alias" if key.startswith("alias/") else "key"
        name = key[len("alias/"):] if kind == "alias" else key
        return "arn:%s:kms:%s:%s:%s/%s" % (_partition(self.region), self.region, self.current_account, kind, name)

    def secret_resource(self):
        secret = _param(self, "SecretId")
        if not secret:
            return "*"
        if secret.startswith("arn:"):
            return secret
        try:
            return secretsmanager_backends[self.current_account][self.region].secrets[secret].arn
        except Exception:
            return "arn:%s:secretsmanager:%s:%s:secret:%s" % (_partition(self.region), self.region, self.current_account, secret)

    DynamoHandler._determine_resource = dynamodb_resource
    KmsResponse._determine_resource = kms_resource
    SecretsManagerResponse._determine_resource = secret_resource


def _install_json_access_denied():
    try:
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto.core.exceptions import AccessDeniedError, JsonRESTError
    except Exception as exc:
        _sys.stderr.write("silo: moto JSON access denied patch not installed: %r\n" % (exc,))
        return
    original = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action

    from xml.sax.saxutils import escape as _escape

    def _authenticate_and_authorize_normal_action(self, resource="*"):
        try:
            return original(self, resource)
        except AccessDeniedError as exc:
            # JSON protocols name the operation in X-Amz-Target.
            if self.headers.get("X-Amz-Target"):
                raise JsonRESTError("AccessDeniedException", exc.message)
            # REST-JSON services (Lambda, API Gateway) read the code from
            # X-Amzn-ErrorType and a JSON body.
            scope = self.headers.get("Authorization", "").partition("Credential=")[2].split("/")
            if len(scope) > 3 and scope[3] in ("lambda", "apigateway"):
                err = JsonRESTError("AccessDeniedException", exc.message)
                err.code = 403
                raise err
            # The query protocol: the form (or the URL) names an Action.
            if "Action" in (self.querystring or {}):
                exc.description = (
                    '<?xml version="1.0" encoding="utf-8"?>\n<ErrorResponse><Error><Type>Sender</Type>'
                    "<Code>AccessDenied</Code><Message>%s</Message></Error><RequestId>silo</RequestId></ErrorResponse>"
                    % _escape(exc.message)
                )
            raise

    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = _authenticate_and_authorize_normal_action


def _install_member_role_admin():
    try:
        from moto.iam import iam_backends
        from moto.organizations.models import FakeAccount
    except Exception as exc:
        _sys.stderr.write("silo: moto member role patch not installed: %r\n" % (exc,))
        return
    import json as _json

    admin = _json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    original = FakeAccount.__init__

    def __init__(self, organization, **kwargs):
        original(self, organization, **kwargs)
        role = kwargs.get("RoleName", "OrganizationAccountAccessRole")
        iam_backends[self.id]["global"].put_role_policy(role, "AdministratorAccess", admin)

    FakeAccount.__init__ = __init__


def _install_bucket_public_access_block():
    try:
        from moto.s3.models import FakeBucket, s3_backends
    except Exception as exc:
        _sys.stderr.write("silo: moto bucket public access patch not installed: %r\n" % (exc,))
        return
    original = FakeBucket.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        bucket = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        block = cloudformation_json.get("Properties", {}).get("PublicAccessBlockConfiguration")
        if block:
            backend = s3_backends[account_id]["aws-cn" if region_name.startswith("cn-") else "aws"]
            backend.put_public_access_block(bucket.name, {k: str(bool(v) and str(v).lower() != "false").lower() for k, v in block.items()})
        return bucket

    FakeBucket.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


def _install_failed_stack_instances():
    try:
        from moto.cloudformation import models as _cfn_models
        from moto.cloudformation import parsing as _parsing
        from moto.cloudformation.models import Event, StackInstance, StackSet, cloudformation_backends
        from moto.cloudformation.responses import CloudFormationResponse
        from moto.core.exceptions import ServiceException
    except Exception as exc:
        _sys.stderr.write("silo: moto failed stack instance patch not installed: %r\n" % (exc,))
        return

    state = _threading.local()
    # One StackSet operation at a time (reentrant: UpdateStackSet updates
    # its instances inside its own operation).
    operations = _threading.RLock()

    def serialized(fn):
        def run(*args, **kwargs):
            with operations:
                return fn(*args, **kwargs)
        return run

    original_create = _parsing.parse_and_create_resource

    def parse_and_create_resource(logical_id, resource_json, resources_map, account_id, region_name):
        # Resources are created lazily, one inside another when it refers to
        # it: the innermost call that fails names the resource to blame.
        try:
            return original_create(logical_id, resource_json, resources_map, account_id, region_name)
        except Exception as exc:
            if getattr(exc, "_silo_resource", None) is None:
                try:
                    exc._silo_resource = (logical_id, resource_json.get("Type", ""))
                except Exception:
                    pass
            raise

    _parsing.parse_and_create_resource = parse_and_create_resource

    def refusal(exc, resource_type=""):
        """What the service said, as CloudFormation reports it in a
        resource event: the message, then the service and error code."""
        if isinstance(exc, ServiceException):
            code, message = exc.code, exc.message
        elif isinstance(getattr(exc, "error_type", None), str):
            code, message = exc.error_type, getattr(exc, "message", "") or str(exc)
        elif len(exc.args) == 2 and all(isinstance(a, str) for a in exc.args):
            code, message = exc.args  # moto's ValueError(code, message)
        else:
            code, message = type(exc).__name__, str(exc) or repr(exc)
        parts = resource_type.split("::")
        service = parts[1] if len(parts) == 3 else ""
        detail = "; ".join(p for p in ("Service: " + service if service else "", "Error Code: %s" % code if code else "") if p)
        return "%s (%s)" % (message, detail) if detail else message

    class NoOutputs(dict):
        """The outputs of a stack that failed: none. moto evaluates
        outputs lazily and would create the deleted resources again."""

        @property
        def exports(self):
            return []

    def fail_stack(backend, stack, exc, live):
        """Roll a member stack whose creation failed back the way StackSets
        (OnFailure DELETE) do, and return the stack's status reason."""
        logical, rtype = getattr(exc, "_silo_resource", None) or (None, "")
        rmap = stack.resource_map
        templates = rmap._resource_json_map
        created = [(lid, res) for lid, res in list(rmap._parsed_resources.items())
                   if lid in templates and res is not None and not isinstance(res, (str, dict))]

        def event(lid, rtype_, pid, status, why=None):
            stack.events.append(Event(stack_id=stack.stack_id, stack_name=stack.name, logical_resource_id=lid,
                                      physical_resource_id=pid, resource_type=rtype_, resource_status=status,
                                      resource_status_reason=why, resource_properties=None))

        def physical(res):
            try:
                return str(res.physical_resource_id)
            except Exception:
                return ""

        for lid, res in created:
            event(lid, templates[lid]["Type"], physical(res), "CREATE_IN_PROGRESS")
            event(lid, templates[lid]["Type"], physical(res), "CREATE_COMPLETE")
        if logical:
            event(logical, rtype, "", "CREATE_IN_PROGRESS")
            event(logical, rtype, "", "CREATE_FAILED", refusal(exc, rtype))
            reason = "The following resource(s) failed to create: [%s]. Delete requested by user." % logical
        else:
            reason = refusal(exc)  # the template or its parameters, before any resource
        stack._add_stack_event("DELETE_IN_PROGRESS", resource_status_reason=reason)
        left = {}
        for lid, res in reversed(created):
            rtype_ = templates[lid]["Type"]
            if templates[lid].get("DeletionPolicy") == "Retain":
                # Kept, as CloudFormation keeps it (only RetainExceptOnCreate
                # deletes what the failed operation created): it now belongs
                # to no stack, and may be in the way of the next attempt.
                rmap._parsed_resources.pop(lid, None)
                event(lid, rtype_, physical(res), "DELETE_SKIPPED")
                continue
            event(lid, rtype_, physical(res), "DELETE_IN_PROGRESS")
            try:
                rmap._delete_resource(res, templates[lid])
            except Exception as err:
                left[lid] = templates[lid]
                event(lid, rtype_, physical(res), "DELETE_FAILED", refusal(err, rtype_))
                continue
            rmap._parsed_resources.pop(lid, None)
            event(lid, rtype_, physical(res), "DELETE_COMPLETE")
        if logical:
            event(logical, rtype, "", "DELETE_COMPLETE")
        # What is left is all the stack still has (moto would create the
        # others lazily on the next look at its resources).
        rmap._resource_json_map = left
        stack.output_map = NoOutputs()
        stack.status = "DELETE_FAILED" if left else "DELETE_COMPLETE"
        stack.status_reason = reason
        stack._add_stack_event(stack.status)
        if live and not left and stack.stack_id in backend.stacks:
            backend.stacks.pop(stack.stack_id)
            backend.deleted_stacks[stack.stack_id] = stack
        return reason

    class SiloStackInstance(StackInstance):
        # moto's model metaclass files instances by the service named in
        # the module path.
        __module__ = "moto.cloudformation.models"
        # failure is the instance's StatusReason when its stack failed.
        failure = None
        duplicate = False

        def __init__(self, account_id, region_name, stackset_id, stack_name, name, template, parameters, permission_model):
            self.account_id, self.region_name, self.stackset_id = account_id, region_name, stackset_id
            self.stack_name, self.name, self.template = stack_name, name, template
            self.parameters, self.permission_model, self.stack = parameters or [], permission_model, None
            existing = getattr(state, "existing", None)
            if existing is not None and (account_id, region_name) in existing:
                # CreateStackInstances on an existing instance: skipped.
                self.duplicate = True
                return
            backend = cloudformation_backends[account_id][region_name]
            before = set(backend.stacks)
            try:
                super().__init__(account_id, region_name, stackset_id, stack_name, name, template, parameters, permission_model)
            except Exception as exc:
                stack = self.stack  # service-managed: a hidden stack
                live = stack is None
                if live:
                    new = [s for sid, s in list(backend.stacks.items()) if sid not in before and s.name == "StackSet:" + name]
                    stack = new[0] if new else None
                self.stack = stack
                self.failure = fail_stack(backend, stack, exc, live) if stack is not None else refusal(exc)

        def delete(self):
            if self.failure is None:
                return super().delete()
            stack = self.stack
            if stack is None or stack.status == "DELETE_COMPLETE":
                return  # rolled back and deleted when it failed
            backend = cloudformation_backends[self.account_id][self.region_name]
            if stack.stack_id in backend.stacks:
                backend.delete_stack(stack.stack_id)
            else:
                stack.delete()

        def to_dict(self):
            if self.failure is None:
                return super().to_dict()  # created, or skipped as a duplicate
            out = {
                "StackSetId": self.stackset_id,
                "Region": self.region_name,
                "Account": self.account_id,
                "Status": "OUTDATED",
                "StatusReason": self.failure,
                "ParameterOverrides": self.parameters,
                "StackInstanceStatus": {"DetailedStatus": "FAILED"},
            }
            if self.stack is not None:
                out["StackId"] = self.stack.stack_id
            return out

    _cfn_models.StackInstance = SiloStackInstance

    def record(operation, instances):
        failed = {(i.account_id, i.region_name): i.failure for i in instances if i.failure is not None}
        if failed:
            operation["Status"] = "FAILED"
            operation["SiloFailures"] = failed

    original_create_instances = StackSet.create_stack_instances

    def create_stack_instances(self, accounts, regions, deployment_targets, parameters):
        before = list(self.instances.stack_instances)
        state.existing = {(i.account_id, i.region_name) for i in before}
        try:
            op_id = original_create_instances(self, accounts, regions, deployment_targets, parameters)
        finally:
            state.existing = None
        self.instances.stack_instances[:] = [i for i in self.instances.stack_instances if not getattr(i, "duplicate", False)]
        new = [i for i in self.instances.stack_instances if not any(i is b for b in before)]
        record(self.get_operation(op_id), new)
        return op_id

    StackSet.create_stack_instances = serialized(create_stack_instances)

    def param_values(params):
        if isinstance(params, dict):
            return dict(params)
        return {p["ParameterKey"]: p["ParameterValue"] for p in params or [] if "ParameterValue" in p}

    original_update_instances = StackSet.update_instances

    def update_instances(self, accounts, regions, parameters):
        retried = []
        for account in accounts:
            for region in regions:
                old = self.instances.get_instance(account, region)
                if old is None or getattr(old, "failure", None) is None:
                    continue
                # StackSets create a failed instance's stack again, with the
                # stack set's current template and the instance's parameters
                # (UsePreviousValue keeps the failed attempt's value).
                values = param_values(old.parameters)
                if isinstance(parameters, dict):
                    values.update(parameters)
                else:
                    for p in parameters or []:
                        if not p.get("UsePreviousValue") and "ParameterValue" in p:
                            values[p["ParameterKey"]] = p["ParameterValue"]
                if not values:
                    values = dict(self.parameters or {})
                new = SiloStackInstance(account, region, self.id, self.instances.stack_name, self.name, self.template,
                                        [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
                                        self.permission_model)
                instances = self.instances.stack_instances
                instances[next(n for n, i in enumerate(instances) if i is old)] = new
                retried.append(new)
        operation = original_update_instances(self, accounts, regions, parameters)
        record(operation, retried)
        state.retried = retried
        return operation

    StackSet.update_instances = serialized(update_instances)

    original_update = StackSet.update

    def update(self, *args, **kwargs):
        # UpdateStackSet runs its instances' update as an operation of its
        # own and answers with another: that one reports the failures.
        state.retried = []
        try:
            operation = original_update(self, *args, **kwargs)
            record(operation, state.retried)
            return operation
        finally:
            state.retried = []

    StackSet.update = serialized(update)
    StackSet.delete_stack_instances = serialized(StackSet.delete_stack_instances)

    original_results = CloudFormationResponse.list_stack_set_operation_results

    def list_stack_set_operation_results(self):
        result = original_results(self)
        operation = self.cloudformation_backend.list_stack_set_operation_results(
            self._get_param("StackSetName"), self._get_param("OperationId"))
        failed = operation.get("SiloFailures")
        if failed:
            for summary in result.result["Summaries"]:
                reason = failed.get((summary["Account"], summary["Region"]))
                summary["Status"] = "SUCCEEDED" if reason is None else "FAILED"
                if reason is not None:
                    summary["StatusReason"] = reason
        return result

    CloudFormationResponse.list_stack_set_operation_results = list_stack_set_operation_results


def _install_event_bus_ref():
    try:
        from moto.events.models import EventBus
    except Exception as exc:
        _sys.stderr.write("silo: moto event bus ref patch not installed: %r\n" % (exc,))
        return
    EventBus.physical_resource_id = property(lambda self: self.name)


def _install_api_stages():
    try:
        from moto.apigateway.models import Deployment, apigateway_backends
        from moto.core.common_models import CloudFormationModel
    except Exception as exc:
        _sys.stderr.write("silo: moto API Gateway stage patch not installed: %r\n" % (exc,))
        return
    Deployment.physical_resource_id = property(lambda self: self.id)

    # The method settings CloudFormation names, and the keys GetStage
    # answers them under.
    settings = {
        "CacheDataEncrypted": "cacheDataEncrypted", "CacheTtlInSeconds": "cacheTtlInSeconds",
        "CachingEnabled": "cachingEnabled", "DataTraceEnabled": "dataTraceEnabled",
        "LoggingLevel": "loggingLevel", "MetricsEnabled": "metricsEnabled",
        "ThrottlingBurstLimit": "throttlingBurstLimit", "ThrottlingRateLimit": "throttlingRateLimit",
    }

    class SiloCfnStage(CloudFormationModel):
        """AWS::ApiGateway::Stage for moto's CloudFormation: Ref is the
        stage's name, as in AWS."""

        # moto's model metaclass files instances by the service named in the
        # module path.
        __module__ = "moto.apigateway.models"

        def __init__(self, api_id, name, account_id, region_name):
            self.api_id, self.name = api_id, name
            self.account_id, self.region_name = account_id, region_name

        @staticmethod
        def cloudformation_name_type():
            return "StageName"

        @staticmethod
        def cloudformation_type():
            return "AWS::ApiGateway::Stage"

        @property
        def physical_resource_id(self):
            return self.name

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
            props = cloudformation_json.get("Properties", {})
            backend = apigateway_backends[account_id][region_name]
            api_id, name = props["RestApiId"], props.get("StageName") or resource_name
            api = backend.get_rest_api(api_id)
            stage = api.stages.get(name)
            if stage is None:
                stage = backend.create_stage(
                    api_id, name, props.get("DeploymentId"), variables=props.get("Variables") or {},
                    description=props.get("Description", ""), tracing_enabled=props.get("TracingEnabled"),
                    tags={t["Key"]: t["Value"] for t in props.get("Tags") or [] if "Key" in t},
                )
            else:
                stage.deployment_id = props.get("DeploymentId") or stage.deployment_id
            for m in props.get("MethodSettings") or []:
                key = "%s/%s" % (m.get("ResourcePath", "/*").lstrip("/"), m.get("HttpMethod", "*"))
                stage.method_settings[key] = {settings[k]: v for k, v in m.items() if k in settings}
            return cls(api_id, name, account_id, region_name)

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
            props = cloudformation_json.get("Properties", {})
            try:
                apigateway_backends[account_id][region_name].delete_stage(props["RestApiId"], props.get("StageName") or resource_name)
            except Exception:
                pass

        def delete(self, account_id, region_name):
            try:
                apigateway_backends[account_id][region_name].delete_stage(self.api_id, self.name)
            except Exception:
                pass

    return SiloCfnStage


def _install_named_resources():
    try:
        from moto.cloudformation.responses import CloudFormationResponse
        from moto.events.responses import EventsHandler
    except Exception as exc:
        _sys.stderr.write("silo: moto named resource patch not installed: %r\n" % (exc,))
        return

    def _partition(region):
        return "aws-cn" if region.startswith("cn-") else "aws"

    def buses(self):
        """The ARNs of the buses a PutEvents request's entries name."""
        if self._get_action() != "PutEvents":
            return []
        out = []
        for entry in self._get_param("Entries") or []:
            bus = entry.get("EventBusName") or "default"
            if not bus.startswith("arn:"):
                bus = "arn:%s:events:%s:%s:event-bus/%s" % (_partition(self.region), self.region, self.current_account, bus)
            if bus not in out:
                out.append(bus)
        return out

    original = EventsHandler._authenticate_and_authorize_normal_action

    def events_authorize(self, resource="*"):
        for bus in buses(self) or [resource]:
            original(self, bus)

    EventsHandler._authenticate_and_authorize_normal_action = events_authorize

    def cloudformation_resource(self):
        partition, region, account = _partition(self.region), self.region, self.current_account
        stack_set = self._get_param("StackSetName")
        if stack_set:
            if stack_set.startswith("arn:"):
                return stack_set
            try:
                return self.cloudformation_backend.describe_stack_set(stack_set).arn
            except Exception:
                # Not there: the ARN of any stack set by that name.
                return "arn:%s:cloudformation:%s:%s:stackset/%s:" % (partition, region, account, stack_set)
        stack = self._get_param("StackName")
        if stack:
            if stack.startswith("arn:"):
                return stack
            try:
                return self.cloudformation_backend.get_stack(stack).stack_id
            except Exception:
                return "arn:%s:cloudformation:%s:%s:stack/%s/" % (partition, region, account, stack)
        return "*"

    CloudFormationResponse._determine_resource = cloudformation_resource


def _install_signed_body():
    try:
        from botocore.awsrequest import AWSRequest
        from moto.iam.access_control import IAMRequestBase
    except Exception as exc:
        _sys.stderr.write("silo: moto signature patch not installed: %r\n" % (exc,))
        return

    def _create_aws_request(self):
        signed_headers = self._get_string_between("SignedHeaders=", ",", self._headers["Authorization"]).split(";")
        headers = self._create_headers_for_aws_request(signed_headers, self._headers)
        # A form body (query protocol) reaches moto parsed, so moto signs
        # the parameters again as a form; any other empty body is signed as
        # empty, where moto signed its fallback parameters (the headers).
        body = self._body
        if not body:
            form = "x-www-form-urlencoded" in self._headers.get("Content-Type", "")
            body = self._data if form else b""
        request = AWSRequest(method=self._method, url=self._path, data=body, headers=headers)
        request.context["timestamp"] = headers["X-Amz-Date"]
        return request

    IAMRequestBase._create_aws_request = _create_aws_request


def _install_transaction_actions():
    try:
        from moto.dynamodb.responses import DynamoHandler
    except Exception as exc:
        _sys.stderr.write("silo: moto transaction action patch not installed: %r\n" % (exc,))
        return
    item_actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}

    def _partition(region):
        return "aws-cn" if region.startswith("cn-") else "aws"

    def items(self):
        """The (action, table ARN) of each item of a transaction, or None
        for another request."""
        action = original_action(self)
        if action not in ("TransactWriteItems", "TransactGetItems"):
            return None
        body = self.body if isinstance(self.body, dict) else {}
        if not body:
            import json as _json

            try:
                body = _json.loads(self.body or "{}")
            except Exception:
                return None
        out = []
        for entry in body.get("TransactItems") or []:
            for kind, op in entry.items():
                table = op.get("TableName", "")
                if not table.startswith("arn:"):
                    table = "arn:%s:dynamodb:%s:%s:table/%s" % (_partition(self.region), self.region, self.current_account, table)
                out.append((item_actions.get(kind, kind), table))
        return out

    original_action = DynamoHandler._get_action
    original_authorize = DynamoHandler._authenticate_and_authorize_normal_action

    def _get_action(self):
        return getattr(self, "_silo_action", None) or original_action(self)

    def authorize(self, resource="*"):
        checks = items(self)
        if checks is None:
            return original_authorize(self, resource)
        try:
            for action, table in checks:
                self._silo_action = action
                original_authorize(self, table)
        finally:
            self._silo_action = None

    DynamoHandler._get_action = _get_action
    DynamoHandler._authenticate_and_authorize_normal_action = authorize


def _install_no_queue_delivery():
    try:
        from moto.sqs.models import DEDUPLICATION_TIME_IN_SECONDS, Queue
    except Exception as exc:
        _sys.stderr.write("silo: moto queue delivery patch not installed: %r\n" % (exc,))
        return

    def add_message(self, message):
        # moto's own, without the delivery to event source mappings.
        if self.fifo_queue and (self.attributes.get("ContentBasedDeduplication") == "true" or message.deduplication_id):
            for m in self._messages:
                if m.deduplication_id == message.deduplication_id:
                    diff = message.sent_timestamp - m.sent_timestamp
                    if diff / 1000 < DEDUPLICATION_TIME_IN_SECONDS:
                        return
        with self._messages_lock:
            self._messages.append(message)
            self._messages_lock.notify_all()

    Queue.add_message = add_message


def _install_sqs_batch_actions():
    try:
        from moto.sqs.responses import SQSResponse
    except Exception as exc:
        _sys.stderr.write("silo: moto queue batch action patch not installed: %r\n" % (exc,))
        return
    single = {
        "SendMessageBatch": "SendMessage",
        "DeleteMessageBatch": "DeleteMessage",
        "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
    }
    original_action = SQSResponse._get_action
    original_authorize = SQSResponse._authenticate_and_authorize_normal_action

    def _get_action(self):
        # Only while the request is authorized: moto dispatches on the
        # real action.
        return getattr(self, "_silo_action", None) or original_action(self)

    def authorize(self, resource="*"):
        self._silo_action = single.get(original_action(self))
        try:
            return original_authorize(self, resource)
        finally:
            self._silo_action = None

    SQSResponse._get_action = _get_action
    SQSResponse._authenticate_and_authorize_normal_action = authorize


def _run(*patches):
    # One broken patch must not keep the others out.
    out = []
    for patch in patches:
        try:
            out.append(patch())
        except Exception as exc:
            _sys.stderr.write("silo: moto patch %s failed: %r\n" % (patch.__name__, exc))
    return out


_installed = _run(
    _install, _install_kms_tags, _install_secret_resource, _install_lambda_code_from_org_bucket,
    _install_update_keeps_resources, _install_real_resource_arns, _install_json_access_denied,
    _install_member_role_admin, _install_bucket_public_access_block, _install_failed_stack_instances,
    _install_event_bus_ref, _install_api_stages, _install_named_resources, _install_signed_body,
    _install_transaction_actions, _install_no_queue_delivery, _install_sqs_batch_actions,
)
