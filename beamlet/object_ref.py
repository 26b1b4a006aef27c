"""ObjectRef: a reference to an immutable object in the cluster.

While an ObjectRef exists in any process, inside another live object, or as a
pending task's argument, its object stays available.  Creating and dropping refs
costs a dict update; the raylet hears about it in batches.
"""
import concurrent.futures

from . import exceptions
from ._private import serialization
from ._private.ids import OBJECT_ID_SIZE, TaskID
from .worker import core_worker


def _bad_id(object_id):
    if not isinstance(object_id, bytes):
        raise TypeError(f"ObjectRef() takes an object id: {OBJECT_ID_SIZE} bytes (e.g. "
                        f"ref.binary()), not {type(object_id).__name__}.")
    raise ValueError(f"ObjectRef() takes an object id of {OBJECT_ID_SIZE} bytes (e.g. "
                     f"ref.binary()), got {len(object_id)} bytes.")


class ObjectRef:
    __slots__ = ("id", "_core", "__weakref__")

    def __init__(self, object_id: bytes, _registered=False):
        if type(object_id) is not bytes or len(object_id) != OBJECT_ID_SIZE:
            self._core = None   # (for __del__)
            _bad_id(object_id)
        self.id = object_id
        core = core_worker.global_worker
        self._core = core
        if core is not None:
            core.ref_inc(object_id, _registered)

    def __del__(self):
        core = self._core
        if core is not None and not core.closed:
            core.ref_dec(self.id)

    def __reduce__(self):
        serialization.record_contained_ref(self.id)
        core = self._core
        if core is not None:
            core.escape(self.id)    # the raylet must know it before it travels
        return (_rebuild, (self.id,))

    def binary(self) -> bytes:
        return self.id

    def hex(self) -> str:
        return self.id.hex()

    def task_id(self):
        return TaskID(self.id[:16])

    def __eq__(self, other):
        return type(other) is ObjectRef and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __lt__(self, other):
        return self.id < other.id

    def __repr__(self):
        return f"ObjectRef({self.id.hex()})"

    # ---- futures / asyncio
    def future(self) -> concurrent.futures.Future:
        """A concurrent.futures.Future resolved with the object's value."""
        fut = concurrent.futures.Future()
        core = self._core or core_worker.global_worker
        if core is None or core.closed:
            fut.set_exception(exceptions.RaySystemError(
                f"{self!r}: this process is not connected to the cluster that holds "
                f"it (shutdown() ran, or init() was never called)."))
            return fut

        def run():
            try:
                fut.set_result(core.get_values([self.id])[0])
            except BaseException as e:
                fut.set_exception(e)
        _executor().submit(run)
        return fut

    def __await__(self):
        import asyncio  # (only code that awaits refs needs it: workers stay light)
        return asyncio.wrap_future(self.future()).__await__()


def _rebuild(object_id):
    """An ObjectRef unpickled: counted with the others of the same value when
    serialization.deserialize is done (one call), else at once."""
    refs = serialization.rebuilding()
    if refs is None or type(object_id) is not bytes:
        return ObjectRef(object_id)
    r = _new(ObjectRef)
    r.id = object_id
    r._core = core = core_worker.global_worker
    if core is not None:
        refs.append(r)
    return r


def _count_rebuilt(refs):
    core = refs[0]._core
    if not core.closed:
        core.ref_inc_many([r.id for r in refs])


_new = object.__new__
serialization.refs_rebuilt = _count_rebuilt

_pool = None


def _executor():
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="beamlet-await")
    return _pool


ObjectID = ObjectRef
