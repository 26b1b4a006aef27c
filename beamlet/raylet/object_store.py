"""The node's object table and shared-memory arena accounting (pure: no I/O).

Objects under `config.INLINE_THRESHOLD` bytes are kept inline (bytes held by the
raylet, sent inside messages).  Larger ones live in the arena: one memfd-backed
shared-memory region per node, mapped by the raylet and every local process.
The allocator below hands out page-aligned ranges of it (first fit over a sorted
free list, coalescing on free); the bytes themselves are written by the client
that creates the object and read in place by every client that gets it.

Object states (the only legal moves are in TRANSITIONS):

    PENDING --seal--> SEALED --spill--> SPILLED --restore--> SEALED
    any state --free--> FREED   (refcount reached zero)

An arena object is never freed, spilled or moved while a process pins it (holds
a view of its memory): freeing then waits for the last UNPIN.
"""
import bisect
import enum
import time

PAGE = 4096


class ObjState(enum.Enum):
    PENDING = "PENDING"      # id known (a task will make it), no value yet
    CREATING = "CREATING"    # arena space reserved, the creator is writing
    SEALED = "SEALED"        # value present (inline or in the arena), immutable
    SPILLED = "SPILLED"      # value moved to a file under the session dir
    FREED = "FREED"          # no reference left; memory returned


TRANSITIONS = {
    ObjState.PENDING: {ObjState.CREATING, ObjState.SEALED, ObjState.FREED},
    ObjState.CREATING: {ObjState.SEALED, ObjState.FREED},
    ObjState.SEALED: {ObjState.SPILLED, ObjState.FREED},
    ObjState.SPILLED: {ObjState.SEALED, ObjState.FREED},
    ObjState.FREED: set(),
}


class IllegalTransition(RuntimeError):
    pass


class Obj:
    __slots__ = ("oid", "state", "data", "offset", "size", "is_error", "refcount",
                 "pins", "contained", "waiters", "last_access", "spill_path",
                 "free_when_unpinned", "owner_task", "restoring", "owner")

    def __init__(self, oid, owner_task=None):
        self.oid = oid
        self.state = ObjState.PENDING
        self.data = None          # bytes, for inline objects
        self.offset = -1          # arena offset, for arena objects
        self.size = 0
        self.is_error = False
        self.refcount = 0
        self.pins = 0
        self.contained = ()
        self.waiters = []         # callables run once the object is sealed
        self.last_access = 0.0
        self.spill_path = None
        self.free_when_unpinned = False
        self.owner_task = owner_task
        self.restoring = False    # being read back from its spill file
        self.owner = None         # the worker process that put it (its owner)

    def move(self, new_state):
        if new_state not in TRANSITIONS[self.state]:
            raise IllegalTransition(
                f"object {self.oid.hex()}: {self.state.value} -> {new_state.value}")
        self.state = new_state

    @property
    def in_arena(self):
        return self.offset >= 0

    def descriptor(self):
        """The wire descriptor (see protocol.py) of a sealed object."""
        if self.data is not None:
            return [0, self.data, self.is_error]
        return [1, self.offset, self.size, self.is_error]


class Allocator:
    """First-fit allocator over [0, capacity) with page-aligned blocks."""

    def __init__(self, capacity: int):
        self.capacity = capacity - capacity % PAGE
        self._free_starts = [0]                 # sorted block starts
        self._free_size = {0: self.capacity}    # start -> size
        self.used = 0

    @staticmethod
    def rounded(size: int) -> int:
        return max(PAGE, (size + PAGE - 1) & ~(PAGE - 1))

    def alloc(self, size: int):
        """Offset of a new block of at least `size` bytes, or None if no hole fits."""
        need = self.rounded(size)
        for start in self._free_starts:
            block = self._free_size[start]
            if block >= need:
                i = bisect.bisect_left(self._free_starts, start)
                del self._free_starts[i]
                del self._free_size[start]
                if block > need:
                    rest = start + need
                    bisect.insort(self._free_starts, rest)
                    self._free_size[rest] = block - need
                self.used += need
                return start
        return None

    def free(self, offset: int, size: int) -> None:
        size = self.rounded(size)
        self.used -= size
        starts = self._free_starts
        i = bisect.bisect_left(starts, offset)
        # merge with the next block
        if i < len(starts) and starts[i] == offset + size:
            size += self._free_size.pop(starts[i])
            del starts[i]
        # merge with the previous block
        if i > 0:
            prev = starts[i - 1]
            if prev + self._free_size[prev] == offset:
                self._free_size[prev] += size
                return
        starts.insert(i, offset)
        self._free_size[offset] = size

    def largest_hole(self) -> int:
        return max(self._free_size.values(), default=0)


class ObjectTable:
    """Objects of this node, their reference counts and arena placement."""

    def __init__(self, arena_capacity: int):
        self.objects = {}
        self.allocator = Allocator(arena_capacity)
        self.inline_bytes = 0
        self.spilled_bytes = 0
        # Objects freed (no reference left) while a process still maps them: out
        # of `objects`, but their arena range stays allocated until the last UNPIN.
        self.freed_pinned = {}

    def get_or_create(self, oid, owner_task=None) -> Obj:
        o = self.objects.get(oid)
        if o is None:
            o = self.objects[oid] = Obj(oid, owner_task)
        return o

    def seal_inline(self, o: Obj, data: bytes, is_error: bool, contained) -> list:
        """Seal with inline bytes; returns the waiters to run."""
        o.move(ObjState.SEALED)
        o.data = data
        o.size = len(data)
        o.is_error = bool(is_error)
        o.contained = tuple(contained) if contained else ()
        o.last_access = time.monotonic()
        self.inline_bytes += o.size
        w, o.waiters = o.waiters, []
        return w

    def reserve(self, o: Obj, size: int):
        off = self.allocator.alloc(size)
        if off is None:
            return None
        o.move(ObjState.CREATING)
        o.offset = off
        o.size = size
        return off

    def seal_arena(self, o: Obj, is_error: bool, contained) -> list:
        o.move(ObjState.SEALED)
        o.is_error = bool(is_error)
        o.contained = tuple(contained) if contained else ()
        o.last_access = time.monotonic()
        w, o.waiters = o.waiters, []
        return w

    def spill_candidates(self):
        """Sealed, unpinned arena objects, least recently used first."""
        c = [o for o in self.objects.values()
             if o.state is ObjState.SEALED and o.in_arena and o.pins == 0]
        c.sort(key=lambda o: o.last_access)
        return c

    def pinned(self, oid):
        """The object an UNPIN refers to: freed (or replaced) but still mapped, or
        live."""
        o = self.freed_pinned.get(oid)
        return o if o is not None else self.objects.get(oid)

    def replace_with_error(self, o: Obj, data: bytes) -> None:
        """Sealed `o` becomes the inline error `data` (its owner died: the value
        is lost, as in Ray).  An arena range processes still map stays allocated
        until their last UNPIN, as the range of a freed object would."""
        if o.data is not None:
            self.inline_bytes -= o.size
        elif o.offset >= 0:
            if o.pins > 0:
                ghost = Obj(o.oid)
                ghost.state = ObjState.FREED
                ghost.offset, ghost.size, ghost.pins = o.offset, o.size, o.pins
                ghost.free_when_unpinned = True
                self.freed_pinned[o.oid] = ghost
            else:
                self.allocator.free(o.offset, o.size)
            o.offset = -1
            o.pins = 0
        o.data = data
        o.size = len(data)
        o.is_error = True
        self.inline_bytes += o.size

    def release_memory(self, o: Obj) -> None:
        """Return the memory of an object that is being freed."""
        if o.data is not None:
            self.inline_bytes -= o.size
            o.data = None
        elif o.offset >= 0:
            self.allocator.free(o.offset, o.size)
            o.offset = -1

    def stats(self) -> dict:
        return {
            "objects": len(self.objects),
            "arena_capacity": self.allocator.capacity,
            "arena_used": self.allocator.used,
            "inline_bytes": self.inline_bytes,
            "spilled_bytes": self.spilled_bytes,
            "freed_pinned": len(self.freed_pinned),
        }
