# Loaded by Python at start-up (it is on PYTHONPATH) when silo's emulator
# harness starts moto_server. It fixes one moto behaviour that makes the
# emulator unusable for silo's registry at scale:
#
#   moto's DynamoDB TransactWriteItems deep-copies every table it touches
#   before applying the transaction, to roll back on failure. That makes one
#   transaction cost O(table size): about 0.4 s per transaction with a few
#   hundred items in the table, where DynamoDB answers in milliseconds.
#
# The patch keeps moto's own transaction logic (condition evaluation, error
# reporting) and replaces only its whole-table backup with a backup of the
# items the transaction touches. It relies on silo's proxy serializing
# DynamoDB writes, as DynamoDB does, so no other write interleaves.
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


_install()
