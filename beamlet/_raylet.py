"""Ray's `ray._raylet` names that programs import (`from ray._raylet import
ObjectRefGenerator`, as Ray's generator docs do): the same classes as beamlet's."""
from .generator import (DynamicObjectRefGenerator, ObjectRefGenerator,  # noqa: F401
                        StreamingObjectRefGenerator)
from .object_ref import ObjectID, ObjectRef  # noqa: F401
