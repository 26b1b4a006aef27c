"""RayBackend: a joblib backend whose workers are a beamlet Pool's actors."""
from joblib._parallel_backends import (AutoBatchingMixin, FallbackToBackend,
                                       ParallelBackendBase, PoolManagerMixin,
                                       SequentialBackend)

from ... import api
from ..multiprocessing.pool import Pool, ensure_connected


class RayBackend(PoolManagerMixin, AutoBatchingMixin, ParallelBackendBase):
    """n_jobs=-1 (or another negative n) counts the cluster's CPUs, not this
    machine's; n_jobs=1 runs in the caller, as joblib's process backends do.
    `ray_remote_args` (given to parallel_backend(...) or Parallel(...)) are the
    options of the pool's actors."""

    supports_retrieve_callback = True
    supports_return_generator = False

    def __init__(self, nesting_level=None, inner_max_num_threads=None,
                 ray_remote_args=None, **kwargs):
        super().__init__(nesting_level=nesting_level,
                         inner_max_num_threads=inner_max_num_threads, **kwargs)
        self.ray_remote_args = ray_remote_args

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            ensure_connected()
            cpus = int(api.cluster_resources().get("CPU", 1))
            return max(cpus + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None,
                  ray_remote_args=None, **pool_kwargs):
        # pool_kwargs: joblib's memmapping options (max_nbytes ...), which do not
        # apply: arguments travel through the object store
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self._pool = Pool(processes=n_jobs,
                          ray_remote_args=ray_remote_args or self.ray_remote_args)
        self.parallel = parallel
        return n_jobs

    def terminate(self):
        super().terminate()
        self.reset_batch_stats()
