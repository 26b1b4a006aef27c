"""Serialization of values into the bytes an object store holds.

Layout of a serialized object (all integers little-endian):

    u32 nbufs | u32 pickle_len | u64 buffer_len * nbufs | pickle | buffers

Every out-of-band buffer starts at a 64-byte aligned offset (relative to the
start of the object, which the arena places at a page boundary), so numpy arrays
read from the store are aligned.  A large buffer may start up to PLACE_MOD bytes
later than that: its padding is kept in the top 16 bits of its buffer_len word
(the length is the low 48).  It is placed so that its address in the store is
not a little ahead of its source's modulo 4 KiB: glibc's memcpy of a very large
buffer (here from about 160 MB: glibc 2.36, AMD EPYC) whose destination is 1 to
about 1,000 bytes ahead of its source modulo a page (4K aliasing) ran 3.5x
slower (200 MB: 58 ms against 16 ms), and a put of a 200 MB array landed there
or not by the length of its pickle.  Values are pickled with protocol 5; buffers that
support it (numpy arrays, bytes-like objects via PickleBuffer) go out of band and
are written straight into their final place, never copied into the pickle.

Functions, lambdas and classes defined in `__main__` or closures are pickled by
value with cloudpickle.  ObjectRefs found inside a value are collected while it
is pickled, so the store can keep them alive as long as the value lives.
"""
import collections
import gc
import io
import pickle
import struct
import threading
import types

import cloudpickle

from .. import exceptions

_HDR = struct.Struct("<II")
_U64 = struct.Struct("<Q")
ALIGN = 64
_LEN_BITS = 48
_LEN_MASK = (1 << _LEN_BITS) - 1
PLACE_MIN = 8 << 20     # buffers at least this large are placed (below)
PLACE_MOD = 4096        # ... relative to their source's address modulo a page
PLACE_AVOID = 1024      # ... not 1..PLACE_AVOID-1 bytes ahead of it
_FAST_TYPES = frozenset((int, float, str, bytes, bool, type(None)))

_local = threading.local()


def _align(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def _address(buf):
    """The address of a buffer's first byte, or None where it cannot be read."""
    try:
        import numpy
        return numpy.frombuffer(buf, dtype=numpy.uint8).ctypes.data
    except Exception:
        return None


def _padding(pos: int, buf) -> int:
    """Bytes to add after the aligned offset `pos` for buffer `buf` (which must be
    aligned itself): the least padding that keeps the store's copy from trailing
    the source by 1..PLACE_AVOID-1 bytes modulo PLACE_MOD."""
    if buf.nbytes < PLACE_MIN:
        return 0
    src = _address(buf)
    if src is None:
        return 0
    ahead = (pos - src) % PLACE_MOD
    if ahead == 0 or ahead >= PLACE_AVOID:
        return 0
    return _align(PLACE_AVOID - ahead)


# cloudpickle 3.1+ writes "<dynamic-code>" as the file name of the code it pickles
# by value; keep the real one, so that remote tracebacks show the file, the line
# and (where the file exists on the worker's machine) the source line.
_cloudpickle_code_reduce = cloudpickle.CloudPickler.dispatch_table.get(types.CodeType)


def _code_reduce_keep_filename(code):
    fn, args = _cloudpickle_code_reduce(code)
    return fn, tuple(code.co_filename if type(a) is str and a == "<dynamic-code>" else a
                     for a in args)


# Serializers registered with register_serializer(): class -> reducer.  Consulted
# first, for exactly these classes (as Ray's), by every pickle this process makes.
_custom_reducers = {}


class _Pickler(cloudpickle.CloudPickler):
    dispatch_table = collections.ChainMap(
        _custom_reducers,
        {types.CodeType: _code_reduce_keep_filename}
        if _cloudpickle_code_reduce is not None else {},
        cloudpickle.CloudPickler.dispatch_table)


def register_serializer(cls, *, serializer, deserializer) -> None:
    """Pickle instances of `cls` as `deserializer(serializer(obj))` (Ray's
    ray.util.register_serializer).  It applies to what this process serializes
    (a driver's arguments and puts; a worker's — if the task registers it too —
    results); the deserializer travels inside the pickle, so no process needs to
    register anything to read the value back.  The deserializer must be
    picklable (cloudpickle pickles one defined in __main__ by value)."""
    if not isinstance(cls, type):
        raise TypeError(f"register_serializer() takes a class, got "
                        f"{type(cls).__name__}.")
    if not callable(serializer) or not callable(deserializer):
        raise TypeError("register_serializer() needs callables serializer=... and "
                        "deserializer=...")

    def reduce(obj):
        return deserializer, (serializer(obj),)
    _custom_reducers[cls] = reduce


def deregister_serializer(cls) -> None:
    """Forget the serializer registered for `cls` (no effect if there is none)."""
    _custom_reducers.pop(cls, None)


def record_contained_ref(object_id: bytes) -> None:
    """Called by ObjectRef.__reduce__: note the ref in the value being pickled."""
    stack = getattr(_local, "stack", None)
    if stack:
        stack[-1].append(object_id)


class SerializedObject:
    """A value turned into a pickle plus out-of-band buffers, not yet laid out."""
    __slots__ = ("pickled", "buffers", "contained", "size", "pads")

    def __init__(self, pickled, buffers, contained):
        self.pickled = pickled
        self.buffers = buffers
        self.contained = contained
        size = _HDR.size + 8 * len(buffers) + len(pickled)
        pads = []
        for b in buffers:
            size = _align(size)
            pad = _padding(size, b)
            pads.append(pad)
            size += pad + b.nbytes
        self.size = size
        self.pads = pads

    def write_to(self, dest: memoryview) -> None:
        """Lay the object out into `dest` (at least self.size bytes)."""
        bufs = self.buffers
        _HDR.pack_into(dest, 0, len(bufs), len(self.pickled))
        pos = _HDR.size
        for b, pad in zip(bufs, self.pads):
            _U64.pack_into(dest, pos, b.nbytes | pad << _LEN_BITS)
            pos += 8
        end = pos + len(self.pickled)
        dest[pos:end] = self.pickled
        pos = end
        for b, pad in zip(bufs, self.pads):
            pos = _align(pos) + pad
            n = b.nbytes
            dest[pos:pos + n] = b.cast("B") if b.format != "B" or b.ndim != 1 else b
            pos += n

    def to_bytes(self) -> bytes:
        if not self.buffers:
            return _HDR.pack(0, len(self.pickled)) + self.pickled
        out = bytearray(self.size)
        self.write_to(memoryview(out))
        return bytes(out)


def serialize(value) -> SerializedObject:
    if type(value) in _FAST_TYPES:
        return SerializedObject(pickle.dumps(value, protocol=5), [], [])
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    contained = []
    buffers = []
    stack.append(contained)
    try:
        def take(pb):
            try:
                buffers.append(pb.raw())
            except BufferError:  # not contiguous: let pickle copy it in band
                return True
            return False
        try:
            f = io.BytesIO()
            _Pickler(f, protocol=5, buffer_callback=take).dump(value)
            pickled = f.getvalue()
        except Exception as e:
            raise exceptions.SerializationError(
                f"Could not serialize {_describe(value)}: {type(e).__name__}: {e}. "
                "Values passed to and returned from remote functions must be "
                "picklable (cloudpickle); pass the state needed to rebuild the "
                "object instead (for example a path, not an open file)."
            ) from e
    finally:
        stack.pop()
    return SerializedObject(pickled, buffers, contained)


def _describe(value) -> str:
    try:
        r = repr(value)
    except Exception:
        r = object.__repr__(value)
    if len(r) > 120:
        r = r[:117] + "..."
    return f"a value of type {type(value).__module__}.{type(value).__qualname__} ({r})"


def split(data) -> tuple:
    """Parse a serialized object: returns (pickle memoryview, [buffer memoryviews])."""
    mv = memoryview(data)
    nbufs, plen = _HDR.unpack_from(mv, 0)
    pos = _HDR.size
    words = []
    for _ in range(nbufs):
        words.append(_U64.unpack_from(mv, pos)[0])
        pos += 8
    pick = mv[pos:pos + plen]
    pos += plen
    bufs = []
    for w in words:
        n = w & _LEN_MASK
        pos = _align(pos) + (w >> _LEN_BITS)
        bufs.append(mv[pos:pos + n])
        pos += n
    return pick, bufs


# Refs rebuilt while a value is unpickled are counted together, once it is done
# (one lock, C-level dict updates; an object holding 10,000 refs spent a quarter
# of its get counting them one by one): ObjectRef's reconstructor appends each
# new ref to the innermost list of this thread's `rebuilding` stack, and
# `refs_rebuilt` (set by object_ref: this module does not know the worker) gets
# the list after the load, also when it raised.  The list holds the refs
# themselves, so none is dropped (and uncounted) before it was counted.
refs_rebuilt = None

# Unpickling a large value (or many values for one get) with the cyclic GC on
# runs collection after collection that can free nothing (everything built is
# reachable from what is being built) and traverses the same new containers
# again in each older generation: a get of 10,000 lists of 10,000 ints took
# 7.9-15.2 s with it, 6.1 s without.  pause_gc() turns it off for such a load
# and resume_gc() back on; the objects built are collected as usual afterwards.
# Only where it was on (a program that turned it off keeps it off), and not for
# small loads (two calls cost more than a small get).
PAUSE_GC_PICKLE_BYTES = 32 * 1024


def pause_gc() -> bool:
    """Turn the cyclic GC off if it is on; whether it was (for resume_gc)."""
    if gc.isenabled():
        gc.disable()
        return True
    return False


def resume_gc(paused: bool) -> None:
    if paused:
        gc.enable()


def rebuilding():
    """The list a ref being unpickled now joins, or None (not in deserialize)."""
    stack = getattr(_local, "rebuilding", None)
    return stack[-1] if stack else None


def deserialize(data):
    """Rebuild a value.  Buffers stay views of `data` (zero-copy, read-only when
    `data` is read-only)."""
    stack = getattr(_local, "rebuilding", None)
    if stack is None:
        stack = _local.rebuilding = []
    refs = []
    stack.append(refs)
    paused = False
    try:
        if len(data) >= 8 and data[0] == 0 and data[1] == 0 and data[2] == 0 \
                and data[3] == 0:
            pick, bufs = memoryview(data)[_HDR.size:], None
        else:
            pick, bufs = split(data)
        if len(pick) >= PAUSE_GC_PICKLE_BYTES:
            paused = pause_gc()
        return pickle.loads(pick, buffers=bufs)
    finally:
        resume_gc(paused)
        stack.pop()
        if refs:
            refs_rebuilt(refs)


def dumps_function(fn) -> bytes:
    """Pickle a function or class by value (for export to the GCS)."""
    try:
        f = io.BytesIO()
        _Pickler(f, protocol=5).dump(fn)
        return f.getvalue()
    except Exception as e:
        raise exceptions.SerializationError(
            f"Could not serialize {getattr(fn, '__qualname__', fn)!r} for remote "
            f"execution: {type(e).__name__}: {e}. A remote function or actor class "
            "must not capture unpicklable objects (locks, sockets, open files) in its "
            "closure or globals; create them inside the function instead."
        ) from e
