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
|                                       |        | port peer raylets connect to), object_store_used,|
|                                       |        | metrics_export_port (its Prometheus endpoint), |
|                                       |        | seq (the node's last membership event number)  |
| beamlet:heartbeats                    | zset   | node id -> Redis server time of its last beat  |
|                                       |        | (ALIVE nodes only: a death removes the entry)  |
| beamlet:fn:<hash>                     | string | a cloudpickled function or class (by content)  |
| beamlet:job:<job>                     | hash   | driver_pid, node, started_at, namespace, state |
|                                       |        | sys_path (json: the driver's, for workers;     |
|                                       |        | ray_alias.JOB_MARKER in it: a `beamlet run` job)|
|                                       |        | with init(job_config=...): metadata (json),    |
|                                       |        | default_actor_lifetime; runtime_env (json: the |
|                                       |        | job's, canonical); submission_id (a driver     |
|                                       |        | started by `beamlet job submit`)               |
|                                       |        | tasks_finished (count of finished tasks ever   |
|                                       |        | recorded: more than the task_events kept means |
|                                       |        | some were trimmed); task_events_keep (how many |
|                                       |        | of them readers keep)                          |
| beamlet:jobs                          | set    | job ids                                        |
| beamlet:task_events:<job>             | zset   | the job's finished tasks, in batches: member = |
|                                       |        | a msgpack stream (node id, record, record ...) |
|                                       |        | of one raylet's flush (raylet/scheduler.py     |
|                                       |        | task_record: no job or node in it), score =    |
|                                       |        | the job's tasks_finished after it; written     |
|                                       |        | behind (one script call per job per flush,     |
|                                       |        | gcs/client.py add_task_events), batches wholly |
|                                       |        | older than the newest task_events_keep records |
|                                       |        | dropped; readers keep the newest               |
|                                       |        | task_events_keep (config.TASK_EVENTS_PER_JOB,  |
|                                       |        | BEAMLET_TASK_EVENTS_PER_JOB, default 10,000);  |
|                                       |        | in memory only (not in the append-only file)   |
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
| beamlet:runtime_env:<key>             | string | a runtime environment as workers get it (json: |
|                                       |        | env_vars, working_dir and py_modules as package|
|                                       |        | URIs, config); key = sha1 of that json [:32];  |
|                                       |        | tasks carry the key (TaskSpec.runtime_env)     |
| beamlet:pkg:<sha1>                    | string | a runtime_env package: a zip of a working_dir  |
|                                       |        | or py_modules entry, named by its sha1         |
|                                       |        | (gcs://_beamlet_pkg_<sha1>.zip); SET NX, once  |
| beamlet:submission:<id>               | hash   | a job of `beamlet job submit` (JobDetails      |
|                                       |        | fields): submission_id, entrypoint, status,    |
|                                       |        | message, error_type, start_time, end_time (ms),|
|                                       |        | metadata, runtime_env (json, canonical),       |
|                                       |        | entrypoint_num_cpus/_num_gpus/_memory,         |
|                                       |        | entrypoint_resources (json), driver_node_id,   |
|                                       |        | driver_exit_code, log_path (on the head),      |
|                                       |        | stop_requested; job_id (set by its driver's    |
|                                       |        | init()).  The client writes it PENDING, then   |
|                                       |        | only the job manager changes its status        |
| beamlet:submissions                   | zset   | submission id -> time submitted (list_jobs)    |
| beamlet:job_manager                   | string | json {pid, node_id, session_dir, started_at} of|
|                                       |        | the head's job manager; expires unless renewed |
|                                       |        | (JOB_MANAGER_TTL_S): its liveness              |
| list beamlet:job_manager:requests     | list   | "submit <id>" / "stop <id>" for the manager    |
|                                       |        | (RPUSH by clients, BLPOP by the manager)       |
| stream beamlet:submission_logs:<id>   | stream | the job's driver output: entries {d: text,     |
|                                       |        | o: its byte offset}; the oldest are deleted    |
|                                       |        | past JOB_LOG_GCS_BYTES (the whole log stays in |
|                                       |        | log_path on the head)                          |
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
SUBMISSIONS = P + "submissions"
JOB_MANAGER = P + "job_manager"
JOB_MANAGER_REQUESTS = P + "job_manager:requests"


def node(node_id: bytes) -> str:
    return f"{P}node:{node_id.hex()}"


def node_prefix() -> str:
    """node(id) is this + the id's hex (for the Lua scripts, which build keys)."""
    return f"{P}node:"


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


def runtime_env(key: str) -> str:
    return f"{P}runtime_env:{key}"


def package(digest: str) -> str:
    return f"{P}pkg:{digest}"


def submission(submission_id: str) -> str:
    return f"{P}submission:{submission_id}"


def submission_logs(submission_id: str) -> str:
    return f"{P}submission_logs:{submission_id}"
