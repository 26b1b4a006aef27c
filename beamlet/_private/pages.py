"""Creating and mapping shared-memory pages ahead of use, without holding the GIL.

A write to an arena page never used before costs a page fault in which the kernel
allocates and zeroes the page; on the machines we measure that is slower than the
copy that follows it.  The object store therefore maps pages ahead of its
allocation frontier and putters map them ahead of their writes, each in a thread
of its own.  Those threads must let the process's other threads run meanwhile:
`mmap.madvise` holds the GIL for the whole call (a 200 MB MADV_POPULATE_WRITE
stalls every other thread of the process for ~0.2 s: the raylet's loop, a
putter's main thread), so

  Mapping(mm).populate(off, n)
                        maps the pages of [off, off + n) into this process's
                        mapping `mm`, creating those that do not exist
                        (madvise(MADV_POPULATE_WRITE) through ctypes, which
                        releases the GIL; it changes no data)

returns False where the kernel or platform cannot (the caller then lets the pages
fault in on first touch, which is always correct, or touches them: `touch`)."""
import ctypes
import ctypes.util
import mmap
import sys

# madvise(MADV_POPULATE_WRITE) (Linux 5.14+)
POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23 if sys.platform == "linux" else 0)

_libc = None


def _madvise():
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fn = lib.madvise
            fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
            fn.restype = ctypes.c_int
            _libc = fn
        except (OSError, AttributeError):
            _libc = False
    return _libc


class Mapping:
    """One shared mapping whose ranges can be populated from any thread.

    The mapping must outlive every populate() call (its owner stops the threads
    that call it before closing it)."""

    def __init__(self, mm: mmap.mmap):
        self.mm = mm
        self.size = len(mm)
        fn = _madvise() if POPULATE_WRITE else False
        self.base = None
        if fn:
            anchor = ctypes.c_char.from_buffer(mm)   # (an export: released below)
            self.base = ctypes.addressof(anchor)
            del anchor
        self.fn = fn

    def populate(self, off: int, n: int) -> bool:
        """Map the pages of [off, off + n) (page-aligned outward, clipped to the
        mapping) into this process."""
        start = off - off % mmap.PAGESIZE
        end = min(self.size, off + n + (-(off + n) % mmap.PAGESIZE))
        if end <= start or not POPULATE_WRITE:
            return end <= start
        if self.fn:
            if self.fn(self.base + start, end - start, POPULATE_WRITE) == 0:
                return True
            if ctypes.get_errno() not in (22, 38):   # EINVAL/ENOSYS: kernel < 5.14
                return False
            self.fn = False
            return False
        try:
            self.mm.madvise(POPULATE_WRITE, start, end - start)
            return True
        except (OSError, ValueError):
            return False

    def touch(self, off: int, n: int) -> None:
        """Read one byte of each page of [off, off + n) (holding the GIL): for
        kernels without MADV_POPULATE_WRITE.  A shared memfd page is created on
        a read fault too, and a read cannot undo a write made meanwhile."""
        view = memoryview(self.mm)
        try:
            touched = 0
            for p in range(off - off % mmap.PAGESIZE, min(self.size, off + n),
                           mmap.PAGESIZE):
                touched |= view[p]
        finally:
            view.release()
