"""What a generator task returns: ObjectRefGenerator (num_returns="streaming", the
default for generator functions) and DynamicObjectRefGenerator
(num_returns="dynamic"), as Ray has them.

An ObjectRefGenerator yields one ObjectRef per value the task yields, as soon as
the task has stored it (before the task ends): `next()` asks the raylet for the
next item (GEN_NEXT), which answers once it exists, with the items stored after
it too (kept here, in order: a stream read after it was made costs one round trip
per batch); each ref is then counted as this process's, like any other.  An error the task raised (or a crash,
or cancel()) is its last item: `get` of that ref raises it, the `next()` after it
raises StopIteration.  Dropping the generator frees the items not taken yet and
stops the task at its next yield (GEN_DROP); it cannot be passed to other tasks.
"""
import collections

from . import exceptions
from ._private import protocol as P
from .object_ref import ObjectRef, _executor
from .worker import core_worker


class ObjectRefGenerator:
    """The refs of a streaming generator task's values, in the order it yields
    them.  Iterate it (`for ref in gen`, `next(gen)`, `async for`), pass it to
    `wait()` (ready when its next item is), `cancel()` it; `completed()` is a ref
    ready when the task has ended (its get raises the task's error, if any)."""

    def __init__(self, completion: ObjectRef, core=None):
        self._completion = completion
        self._task_id = completion.id[:16]
        self._core = core or core_worker.global_worker
        self._index = 0           # the next item to ask the raylet for
        self._ended = False       # the raylet said no item comes after these
        self._taken = collections.deque()   # refs had from the raylet, not handed out

    # ---- the sync iterator
    def __iter__(self):
        return self

    def __next__(self) -> ObjectRef:
        ref = self._next(None)
        if ref is None:
            raise StopIteration
        return ref

    def _next(self, timeout):
        """The next item's ref; None at the end; raises GetTimeoutError if it is
        not there within `timeout` seconds."""
        if not self._taken and not self._ended:
            self._fetch(timeout)
        return self._taken.popleft() if self._taken else None

    def _fetch(self, timeout):
        core = self._core
        if core is None or core.closed:
            raise exceptions.RaySystemError(
                f"{self!r}: this process is no longer connected to the cluster that "
                f"runs its task (shutdown() ran).")
        reply = core.gen_next(self._task_id, self._index, timeout)
        if reply is None:
            raise exceptions.GetTimeoutError(
                f"The next item of {self!r} was not ready within {timeout} s.")
        items, self._ended = reply
        for item in items:
            oid = P.item_id(self._task_id, self._index)
            self._index += 1
            if item and not item[1]:
                core.cache_inline(oid, item[0])   # its bytes came along: get is local
            self._taken.append(ObjectRef(oid, _registered=True))

    def _next_sync(self, timeout_s=None):
        """Ray's name: the next ref, or None at the end or after `timeout_s`."""
        try:
            return self._next(timeout_s)
        except exceptions.GetTimeoutError:
            return None

    # ---- asyncio
    def __aiter__(self):
        return self

    async def __anext__(self) -> ObjectRef:
        import asyncio  # (only code that iterates asynchronously needs it)
        fut = _executor().submit(self._next, None)
        ref = await asyncio.wrap_future(fut)
        if ref is None:
            raise StopAsyncIteration
        return ref

    # ---- state
    def completed(self) -> ObjectRef:
        """A ref that is ready once the task has ended (raises its error, if any)."""
        return self._completion

    def next_ready(self) -> bool:
        """Whether next() would return at once (an item is there, or the end)."""
        if self._taken or self._ended:
            return True
        try:
            self._fetch(0)
        except exceptions.GetTimeoutError:
            return False
        return True

    def is_finished(self) -> bool:
        """Whether every item has been handed out (next() raises StopIteration)."""
        return self.next_ready() and not self._taken and self._ended

    def _next_item_id(self) -> bytes:
        """The id wait() waits on: the next item's entry (or the end marker)."""
        if self._taken:
            return self._taken[0].id
        return P.item_id(self._task_id, self._index)

    def task_id(self):
        from ._private.ids import TaskID
        return TaskID(self._task_id)

    # ---- life
    def __del__(self):
        core = self._core
        if core is not None and not core.closed:
            core.queue([P.GEN_DROP, self._task_id])   # (sent with the next message)

    def __reduce__(self):
        raise TypeError("An ObjectRefGenerator cannot be passed to another task or "
                        "actor (as in Ray): pass the refs it yields, or a list of them.")

    def __repr__(self):
        return f"ObjectRefGenerator({self._task_id.hex()})"


class DynamicObjectRefGenerator:
    """The value of a num_returns="dynamic" task: the refs of every value it
    yielded, in order (iterate it; len() is their count)."""

    def __init__(self, refs):
        self._refs = list(refs)

    def __iter__(self):
        return iter(self._refs)

    def __len__(self):
        return len(self._refs)

    def __repr__(self):
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


# Ray's old name for the streaming generator
StreamingObjectRefGenerator = ObjectRefGenerator

__all__ = ["ObjectRefGenerator", "DynamicObjectRefGenerator",
           "StreamingObjectRefGenerator"]
