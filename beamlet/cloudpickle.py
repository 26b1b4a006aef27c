"""`ray.cloudpickle`: the cloudpickle beamlet pickles functions, classes and values
with (the installed `cloudpickle` package, re-exported)."""
from cloudpickle import *  # noqa: F401,F403
from cloudpickle import (CloudPickler, Pickler, dump, dumps, load, loads,  # noqa: F401
                         register_pickle_by_value, unregister_pickle_by_value)
