"""joblib on a beamlet cluster (Ray's `ray.util.joblib`).

    from beamlet.util.joblib import register_ray
    register_ray()
    with joblib.parallel_backend("ray"):       # or parallel_config(backend="ray")
        Parallel(n_jobs=-1)(delayed(f)(x) for x in data)

joblib is an optional dependency: `pip install 'beamlet[joblib]'`.
"""


def register_ray():
    """Register the joblib backends "ray" (Ray's name) and "beamlet": joblib's
    batches then run in a beamlet.util.multiprocessing.Pool, whose processes are
    actors on the cluster."""
    try:
        from joblib.parallel import register_parallel_backend
    except ImportError:
        raise ImportError(
            "beamlet.util.joblib.register_ray() needs joblib, which is not installed: "
            "pip install 'beamlet[joblib]' (or pip install 'joblib>=1.2').") from None
    from .ray_backend import RayBackend
    register_parallel_backend("ray", RayBackend)
    register_parallel_backend("beamlet", RayBackend)


__all__ = ["register_ray"]
