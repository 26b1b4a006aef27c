"""Identifiers.

A TaskID is 16 bytes: an 8-byte prefix random per process plus an 8-byte counter,
so ids are unique without a syscall or a round trip.  An ObjectID is 20 bytes: the
id of the task that made it plus a 4-byte index.  Return values use indexes
1..num_returns, so a lost return object can be rebuilt by re-running its task
(lineage); objects made by `put` inside a task use indexes with the high bit set.
"""
import itertools
import os
import struct

TASK_ID_SIZE = 16
OBJECT_ID_SIZE = 20
PUT_INDEX_BIT = 0x80000000

_prefix = os.urandom(8)
_counter = itertools.count(1)
_pid = os.getpid()


def _refresh_after_fork():
    global _prefix, _counter, _pid
    _prefix = os.urandom(8)
    _counter = itertools.count(1)
    _pid = os.getpid()


os.register_at_fork(after_in_child=_refresh_after_fork)

_pack_q = struct.Struct(">Q").pack
_pack_i = struct.Struct(">I").pack


def new_task_id() -> bytes:
    return _prefix + _pack_q(next(_counter))


def random_id(size: int = 16) -> bytes:
    return os.urandom(size)


def return_id(task_id: bytes, index: int) -> bytes:
    """Id of the index-th return value (1-based) of a task."""
    return task_id + _pack_i(index)


def put_id(task_id: bytes, put_index: int) -> bytes:
    return task_id + _pack_i(PUT_INDEX_BIT | put_index)


def task_of(object_id: bytes) -> bytes:
    return object_id[:TASK_ID_SIZE]


def is_put_object(object_id: bytes) -> bool:
    return bool(object_id[TASK_ID_SIZE] & 0x80)


class BaseID:
    """A typed, hashable id shown as hex, for the public API (ray's *ID classes)."""
    __slots__ = ("binary_",)
    size = 16

    def __init__(self, binary: bytes):
        self.binary_ = binary

    @classmethod
    def from_hex(cls, hex_str: str):
        return cls(bytes.fromhex(hex_str))

    def binary(self) -> bytes:
        return self.binary_

    def hex(self) -> str:
        return self.binary_.hex()

    def __eq__(self, other):
        return type(self) is type(other) and self.binary_ == other.binary_

    def __hash__(self):
        return hash(self.binary_)

    def __repr__(self):
        return f"{type(self).__name__}({self.hex()})"

    def __reduce__(self):
        return (type(self), (self.binary_,))


class JobID(BaseID):
    pass


class NodeID(BaseID):
    pass


class WorkerID(BaseID):
    pass


class TaskID(BaseID):
    pass


class ActorID(BaseID):
    pass


class PlacementGroupID(BaseID):
    pass
