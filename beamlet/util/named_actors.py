"""list_named_actors (Ray's `ray.util.list_named_actors`)."""
from .. import api
from ..actor import current_namespace


def list_named_actors(all_namespaces: bool = False) -> list:
    """The names of the live named actors (detached or not) in the current
    namespace; with all_namespaces=True, those of every namespace, as dicts
    {"name": ..., "namespace": ...}."""
    api._core()
    gcs = api._state.gcs
    namespace = None if all_namespaces else current_namespace()
    out = []
    for entry in gcs.list_named_actors(namespace):
        actor_id = gcs.lookup_actor_name(entry["namespace"], entry["name"])
        if actor_id is None:
            continue      # released since listed
        state = gcs.actor_info(actor_id).get("state")
        if state is None or state == "DEAD":
            continue      # the name outlived its holder (its node died first)
        out.append(entry if all_namespaces else entry["name"])
    return out
