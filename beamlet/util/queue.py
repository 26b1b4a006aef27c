"""Queue: a FIFO queue shared by the driver, tasks and actors (Ray's
`ray.util.queue.Queue`).

The items live in an async actor (one asyncio.Queue); a Queue object is just a
handle to that actor, so it can be passed to tasks and actors, and every copy sees
the same queue.  A blocking put/get waits inside the actor (a coroutine awaiting
the asyncio.Queue), so many waiters cost no threads and do not block each other.

The queue's actor lives as long as some Queue object refers to it (or until
shutdown()).
"""
import asyncio
import queue as _queue

from .. import api
from ..actor import kill


class Empty(_queue.Empty):
    """get_nowait() (or a get that timed out) found the queue empty."""


class Full(_queue.Full):
    """put_nowait() (or a put that timed out) found the queue full."""


class _QueueActor:
    """The actor holding the items (async: waiting puts/gets interleave)."""

    def __init__(self, maxsize):
        self.maxsize = maxsize
        self.q = asyncio.Queue(maxsize)

    def qsize(self):
        return self.q.qsize()

    def empty(self):
        return self.q.empty()

    def full(self):
        return self.q.full()

    async def put(self, item, timeout=None):
        try:
            await asyncio.wait_for(self.q.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full(f"The queue stayed full for {timeout} s.") from None

    async def get(self, timeout=None):
        try:
            return await asyncio.wait_for(self.q.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty(f"The queue stayed empty for {timeout} s.") from None

    def put_nowait(self, item):
        try:
            self.q.put_nowait(item)
        except asyncio.QueueFull:
            raise Full(f"The queue is full (maxsize={self.maxsize}).") from None

    def put_nowait_batch(self, items):
        # all or nothing
        if self.maxsize > 0 and len(items) + self.q.qsize() > self.maxsize:
            raise Full(f"Cannot add {len(items)} items to a queue holding "
                       f"{self.q.qsize()} items with maxsize {self.maxsize}.")
        for item in items:
            self.q.put_nowait(item)

    def get_nowait(self):
        try:
            return self.q.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty("The queue is empty.") from None

    def get_nowait_batch(self, num_items):
        if num_items > self.q.qsize():
            raise Empty(f"Cannot get {num_items} items from a queue holding "
                        f"{self.q.qsize()} items.")
        return [self.q.get_nowait() for _ in range(num_items)]


class Queue:
    """A first-in first-out queue usable from any process of the cluster.

    Args:
        maxsize: the most items it holds (0: no limit).
        actor_options: options for the queue's actor, as `A.options(...)` takes
            (e.g. num_cpus, name, lifetime).
    """

    def __init__(self, maxsize: int = 0, actor_options: dict = None):
        if not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be an int >= 0, got {maxsize!r}.")
        self.maxsize = maxsize
        options = dict(actor_options or {})
        cls = api.remote(_QueueActor)
        self.actor = cls.options(**options).remote(maxsize) if options \
            else cls.remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue now."""
        return _result(self.actor.qsize.remote())

    qsize = size

    def empty(self) -> bool:
        return _result(self.actor.empty.remote())

    def full(self) -> bool:
        return _result(self.actor.full.remote())

    def put(self, item, block: bool = True, timeout: float = None) -> None:
        """Add `item`.  block=False: raise Full at once if there is no room;
        otherwise wait for room, at most `timeout` seconds (None: forever), then
        raise Full."""
        if not block:
            return self.put_nowait(item)
        _check_timeout(timeout)
        _result(self.actor.put.remote(item, timeout))

    async def put_async(self, item, block: bool = True, timeout: float = None):
        if not block:
            return await self.actor.put_nowait.remote(item)
        _check_timeout(timeout)
        await self.actor.put.remote(item, timeout)

    def get(self, block: bool = True, timeout: float = None):
        """Remove and return the oldest item.  block=False: raise Empty at once if
        there is none; otherwise wait, at most `timeout` seconds, then raise
        Empty."""
        if not block:
            return self.get_nowait()
        _check_timeout(timeout)
        return _result(self.actor.get.remote(timeout))

    async def get_async(self, block: bool = True, timeout: float = None):
        if not block:
            return await self.actor.get_nowait.remote()
        _check_timeout(timeout)
        return await self.actor.get.remote(timeout)

    def put_nowait(self, item) -> None:
        """put(item, block=False): raises Full if the queue is full."""
        _result(self.actor.put_nowait.remote(item))

    def put_nowait_batch(self, items) -> None:
        """Add all `items` at once, or none of them (raises Full)."""
        if not isinstance(items, (list, tuple)):
            try:
                items = list(items)
            except TypeError:
                raise TypeError(f"put_nowait_batch() takes an iterable of items, "
                                f"got {type(items).__name__}.") from None
        _result(self.actor.put_nowait_batch.remote(list(items)))

    def get_nowait(self):
        """get(block=False): raises Empty if the queue is empty."""
        return _result(self.actor.get_nowait.remote())

    def get_nowait_batch(self, num_items: int) -> list:
        """Remove and return `num_items` items, or none (raises Empty if fewer are
        there)."""
        if not isinstance(num_items, int) or num_items < 0:
            raise ValueError(f"num_items must be an int >= 0, got {num_items!r}.")
        return _result(self.actor.get_nowait_batch.remote(num_items))

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """End the queue's actor (its items are lost).  Calls that still wait in
        it raise ActorDiedError."""
        if self.actor is not None:
            kill(self.actor)
            self.actor = None

    def __reduce__(self):
        return (_rebuild, (self.maxsize, self.actor))


def _rebuild(maxsize, actor):
    q = Queue.__new__(Queue)
    q.maxsize = maxsize
    q.actor = actor
    return q


def _result(ref):
    """get(ref), raising Empty/Full from the queue's actor as themselves (not
    wrapped in a TaskError), as queue.Queue does."""
    from ..exceptions import TaskError
    try:
        return api.get(ref)
    except TaskError as e:
        if isinstance(e.cause, (Empty, Full)):
            raise e.cause from None
        raise


def _check_timeout(timeout):
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"'timeout' must be a non-negative number or None, got "
                         f"{timeout!r}.")
