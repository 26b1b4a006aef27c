"""Pool: `multiprocessing.Pool`'s API on a beamlet cluster (Ray's
`ray.util.multiprocessing.Pool`), with actors as the pool's processes.

    caller threads                 dispatcher thread (one per pool)
    map/imap/apply ─▶ job ─┐        ┌─────────────────────────────────────────┐
                           └─▶ jobs │ fill: take each job's next chunk while an │
                                    │  actor has < DEPTH chunks in flight, and  │
                                    │  call actor.run_chunk(func, items)        │
                                    │ wait on the refs in flight; as each comes │
                                    │  back: job.chunk_done(index, outcomes)    │
                                    └─────────────────────────────────────────┘

A job is one call (map, imap, apply_async ...): its items, cut into chunks.  The
items of an imap are read lazily, a chunk at a time, as actors become free and
at most a window (2 * DEPTH chunks per process) ahead of what the caller has
consumed, so a long or endless iterable is not held in memory.  Each actor runs a chunk's items
one by one and returns, per item, the value or the exception with its traceback;
the caller gets the exception itself (as multiprocessing gives it, with the
remote traceback as its __cause__).  Callbacks run in the dispatcher thread, as
multiprocessing runs them in its result-handler thread.

Departures from multiprocessing: functions and arguments are pickled with
cloudpickle (lambdas and local functions work); `context` is ignored; an actor
that dies fails the items of the chunk it ran and is replaced; terminate() fails
outstanding results with an error instead of leaving them waiting forever.
"""
import collections
import itertools
import multiprocessing
import os
import sys
import threading
import traceback
import warnings
from multiprocessing.pool import RemoteTraceback

import cloudpickle

from ... import api, exceptions

DEPTH = 2          # chunks in flight per actor: one running, one queued behind it
POLL_S = 0.05      # the dispatcher looks for newly submitted chunks this often


@api.remote(num_cpus=0)
class PoolActor:
    """One process of a Pool."""

    def __init__(self, initializer, initargs):
        if initializer is not None:
            initializer(*initargs)

    def ping(self):
        return os.getpid()

    def run_chunk(self, func, items):
        out = []
        for args, kwargs in items:
            try:
                out.append((True, func(*args, **kwargs), None))
            except Exception as e:
                out.append((False, _sendable(e), traceback.format_exc()))
        return out


def _sendable(exc):
    """`exc`, or a RuntimeError describing it when it cannot be pickled."""
    try:
        cloudpickle.dumps(exc)
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc} (the exception could not be "
                            f"pickled to send it back from the pool's process)")


def _with_remote_traceback(exc, tb):
    """exc, with the traceback text from the pool's process as its __cause__ (as
    multiprocessing shows it)."""
    if tb is not None:
        exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    return exc


class PoolTerminated(RuntimeError):
    pass


WAIT = object()    # next_chunk(): not now (see IMapIterator.hold_back)


# ------------------------------------------------------------------ jobs
class _Job:
    """What one call submitted: chunks of (args, kwargs) items for `func`."""

    def __init__(self, func, chunks):
        self.func_ref = api.put(func)     # pickled once, shared by the chunks
        self._chunks = chunks             # iterator of item lists
        self._next_index = 0
        self.finished = False             # no more chunks will be submitted

    def next_chunk(self):
        """(index, items) of the next chunk, None when there is none, or WAIT when
        the caller should consume results first (called by the dispatcher)."""
        if self.finished:
            return None
        if self.hold_back():
            return WAIT
        items = next(self._chunks, None)
        if items is None:
            self.finished = True
            self.exhausted(self._next_index)
            return None
        self._next_index += 1
        self.submitted(len(items))
        return self._next_index - 1, items

    def hold_back(self) -> bool:
        """True while the caller holds enough results not yet consumed."""
        return False

    def release(self):
        """The pool was closed: run the rest without waiting for the caller."""

    def submitted(self, n_items):
        """n_items more items were sent to the actors."""

    def exhausted(self, n_chunks):
        """The job's chunks are all submitted: there are n_chunks."""

    def chunk_done(self, index, outcomes):
        raise NotImplementedError

    def chunk_failed(self, index, exc):
        """The chunk's task failed as a whole (its actor died, ...)."""
        raise NotImplementedError


def _chunks_of(items, size):
    it = iter(items)
    return iter(lambda: list(itertools.islice(it, size)) or None, None)


class AsyncResult(_Job):
    """The result of apply_async / map_async / starmap_async."""

    def __init__(self, func, chunks, n_chunks, single, callback, error_callback):
        super().__init__(func, chunks)
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._parts = [None] * n_chunks
        self._left = n_chunks
        self._event = threading.Event()
        self._ok = None
        self._value = None
        if n_chunks == 0:
            self._ok, self._value = True, []
            self._event.set()

    # called by the dispatcher
    def chunk_done(self, index, outcomes):
        if self._event.is_set():
            return
        for ok, value, tb in outcomes:
            if not ok:
                return self._finish(False, _with_remote_traceback(value, tb))
        self._parts[index] = [v for _, v, _ in outcomes]
        self._left -= 1
        if self._left == 0:
            values = [v for part in self._parts for v in part]
            self._finish(True, values[0] if self._single else values)

    def chunk_failed(self, index, exc):
        if not self._event.is_set():
            self._finish(False, exc)

    def _finish(self, ok, value):
        self.finished = True           # a failed map submits no more of its chunks
        self._ok, self._value = ok, value
        cb = self._callback if ok else self._error_callback
        if cb is not None:
            try:
                cb(value)
            except Exception:
                traceback.print_exc()
        self._event.set()

    # the caller's side
    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._ok

    def wait(self, timeout=None) -> None:
        self._event.wait(timeout)

    def get(self, timeout=None):
        if not self._event.wait(timeout):
            raise multiprocessing.TimeoutError
        if not self._ok:
            raise self._value
        return self._value


class IMapIterator(_Job):
    """The iterator imap / imap_unordered return: results in input order, or as
    they finish."""

    def __init__(self, func, chunks, ordered, window, kick):
        super().__init__(func, chunks)
        self._ordered = ordered
        self._window = window            # items sent but not yet consumed, at most
        self._kick = kick                # asks the dispatcher to send more
        self._sent = 0
        self._consumed = 0
        self._held_back = False
        self._cond = threading.Condition()
        self._done = {}                  # chunk index -> outcomes (ordered)
        self._ready = collections.deque()  # outcomes ready to be yielded
        self._next_chunk = 0             # ordered: the chunk to yield from next
        self._n_chunks = None            # known once the input is exhausted
        self._n_taken = 0                # chunks moved to _ready
        self._error = None               # the pool or the input failed

    def hold_back(self):
        # so that a slow consumer of an endless input does not make the pool
        # read (and keep the results of) the whole input
        if self._sent - self._consumed >= self._window:
            self._held_back = True
        return self._held_back

    def submitted(self, n_items):
        self._sent += n_items

    def release(self):
        self._window = float("inf")
        self._held_back = False

    def exhausted(self, n_chunks):
        with self._cond:
            self._n_chunks = n_chunks
            self._cond.notify_all()

    def chunk_done(self, index, outcomes):
        with self._cond:
            if self._ordered:
                self._done[index] = outcomes
                while self._next_chunk in self._done:
                    self._ready.extend(self._done.pop(self._next_chunk))
                    self._next_chunk += 1
                    self._n_taken += 1
            else:
                self._ready.extend(outcomes)
                self._n_taken += 1
            self._cond.notify_all()

    def chunk_failed(self, index, exc):
        self.chunk_done(index, [(False, exc, None)])

    def fail(self, exc):
        """The rest of the results will not come (input error, pool terminated)."""
        with self._cond:
            self.finished = True
            self._error = exc
            self._cond.notify_all()

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def next(self, timeout=None):
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._ready or self._error is not None or
                self._n_chunks == self._n_taken, timeout)
            if not ok:
                raise multiprocessing.TimeoutError
            if self._ready:
                ok, value, tb = self._ready.popleft()
                self._consumed += 1
                kick = self._held_back and self._sent - self._consumed < self._window
                if kick:
                    self._held_back = False
            elif self._error is not None:
                raise self._error
            else:
                raise StopIteration
        if kick:
            self._kick()
        if not ok:
            raise _with_remote_traceback(value, tb)
        return value


# ------------------------------------------------------------------ dispatcher
class _Slot:
    """One process of the pool: its actor and the chunks sent to it."""
    __slots__ = ("actor", "inflight", "count")

    def __init__(self, actor):
        self.actor = actor
        self.inflight = 0
        self.count = 0        # chunks sent to this actor (for maxtasksperchild)


RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"


class _Dispatcher:
    """Owns the pool's actors, its queue of jobs and every chunk in flight."""

    def __init__(self, make_actor, processes, maxtasksperchild):
        self._make_actor = make_actor
        self._maxtasks = maxtasksperchild
        self.slots = [_Slot(make_actor()) for _ in range(processes)]
        self.state = RUN
        self._cond = threading.Condition()
        self._jobs = collections.deque()      # jobs with chunks not yet submitted
        self._inflight = {}                   # ref -> (job, index, slot, actor)
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="beamlet-pool")
        self._thread.start()

    def pids(self):
        return api.get([s.actor.ping.remote() for s in self.slots])

    def add(self, job):
        with self._cond:
            if self.state != RUN:
                raise ValueError("Pool not running")
            self._jobs.append(job)
            failed = self._fill()
            self._cond.notify_all()
        _fail_jobs(failed)

    def kick(self):
        """Send more chunks if there is room (a consumer made some)."""
        with self._cond:
            failed = self._fill()
            self._cond.notify_all()
        _fail_jobs(failed)

    def close(self):
        with self._cond:
            if self.state == RUN:
                self.state = CLOSE
            for job in self._jobs:
                job.release()        # join() waits for all of it, as multiprocessing's
            failed = self._fill()
            self._cond.notify_all()
        _fail_jobs(failed)

    def terminate(self):
        with self._cond:
            self.state = TERMINATE
            jobs = list(self._jobs) + [v[0] for v in self._inflight.values()]
            self._jobs.clear()
            self._inflight.clear()
            slots, self.slots = self.slots, []
            self._cond.notify_all()
        err = PoolTerminated("The Pool was terminated before this result was ready.")
        _fail_jobs([(j, err) for j in dict.fromkeys(jobs)])
        for s in slots:
            try:
                api.kill(s.actor)
            except Exception:
                pass   # already gone, or the cluster is

    def join(self, timeout=None):
        self._thread.join(timeout)

    # ---- the dispatcher thread
    def _fill(self):
        """(holding _cond) Send chunks to actors with room; returns the jobs whose
        input failed, with the error."""
        failed = []
        while self._jobs and self.state != TERMINATE:
            slot = min(self.slots, key=lambda s: s.inflight)
            if slot.inflight >= DEPTH:
                break
            job, chunk = self._next_chunk(failed)
            if job is None:
                break
            index, items = chunk
            ref = slot.actor.run_chunk.remote(job.func_ref, items)
            self._inflight[ref] = (job, index, slot, slot.actor)
            slot.inflight += 1
            slot.count += 1
            if self._maxtasks and slot.count >= self._maxtasks:
                # its queued chunks still run; the old actor ends when they have
                slot.actor, slot.count = self._make_actor(), 0
        return failed

    def _next_chunk(self, failed):
        """(holding _cond) The first job, in submission order, with a chunk to
        send now, and that chunk; (None, None) if none has."""
        for job in list(self._jobs):
            try:
                chunk = job.next_chunk()
            except Exception as e:     # the caller's iterable raised
                self._jobs.remove(job)
                failed.append((job, e))
                continue
            if chunk is None:
                self._jobs.remove(job)
            elif chunk is not WAIT:
                return job, chunk
        return None, None

    def _loop(self):
        while True:
            with self._cond:
                while not self._inflight:
                    if self.state == TERMINATE or (self.state == CLOSE and not self._jobs):
                        self.slots = []          # the actors end once unreferenced
                        return
                    self._cond.wait()
                refs = list(self._inflight)
            try:
                ready, _ = api.wait(refs, num_returns=1, timeout=POLL_S)
            except Exception as e:               # the cluster went away
                self._abandon(e)
                return
            for ref in ready:
                self._complete(ref)

    def _complete(self, ref):
        try:
            outcomes, failure = api.get(ref), None
        except Exception as e:
            outcomes, failure = None, e
        with self._cond:
            entry = self._inflight.pop(ref, None)
            if entry is None:                    # terminated meanwhile
                return
            job, index, slot, actor = entry
            slot.inflight -= 1
            if isinstance(failure, exceptions.ActorDiedError) and slot.actor is actor \
                    and self.state != TERMINATE:
                slot.actor, slot.count = self._make_actor(), 0   # replace the dead one
            failed = self._fill()
        _fail_jobs(failed)
        if failure is None:
            job.chunk_done(index, outcomes)
        else:
            job.chunk_failed(index, failure)

    def _abandon(self, exc):
        with self._cond:
            jobs = list(self._jobs) + [v[0] for v in self._inflight.values()]
            self._jobs.clear()
            self._inflight.clear()
            self.state = TERMINATE
        _fail_jobs([(j, exc) for j in dict.fromkeys(jobs)])


def _fail_jobs(failed):
    for job, exc in failed:
        if isinstance(job, IMapIterator):
            job.fail(exc)
        else:
            job.chunk_failed(-1, exc)


# ------------------------------------------------------------------ Pool
class Pool:
    """A pool of actor processes with multiprocessing.Pool's API.

    processes: how many actors (default: the cluster's CPU count).  initializer,
    initargs: run `initializer(*initargs)` in each actor as it starts.
    maxtasksperchild: replace an actor after it ran this many chunks.  context:
    ignored.  ray_address: the cluster to connect to when beamlet is not
    initialized (default: BEAMLET_ADDRESS / RAY_ADDRESS, else a new local cluster
    with `processes` CPUs).  ray_remote_args: options of the actors (default
    num_cpus=0, as Ray's pool).
    """

    def __init__(self, processes=None, initializer=None, initargs=(),
                 maxtasksperchild=None, context=None, ray_address=None,
                 ray_remote_args=None):
        if processes is not None and (isinstance(processes, bool) or
                                      not isinstance(processes, int) or processes < 1):
            raise ValueError(f"Number of processes must be at least 1, got {processes!r}.")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (
                isinstance(maxtasksperchild, bool) or
                not isinstance(maxtasksperchild, int) or maxtasksperchild < 1):
            raise ValueError(f"maxtasksperchild must be a positive int or None, got "
                             f"{maxtasksperchild!r}.")
        if context is not None:
            warnings.warn("Pool(context=...) is ignored on beamlet: the pool's processes "
                          "are actors.", stacklevel=2)
        ensure_connected(processes, ray_address)
        cpus = int(api.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = max(cpus, 1)
        elif processes > cpus:
            raise ValueError(f"Tried to start a pool with {processes} processes on a "
                             f"cluster that has only {cpus} CPUs.")
        actor_class = PoolActor.options(**ray_remote_args) if ray_remote_args else PoolActor
        initargs = tuple(initargs or ())
        self._processes = processes
        self._dispatcher = _Dispatcher(lambda: actor_class.remote(initializer, initargs),
                                       processes, maxtasksperchild)
        try:
            self._dispatcher.pids()      # the actors exist (and their initializer ran)
        except BaseException:
            self._dispatcher.terminate()
            raise

    # ---- submitting
    def apply(self, func, args=(), kwds=None, *, kwargs=None):
        """func(*args, **kwds) in one of the pool's processes; its result.
        (`kwargs=` is Ray's name for multiprocessing's `kwds`.)"""
        return self.apply_async(func, args, kwds, kwargs=kwargs).get()

    def apply_async(self, func, args=(), kwds=None, callback=None, error_callback=None,
                    *, kwargs=None):
        if kwds is not None and kwargs is not None:
            raise TypeError("apply_async() takes kwds= or kwargs= (the same), not both.")
        items = [(tuple(args or ()), dict(kwds or kwargs or {}))]
        job = AsyncResult(func, iter([items]), 1, True, callback, error_callback)
        self._dispatcher.add(job)
        return job

    def map(self, func, iterable, chunksize=None):
        """[func(x) for x in iterable], computed in the pool; in input order."""
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func, iterable, chunksize=None, callback=None,
                  error_callback=None):
        return self._map(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func, iterable, chunksize=None):
        """[func(*args) for args in iterable], computed in the pool."""
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
                      error_callback=None):
        return self._map(func, iterable, chunksize, True, callback, error_callback)

    def imap(self, func, iterable, chunksize=1):
        """An iterator of func(x) for x in iterable, in input order."""
        return self._imap(func, iterable, chunksize, True)

    def imap_unordered(self, func, iterable, chunksize=1):
        """An iterator of func(x) for x in iterable, in the order they finish."""
        return self._imap(func, iterable, chunksize, False)

    def _map(self, func, iterable, chunksize, star, callback, error_callback):
        self._check_running()
        items = [_item(x, star) for x in iterable]
        if chunksize is None:
            chunksize, extra = divmod(len(items), self._processes * 4)
            chunksize += bool(extra)
        else:
            _check_chunksize(chunksize)
        n_chunks = -(-len(items) // chunksize) if items else 0
        job = AsyncResult(func, _chunks_of(items, chunksize or 1), n_chunks, False,
                          callback, error_callback)
        if n_chunks:
            self._dispatcher.add(job)
        return job

    def _imap(self, func, iterable, chunksize, ordered):
        self._check_running()
        _check_chunksize(chunksize)
        items = (_item(x, False) for x in iterable)
        window = 2 * DEPTH * self._processes * chunksize
        job = IMapIterator(func, _chunks_of(items, chunksize), ordered, window,
                           self._dispatcher.kick)
        self._dispatcher.add(job)
        return job

    def _check_running(self):
        if self._dispatcher.state != RUN:
            raise ValueError("Pool not running")

    # ---- ending
    def close(self):
        """No more work may be submitted; the actors end once the outstanding work
        is done."""
        self._dispatcher.close()

    def terminate(self):
        """Stop now: kill the actors; outstanding results raise PoolTerminated."""
        self._dispatcher.terminate()

    def join(self):
        """Wait for the outstanding work of a closed (or terminated) pool."""
        if self._dispatcher.state == RUN:
            raise ValueError("Pool is still running")
        self._dispatcher.join()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()

    def __del__(self):
        d = getattr(self, "_dispatcher", None)
        if d is not None and d.state == RUN and not sys.is_finalizing():
            try:
                d.terminate()
            except Exception:
                pass

    def __repr__(self):
        return f"<beamlet.util.multiprocessing.Pool state={self._dispatcher.state} " \
               f"processes={self._processes}>"


def _item(x, star):
    return (tuple(x), {}) if star else ((x,), {})


def _check_chunksize(chunksize):
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")


def ensure_connected(num_cpus=None, address=None):
    """Connect to a cluster unless this process already is (Ray's rule for its
    pool): `address`, else BEAMLET_ADDRESS / RAY_ADDRESS, else a new local cluster
    with `num_cpus` CPUs (default: this machine's)."""
    if api.is_initialized():
        return
    address = address or os.environ.get("BEAMLET_ADDRESS") or \
        os.environ.get("RAY_ADDRESS")
    if address:
        api.init(address=address)
    else:
        api.init(num_cpus=num_cpus)
