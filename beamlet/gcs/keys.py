"""The Redis schema of the GCS: every key and channel beamlet uses.

Ids appear as lowercase hex.  Read it with `redis-cli -p PORT -a PASSWORD`, e.g.
`HGETALL beamlet:node:<id>`, `ZRANGE beamlet:heartbeats 0 -1 WITHSCORES`.

| key / channel                         | type   | contents                                       |
|---------------------------------------|--------|------------------------------------------------|
| beamlet:cluster                       | hash   | session_dir, head_node, started_at, version    |
| beamlet:nodes                         | set    | every node id ever registered                  |
| beamlet:node:<node>                   | hash   | address, port, socket, hostname, pid, state    |
|                                       |        | (ALIVE/DEAD), resources_total (json),          |
|                                       |        | resources_available (json), demand (json),     |
|                                       |        | started_at, death_reason, peer_port (the TCP   |
|                                       |        | port peer raylets connect to), object_store_used,|
|                                       |        | seq (the node's last membership event number)  |
| beamlet:heartbeats                    | zset   | node id -> Redis server time of its last beat  |
|                                       |        | (ALIVE nodes only: a death removes the entry)  |
| beamlet:fn:<hash>                     | string | a cloudpickled function or class (by content)  |
| beamlet:job:<job>                     | hash   | driver_pid, node, started_at, namespace, state |
|                                       |        | sys_path (json: the driver's, for workers;     |
|                                       |        | ray_alias.JOB_MARKER in it: a `beamlet run` job)|
|                                       |        | with init(job_config=...): metadata (json),    |
|                                       |        | default_actor_lifetime                         |
| beamlet:jobs                          | set    | job ids                                        |
| beamlet:tasks:<node>                  | hash   | task id -> "STATE name job time" for the tasks |
|                                       |        | of that node (write-behind, one HSET per flush;|
|                                       |        | the last TASKS_KEPT finished ones are kept)    |
| beamlet:obj:<object>                  | hash   | node id -> size in bytes (its locations):      |
|                                       |        | arena objects from their creation, small ones  |
|                                       |        | once their id was sent to another node         |
| beamlet:actor:<actor>                 | hash   | class, name, namespace, state, node, pid,      |
|                                       |        | detached, restarts, death_cause                |
| beamlet:actor_names:<namespace>       | hash   | actor name -> actor id                         |
| beamlet:counter:job                   | string | last job number (INCR)                         |
| beamlet:pg:<placement group>          | hash   | name, strategy, state, bundles (json), node    |
| channel beamlet:logs:<job>            | pubsub | worker output lines for that job's driver      |
| channel beamlet:errors:<job>          | pubsub | warnings for a driver (infeasible tasks, ...)  |
| channel beamlet:membership            | pubsub | node table deltas, json (below)                |
| list beamlet:forward                  | list   | (unused: see below)                            |
| list beamlet:forward_to:<node>        | list   | (unused: see below)                            |

Membership travels as deltas.  A raylet writes its whole record once (at
registration) and then only what changed: every event on `beamlet:membership` is
a json object {"node": <hex>, "kind": ..., "seq": <int>, "fields": {...}}:
  "join"  the node registered; fields: its whole record (as in its hash,
          with resources_* and demand as objects, not json text);
  "load"  its resources_available and/or demand changed (at most one per node per
          heartbeat period, none while nothing changes);
  "dead"  it was declared dead (the monitor: "reason"), or it stopped.
`seq` counts a node's events; the hash keeps the last one, so a raylet that reads
the table after subscribing (on every reconnect) drops the events it already
has.  The liveness beat is one small write per node per period (a Lua script:
ZADD to beamlet:heartbeats only while the record says ALIVE, answering the
state, so that a node declared dead learns it and cannot undo it: fencing);
the monitor's check is one script per period whatever the number of nodes
(ZRANGEBYSCORE on the heartbeats, then each death).  Scripts: gcs/client.py.

Tasks do not travel through Redis: a raylet that cannot run a task chooses a node
with the global policy (beamlet/scheduler/placement.py) over the node records above
and sends the task straight to that node's raylet over TCP (PEER_FORWARD in
_private/protocol.py; beamlet/raylet/object_manager.py).  Object locations
(beamlet:obj:<object>) guide that choice (locality).
"""

P = "beamlet:"
CLUSTER = P + "cluster"
NODES = P + "nodes"
HEARTBEATS = P + "heartbeats"
JOBS = P + "jobs"
JOB_COUNTER = P + "counter:job"
MEMBERSHIP = P + "membership"
FORWARD = P + "forward"
TASKS_KEPT = 10000


def node(node_id: bytes) -> str:
    return f"{P}node:{node_id.hex()}"


def node_prefix() -> str:
    """node(id) is this + the id's hex (for the Lua scripts, which build keys)."""
    return f"{P}node:"


def function(key: bytes) -> str:
    return f"{P}fn:{key.hex()}"


def job(job_id: bytes) -> str:
    return f"{P}job:{job_id.hex()}"


def tasks(node_id: bytes) -> str:
    return f"{P}tasks:{node_id.hex()}"


def obj(object_id: bytes) -> str:
    return f"{P}obj:{object_id.hex()}"


def actor(actor_id: bytes) -> str:
    return f"{P}actor:{actor_id.hex()}"


def actor_names(namespace: str) -> str:
    return f"{P}actor_names:{namespace}"


def placement_group(pg_id: bytes) -> str:
    return f"{P}pg:{pg_id.hex()}"


def logs_channel(job_id: bytes) -> str:
    return f"{P}logs:{job_id.hex()}"


def errors_channel(job_id: bytes) -> str:
    return f"{P}errors:{job_id.hex()}"


def forward_to(node_id: bytes) -> str:
    return f"{P}forward_to:{node_id.hex()}"
