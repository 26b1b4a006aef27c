"""The Redis schema of the GCS: every key and channel beamlet uses.

Ids appear as lowercase hex.  Read it with `redis-cli -p PORT -a PASSWORD`, e.g.
`HGETALL beamlet:node:<id>`, `ZRANGE beamlet:heartbeats 0 -1 WITHSCORES`.

| key / channel                         | type   | contents                                       |
|---------------------------------------|--------|------------------------------------------------|
| beamlet:cluster                       | hash   | session_dir, head_node, started_at, version    |
|                                       |        | dashboard_address (host:port of the head's     |
|                                       |        | dashboard; absent without one)                 |
| beamlet:nodes                         | set    | every node id ever registered                  |
| beamlet:node:<node>                   | hash   | address, port, socket, hostname, pid, state    |
|                                       |        | (ALIVE/DEAD), resources_total (json),          |
|                                       |        | resources_available (json), demand (json),     |
|                                       |        | started_at, death_reason, peer_port (the TCP   |
|                                       |        | port peer raylets connect to), object_store_used|
|                                       |        | metrics_export_port (its Prometheus endpoint)  |
| beamlet:heartbeats                    | zset   | node id -> time of its last heartbeat          |
| beamlet:fn:<hash>                     | string | a cloudpickled function or class (by content)  |
| beamlet:job:<job>                     | hash   | driver_pid, node, started_at, namespace, state |
|                                       |        | sys_path (json: the driver's, for workers;     |
|                                       |        | ray_alias.JOB_MARKER in it: a `beamlet run` job)|
|                                       |        | with init(job_config=...): metadata (json),    |
|                                       |        | default_actor_lifetime; tasks_finished (count  |
|                                       |        | of finished tasks ever recorded: more than the |
|                                       |        | task_events kept means some were trimmed)      |
| beamlet:jobs                          | set    | job ids                                        |
| beamlet:task_events:<job>             | zset   | the job's finished tasks: member = a msgpack   |
|                                       |        | record (raylet/scheduler.py task_record),      |
|                                       |        | score = end time; written behind (one ZADD per |
|                                       |        | job per flush) and trimmed to the newest       |
|                                       |        | config.TASK_EVENTS_PER_JOB of them             |
|                                       |        | (BEAMLET_TASK_EVENTS_PER_JOB, default 10,000)  |
| beamlet:obj:<object>                  | hash   | node id -> size in bytes (its locations):      |
|                                       |        | arena objects from their creation, small ones  |
|                                       |        | once their id was sent to another node         |
| beamlet:actor:<actor>                 | hash   | class, name, namespace, state, node, pid,      |
|                                       |        | detached, restarts, death_cause, job,          |
|                                       |        | worker_id, call_site (file:line of the         |
|                                       |        | .remote() that created it), resources (json)   |
| beamlet:actor_names:<namespace>       | hash   | actor name -> actor id                         |
| beamlet:counter:job                   | string | last job number (INCR)                         |
| beamlet:pg:<placement group>          | hash   | name, strategy, state, bundles (json), node    |
| channel beamlet:logs:<job>            | pubsub | worker output lines for that job's driver      |
| channel beamlet:errors:<job>          | pubsub | warnings for a driver (infeasible tasks, ...)  |
| channel beamlet:node_events           | pubsub | "<node> DEAD" when a node is declared dead     |
| list beamlet:forward                  | list   | (unused: see below)                            |
| list beamlet:forward_to:<node>        | list   | (unused: see below)                            |

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
NODE_EVENTS = P + "node_events"
FORWARD = P + "forward"


def node(node_id: bytes) -> str:
    return f"{P}node:{node_id.hex()}"


def function(key: bytes) -> str:
    return f"{P}fn:{key.hex()}"


def job(job_id: bytes) -> str:
    return f"{P}job:{job_id.hex()}"


def task_events(job_id: bytes) -> str:
    return f"{P}task_events:{job_id.hex()}"


def obj(object_id: bytes) -> str:
    return f"{P}obj:{object_id.hex()}"


def actor(actor_id: bytes) -> str:
    return f"{P}actor:{actor_id.hex()}"


def actor_pattern() -> str:
    """SCAN pattern of every actor record."""
    return f"{P}actor:*"


def actor_names(namespace: str) -> str:
    return f"{P}actor_names:{namespace}"


def placement_group(pg_id: bytes) -> str:
    return f"{P}pg:{pg_id.hex()}"


def placement_group_pattern() -> str:
    """SCAN pattern of every placement group record."""
    return f"{P}pg:*"


def logs_channel(job_id: bytes) -> str:
    return f"{P}logs:{job_id.hex()}"


def errors_channel(job_id: bytes) -> str:
    return f"{P}errors:{job_id.hex()}"


def forward_to(node_id: bytes) -> str:
    return f"{P}forward_to:{node_id.hex()}"
