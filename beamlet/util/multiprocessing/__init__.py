"""multiprocessing.Pool's API on a beamlet cluster (Ray's `ray.util.multiprocessing`):
`from beamlet.util.multiprocessing import Pool` in place of `from multiprocessing
import Pool`."""
from multiprocessing import JoinableQueue, TimeoutError

from .pool import AsyncResult, IMapIterator, Pool

__all__ = ["Pool", "AsyncResult", "IMapIterator", "TimeoutError", "JoinableQueue"]
