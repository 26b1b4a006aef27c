"""Every error beamlet raises to users, with Ray's public names (ray.exceptions):
`except ray.exceptions.X` works for every X of Ray's list.  Names with "Ray" in
them are aliases of beamlet's (RayError is BeamletError, RayTaskError is
TaskError) or, where Ray has a base class of its own (RayActorError), that class.

Some classes exist for programs that name them but are not raised by beamlet (yet):
each says so.
"""


class BeamletError(Exception):
    """Base class of beamlet's own errors."""


class TaskError(BeamletError):
    """A task or actor method raised.  At `get` it is re-raised as an instance of
    both TaskError and the original exception's class, so `except ValueError`
    catches a remote ValueError; its message carries the remote traceback."""

    def __init__(self, function_name, traceback_str, cause=None, pid=None, ip=None):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.ip = ip
        super().__init__(self._message())

    def _message(self):
        where = f" (pid={self.pid}, ip={self.ip})" if self.pid else ""
        return f"{self.function_name}(){where}\n{self.traceback_str.rstrip()}"

    def __reduce__(self):
        return (TaskError, (self.function_name, self.traceback_str,
                            _CauseBox(self.cause), self.pid, self.ip))

    def __str__(self):
        return self._message()

    def as_instanceof_cause(self):
        """This error as an instance of a class deriving from TaskError and the
        cause's class (when that class can be subclassed).  Only for Exception
        subclasses: a remote KeyboardInterrupt or SystemExit must not look like a
        Ctrl-C or sys.exit() of the driver itself."""
        cause_cls = type(self.cause) if self.cause is not None else None
        if cause_cls is None or issubclass(cause_cls, TaskError) or \
                not issubclass(cause_cls, Exception):
            return self
        try:
            cls = _dual_classes.get(cause_cls)
            if cls is None:
                cls = type(f"TaskError({cause_cls.__name__})", (TaskError, cause_cls),
                           {"__module__": __name__, "__init__": _dual_init,
                            "__reduce__": TaskError.__reduce__,
                            "__str__": TaskError.__str__})
                _dual_classes[cause_cls] = cls
            err = cls.__new__(cls)
            # the cause's own attributes (e.code of a custom error), then ours
            state = getattr(self.cause, "__dict__", None)
            if state:
                err.__dict__.update(state)
            _dual_init(err, self.function_name, self.traceback_str, self.cause,
                       self.pid, self.ip)
            return err
        except Exception:  # e.g. a class with an incompatible layout, or one
            return self    # whose __init_subclass__ or metaclass refuses us


class _CauseBox:
    """Pickles a TaskError's cause so that it loads even when its class's
    __init__ does not take its own args (`def __init__(self, a, b)` calling
    super().__init__(f"{a}-{b}") breaks plain exception pickling)."""

    def __init__(self, exc):
        self.exc = exc

    def __reduce__(self):
        e = self.exc
        if isinstance(e, BaseException) and type(e).__reduce__ is BaseException.__reduce__:
            return (rebuild_exception, (type(e), e.args, getattr(e, "__dict__", None)))
        return (_identity, (e,))


def _identity(x):
    return x


def rebuild_exception(cls, args, state):
    """An instance of exception class `cls` with these args and attributes, even
    when its __init__ does not take its own args."""
    try:
        e = cls(*args)
    except Exception:
        e = cls.__new__(cls, *args)
        e.args = args
    if state:
        try:
            e.__dict__.update(state)
        except AttributeError:
            pass
    return e


def _dual_init(self, function_name, traceback_str, cause=None, pid=None, ip=None):
    self.function_name = function_name
    self.traceback_str = traceback_str
    self.cause = cause
    self.pid = pid
    self.ip = ip
    self.args = (self._message(),)


_dual_classes = {}


class GetTimeoutError(BeamletError, TimeoutError):
    """`get` or `wait` ran past its timeout."""


class TaskCancelledError(BeamletError):
    """The task was cancelled with `cancel()`."""

    def __init__(self, task_name="", message=None):
        self.task_name = task_name
        super().__init__(message or f"Task {task_name} was cancelled.")

    def __reduce__(self):
        return (TaskCancelledError, (self.task_name, self.args[0] if self.args else None))


class WorkerCrashedError(BeamletError):
    """The worker process running the task died (and retries ran out)."""


class LocalRayletDiedError(BeamletError):
    """The task's local raylet died."""


class RayActorError(BeamletError):
    """The actor is dead or unavailable: the base of ActorDiedError and
    ActorUnavailableError (as in Ray)."""


class ActorDiedError(RayActorError):
    """The actor is dead: killed, crashed (restarts ran out) or its creation failed."""


class ActorUnavailableError(RayActorError):
    """The actor is restarting and cannot take calls now.  (Not raised by beamlet:
    calls to a restarting actor wait for it.)"""


class ActorExit(BaseException):
    """Raised by exit_actor() to end the actor after the current call.  A
    BaseException, so that a method's `except Exception` does not swallow it."""


class AsyncioActorExit(BeamletError):
    """Ray's exit_actor() exception in async actors; raising it in an actor method
    ends the actor as exit_actor() does."""


class ObjectLostError(BeamletError):
    """Every copy of the object is gone and it cannot be rebuilt."""


class ObjectFetchTimedOutError(ObjectLostError):
    """Fetching the object from another node took too long."""


class ObjectFreedError(ObjectLostError):
    """The object was freed while still needed."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object (created its ref) died."""


class ObjectReconstructionFailedError(ObjectLostError):
    """The object was lost and re-running the task that made it failed."""


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectLostError):
    """The object was lost more often than its task may be re-run."""


class ObjectReconstructionFailedLineageEvictedError(ObjectLostError):
    """The object was lost and the record of how to rebuild it is gone."""


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """The object was freed although a reference to it still existed (a bug)."""


class ObjectStoreFullError(BeamletError):
    """The object can never fit in the object store (or spilling is impossible).
    Not a MemoryError (as in Ray): MemoryError's special allocator makes a class
    deriving from it and from TaskError impossible to instantiate, which would
    break `except ObjectStoreFullError` around a task's failed return."""


class OutOfDiskError(ObjectStoreFullError):
    """Spilling failed because the disk is full."""


class OutOfMemoryError(BeamletError):
    """The node ran out of memory and the task's worker was killed to free it."""


class SerializationError(BeamletError, TypeError):
    """A value could not be pickled or unpickled."""


class UnserializableException(BeamletError):
    """A task raised an exception that could not be pickled; this carries its
    text."""


class TaskUnschedulableError(BeamletError):
    """The task's placement constraint (node affinity, placement group) can never
    be met."""


class ActorUnschedulableError(TaskUnschedulableError):
    """The actor's placement constraint can never be met."""


class TaskPlacementGroupRemoved(BeamletError):
    """The task's placement group was removed."""


class ActorPlacementGroupRemoved(BeamletError):
    """The actor's placement group was removed."""


class PlacementGroupSquashedError(BeamletError):
    """The placement group was removed while a task was being placed in it."""


class PendingCallsLimitExceeded(BeamletError):
    """Too many calls to an actor are pending (max_pending_calls).  (Not raised
    by beamlet: it accepts max_pending_calls and does not limit calls.)"""


class NodeDiedError(BeamletError):
    """The node holding the task or object died."""


class RaySystemError(BeamletError):
    """An internal error of the engine (a bug, or a process of it that died)."""


class GcsUnavailableError(RaySystemError, ConnectionError):
    """The GCS (the head node's Redis) did not answer within
    GCS_RECONNECT_TIMEOUT_S: the message says where it is and how long it was
    tried.  The head node's monitor restarts a Redis that died, so a later call
    may succeed."""


class RuntimeEnvSetupError(BeamletError):
    """The task's runtime environment could not be set up."""


class CrossLanguageError(BeamletError):
    """A task in another language failed (beamlet runs Python only)."""


class PlasmaObjectNotAvailable(BeamletError):
    """The object is not available in the local store."""


class AuthenticationError(BeamletError):
    """A connection did not prove it holds the cluster token."""


class ObjectRefStreamEndOfStreamError(BeamletError):
    """The end of a stream of refs (generators) was reached."""


class RayChannelError(RaySystemError):
    """A channel of a compiled graph failed (compiled graphs are not supported)."""


class RayChannelTimeoutError(RayChannelError, TimeoutError):
    """A channel of a compiled graph timed out."""


class RayCgraphCapacityExceeded(RaySystemError):
    """A compiled graph has too many executions in flight."""


# Ray's names.
RayError = BeamletError
RayTaskError = TaskError
BeamletTaskError = TaskError
