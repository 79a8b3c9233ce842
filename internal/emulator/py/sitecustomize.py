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
    _install_update_keeps_resources,
)
