"""The worker side of generator tasks: each value a streaming generator yields is
stored as it comes (ITEM), and between two yields the worker looks whether its
consumer fell behind (backpressure) or is gone (stop); a dynamic generator's
values become objects whose refs its one return value holds.

    generator ──value──▶ Stream.put: serialize; inline in the ITEM, or CREATE +
                         write into the arena, then ITEM (the raylet seals it)
              ◀─────────  Stream.between: GEN_ACKs read so far (consumed, stop);
                          wait while `backpressure` items are not taken
"""
import inspect

from .. import exceptions
from .._private import serialization
from .._private import protocol as P


class StreamStopped(Exception):
    """The stream's consumer dropped it (or the call was cancelled): the task ends."""


class Stream:
    """One running streaming generator task's items, as its worker stores them."""

    def __init__(self, core, spec, skip, ctx):
        self.core = core
        self.conn = core.conn
        self.task_id = spec.task_id
        self.index = 0            # the index of the next value yielded
        self.skip = skip          # values stored by an earlier attempt (a retry)
        self.limit = spec.backpressure
        self.ctx = ctx

    def put(self, value):
        """The generator yielded `value`: store it as the next item."""
        index = self.index
        self.index += 1
        if index < self.skip:
            return        # stored already by the attempt this one retries
        core = self.core
        s = serialization.serialize(value)
        if s.size < core.inline_threshold:
            desc = [P.INLINE, s.to_bytes(), False, s.contained]
        else:
            off = core.create(P.item_id(self.task_id, index), s.size)
            core.write_object(off, s)
            desc = [P.ARENA, off, s.size, False, s.contained]
        # sent at once: the consumer may be waiting for it
        self.conn.send([P.ITEM, self.task_id, index, desc])

    def state(self):
        """(consumed, stop) as the raylet last told (nothing yet: (0, False))."""
        return self.conn.gen_acks.get(self.task_id) or (0, False)

    def between(self):
        """Between two yields: raise StreamStopped if the consumer is gone or the
        call was cancelled; wait while the consumer is `limit` items behind."""
        conn = self.conn
        conn.poll()
        if self.ctx.cancelled:
            raise exceptions.TaskCancelledError(self.ctx.name)
        consumed, stop = self.state()
        if stop:
            raise StreamStopped()
        if self.limit > 0 and self.index - consumed >= self.limit:
            conn.wait_for(self.may_go_on)
            if self.ctx.cancelled:
                raise exceptions.TaskCancelledError(self.ctx.name)
            if self.state()[1]:
                raise StreamStopped()

    def may_go_on(self) -> bool:
        consumed, stop = self.state()
        return stop or self.ctx.cancelled or self.index - consumed < self.limit

    def close(self):
        self.conn.gen_acks.pop(self.task_id, None)


def run_stream(core, spec, gen, skip, ctx):
    """Store every value of `gen` (the generator the task's function returned) as
    it is yielded; the task's completion value is None."""
    if not inspect.isgenerator(gen) and not hasattr(gen, "__next__"):
        raise TypeError(f"{spec.name} was called with num_returns='streaming' but "
                        f"returned {type(gen).__name__}, not a generator: make it "
                        f"yield its values, or give num_returns as an int.")
    stream = Stream(core, spec, skip, ctx)
    try:
        stream.between()
        for value in gen:
            stream.put(value)
            stream.between()
    except StreamStopped:
        pass
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            close()             # its finally blocks run (GeneratorExit)
        stream.close()
    return None


async def run_stream_async(core, spec, gen, skip, ctx):
    """run_stream for an async actor: `gen` may be an async generator; waiting
    for the consumer happens off the event loop."""
    import asyncio  # (async actors only)
    if not inspect.isasyncgen(gen):
        return run_stream(core, spec, gen, skip, ctx)
    stream = Stream(core, spec, skip, ctx)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, stream.between)
        async for value in gen:
            stream.put(value)
            stream.conn.poll()
            consumed, stop = stream.state()
            if stop or ctx.cancelled or (
                    stream.limit > 0 and stream.index - consumed >= stream.limit):
                await loop.run_in_executor(None, stream.between)
    except StreamStopped:
        pass
    finally:
        await gen.aclose()
        stream.close()
    return None


def store_dynamic(core, spec, gen, make_ref):
    """num_returns="dynamic": store each value `gen` yields as an object of its
    own (ids derived from the task's, as return values); returns the refs, for
    the task's one return value (a DynamicObjectRefGenerator holding them)."""
    if not hasattr(gen, "__next__"):
        raise TypeError(f"{spec.name} was called with num_returns='dynamic' but "
                        f"returned {type(gen).__name__}, not a generator.")
    refs = []
    for index, value in enumerate(gen):
        oid = P.item_id(spec.task_id, index)
        s = serialization.serialize(value)
        if s.size < core.inline_threshold:
            core.put_serialized(oid, s)          # PUT: counted as ours
            refs.append(make_ref(oid, True))
        else:
            off = core.create(oid, s.size)
            core.write_object(off, s)
            refs.append(make_ref(oid, False))    # its REF_ADD goes before the SEAL
            core.queue([P.SEAL, oid, s.contained, False])
    return refs
