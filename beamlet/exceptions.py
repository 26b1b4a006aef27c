"""Every error beamlet raises to users.  Names with "Ray" are aliases for Ray code."""


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
            return (_restore_exception, (type(e), e.args, getattr(e, "__dict__", None)))
        return (_identity, (e,))


def _identity(x):
    return x


def _restore_exception(cls, args, state):
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


class ActorDiedError(BeamletError):
    """The actor is dead: killed, crashed (restarts ran out) or its creation failed."""


class ActorUnavailableError(BeamletError):
    """The actor is restarting and cannot take calls now."""


class ObjectLostError(BeamletError):
    """Every copy of the object is gone and it cannot be rebuilt."""


class ObjectStoreFullError(BeamletError):
    """The object can never fit in the object store (or spilling is impossible).
    Not a MemoryError (as in Ray): MemoryError's special allocator makes a class
    deriving from it and from TaskError impossible to instantiate, which would
    break `except ObjectStoreFullError` around a task's failed return."""


class OutOfDiskError(ObjectStoreFullError):
    """Spilling failed because the disk is full."""


class SerializationError(BeamletError, TypeError):
    """A value could not be pickled or unpickled."""


class TaskUnschedulableError(BeamletError):
    """The task's placement constraint (node affinity, placement group) can never
    be met."""


class ActorUnschedulableError(TaskUnschedulableError):
    """The actor's placement constraint can never be met."""


class NodeDiedError(BeamletError):
    """The node holding the task or object died."""


class RaySystemError(BeamletError):
    """An internal error of the engine (a bug, or a process of it that died)."""


class ObjectFreedError(ObjectLostError):
    """The object was freed while still needed."""


# Ray's names.
RayError = BeamletError
RayTaskError = TaskError
RayActorError = ActorDiedError
BeamletTaskError = TaskError
