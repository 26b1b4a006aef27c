"""What the raylet's modules share: small helpers and constants."""
import sys
import time

from .._private import protocol as P
from .._private import serialization

def desc_is_error(desc) -> bool:
    return bool(desc[2] if desc[0] == P.INLINE else desc[3])


def node_gpu_ids(pool, ids):
    """GPU ids of a pool (a placement-group bundle numbers its GPUs from 0) as the
    node's ids."""
    m = getattr(pool, "gpu_map", None)
    return [m[i] for i in ids] if m else ids


def error_bytes(err) -> bytes:
    """An exception as the serialized value of an error object."""
    return serialization.serialize(err).to_bytes()


def scheduled_resources(res: dict) -> dict:
    """A node's resources without its memory figures (reported, never waited for
    by beamlet's scheduler): what pending reasons show."""
    return {k: v for k, v in res.items() if k not in ("memory", "object_store_memory")}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)
