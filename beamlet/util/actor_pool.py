"""ActorPool: spread work over a fixed set of actors (Ray's `ray.util.ActorPool`).

    pool = ActorPool([A.remote(), A.remote()])
    list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3]))   # in input order
    list(pool.map_unordered(...))                                # as they finish

Each actor runs one submitted job at a time; values submitted while every actor is
busy wait in the pool (in the caller's process) and go to the next actor that
becomes free, which happens when its result is taken with get_next*().
"""
from .. import api


class ActorPool:
    def __init__(self, actors):
        actors = list(actors)
        self._idle = actors                 # free actors (pop_idle takes the last)
        self._busy = {}                     # ref -> (submission index, actor)
        self._by_index = {}                 # submission index -> ref
        self._next_index = 0                # index of the next submission
        self._next_return = 0               # index get_next() returns next
        self._waiting = []                  # (fn, value) submitted while all busy

    # ------------------------------------------------------------ submitting
    def submit(self, fn, value):
        """Run `fn(actor, value)` (which must return an ObjectRef, e.g.
        `lambda a, v: a.method.remote(v)`) on a free actor, or queue it until one
        is free."""
        if not self._idle:
            self._waiting.append((fn, value))
            return
        actor = self._idle.pop()
        ref = fn(actor, value)
        key = _key(ref)
        self._busy[key] = (self._next_index, actor)
        self._by_index[self._next_index] = ref
        self._next_index += 1

    def map(self, fn, values):
        """Apply `fn(actor, value)` to every value; yields results in the order of
        `values`.  Results of earlier submissions not yet taken are dropped."""
        self._drop_pending()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn, values):
        """As map(), but yields each result as soon as it is ready."""
        self._drop_pending()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next_unordered()

    def _drop_pending(self):
        # take (and ignore) whatever earlier submissions left behind, so map()
        # yields only its own results
        while self.has_next():
            try:
                self.get_next_unordered(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass

    # ------------------------------------------------------------ results
    def has_next(self) -> bool:
        """Whether any submitted job's result has not been taken yet."""
        return bool(self._busy)

    def get_next(self, timeout=None, ignore_if_timedout=False):
        """The result of the oldest job not yet returned (submission order).

        With `timeout`, raises TimeoutError if it is not ready in time; with
        `ignore_if_timedout=True` that job is then skipped (its actor freed)."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return >= self._next_index:
            raise ValueError("get_next() cannot be called after get_next_unordered() "
                             "took the results it would return; use "
                             "get_next_unordered() for the rest.")
        ref = self._by_index[self._next_return]
        timed_out = False
        if timeout is not None:
            ready, _ = api.wait(_as_list(ref), num_returns=len(_as_list(ref)),
                                timeout=timeout)
            if not ready:
                if not ignore_if_timedout:
                    raise TimeoutError(f"Timed out waiting for result after "
                                       f"{timeout} s")
                timed_out = True
        del self._by_index[self._next_return]
        self._next_return += 1
        _, actor = self._busy.pop(_key(ref))
        self._return_actor(actor)
        if timed_out:
            raise TimeoutError(f"Timed out waiting for result after {timeout} s; "
                               f"the job {ref} has been skipped.")
        return api.get(ref)

    def get_next_unordered(self, timeout=None, ignore_if_timedout=False):
        """The result of any finished job (the first to finish)."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        firsts = {_first(ref_key): ref_key for ref_key in self._busy}
        ready, _ = api.wait(list(firsts), num_returns=1, timeout=timeout)
        if not ready:
            msg = f"Timed out waiting for result after {timeout} s"
            if ignore_if_timedout:
                msg += "; no job was skipped"
            raise TimeoutError(msg)
        key = firsts[ready[0]]
        index, actor = self._busy.pop(key)
        ref = self._by_index.pop(index)
        self._next_return = max(self._next_return, index + 1)
        self._return_actor(actor)
        return api.get(ref)

    # ------------------------------------------------------------ actors
    def _return_actor(self, actor):
        self._idle.append(actor)
        if self._waiting:
            self.submit(*self._waiting.pop(0))

    def has_free(self) -> bool:
        """Whether an actor is free and no submitted job is waiting for one."""
        return bool(self._idle) and not self._waiting

    def pop_idle(self):
        """Remove a free actor from the pool and return it (None if none is)."""
        if self.has_free():
            return self._idle.pop()
        return None

    def push(self, actor):
        """Add an actor to the pool (it takes a waiting job at once, if any)."""
        busy = [a for _, a in self._busy.values()]
        if actor in self._idle or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)


def _key(ref):
    """A hashable key for what fn returned: one ref, or a list of refs
    (num_returns > 1)."""
    return tuple(ref) if isinstance(ref, list) else ref


def _as_list(ref):
    return list(ref) if isinstance(ref, (list, tuple)) else [ref]


def _first(key):
    return key[0] if isinstance(key, tuple) else key
