"""This raylet's view of the other nodes of the cluster (the GCS node table),
kept current from deltas.

Owns: the records of the other ALIVE nodes (resources total and available,
  demand, address and peer port, each record's event number `seq`), the ids
  of the nodes known dead, whether this node is part of a cluster at all
  (`multi`: other nodes exist or existed, so unknown object ids are looked
  up), the waiters for a node to appear, and the membership feed (a thread).
Uses: the GCS through gcs/client.py's MembershipFeed only (it reads the whole
  table once per (re)connect, then delivers the deltas of the membership
  channel); callbacks `on_death(node_hex)` for each node newly seen dead (the
  object manager, which tells cluster placement) and `on_fenced(why)` when the
  table says that *this* node was declared dead (the shell).
Messages: none.  The view never polls the GCS: a node that registers is in
  every view within a publish (from its first heartbeat on), a change of load
  within a heartbeat period, a death as soon as it is declared.  The apply_*
  methods are pure updates of the view (no I/O), run on the loop.
"""
import asyncio

from .._private import config
from ..gcs.client import MembershipFeed


def _seq(rec) -> int:
    try:
        return int(rec.get("seq") or 0)
    except (TypeError, ValueError):
        return 0


class NodeTable:
    # `nodes` (node hex -> record), `dead` (set of node hexes) and `multi` (bool)
    # are read-only for the other components
    INTERFACE = ("wire", "start", "close", "wait_for", "record", "alive",
                 "note_available", "nodes", "dead", "multi")

    def __init__(self, node_id: bytes, gcs_where):
        self.me = node_id.hex()
        self.gcs_where = gcs_where   # (host, port, password) for the feed's client
        self.nodes = {}        # node hex -> GCS record of every other ALIVE node
        self.dead = set()      # node hexes known dead
        self.multi = False     # other nodes exist (or existed): unknown ids are looked up
        self.waiters = {}      # node hex -> [future]: wait_for() until it appears
        self.synced = None     # a future: the first snapshot arrived
        self.feed = None
        self.loop = None
        self.on_death = self.on_fenced = None

    def wire(self, on_death, on_fenced) -> None:
        self.on_death = on_death
        self.on_fenced = on_fenced

    async def start(self, loop) -> None:
        """Subscribe to the membership channel; return once the view holds the
        whole table (the first snapshot)."""
        self.loop = loop
        self.synced = loop.create_future()

        def deliver(kind, data):    # (the feed's thread)
            try:
                loop.call_soon_threadsafe(self.apply, kind, data)
            except RuntimeError:
                pass    # the loop is closed: the raylet is ending
        self.feed = MembershipFeed(*self.gcs_where, deliver)
        self.feed.start()
        limit = config.GCS_RECONNECT_TIMEOUT_S
        try:
            await asyncio.wait_for(asyncio.shield(self.synced), limit)
        except asyncio.TimeoutError:
            host, port = self.gcs_where[:2]
            raise RuntimeError(f"could not read the node table from the GCS at "
                               f"{host}:{port} within {limit:g} s") from None

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()

    # ------------------------------------------------------------------ the view
    def apply(self, kind, data) -> None:
        if kind == "snapshot":
            self.apply_snapshot(data)
            if not self.synced.done():
                self.synced.set_result(None)
        else:
            for ev in data:
                self.apply_event(ev)

    def apply_snapshot(self, records) -> None:
        """The whole table, read after subscribing: it replaces the view of the
        live nodes (a record that an event already made newer is kept)."""
        nodes = {}
        for rec in records:
            i = rec["node_id"]
            if rec.get("state") == "DEAD":
                self._died(i, rec.get("death_reason") or "")
            elif rec.get("state") == "ALIVE" and rec.get("peer_port") and \
                    i != self.me and i not in self.dead:
                cur = self.nodes.get(i)
                nodes[i] = cur if cur is not None and _seq(cur) > _seq(rec) else rec
        self.nodes = nodes
        self._changed()

    def apply_event(self, ev) -> None:
        """One delta of the membership channel (format: gcs/keys.py)."""
        i, kind = ev.get("node"), ev.get("kind")
        if not isinstance(i, str):
            return
        if kind == "dead":
            self._died(i, ev.get("reason") or "stopped")
            self._changed()
            return
        if i == self.me or i in self.dead or kind not in ("join", "load"):
            return
        cur = self.nodes.get(i)
        seq = ev.get("seq") or 0
        if cur is not None and _seq(cur) >= seq:
            return      # the snapshot (or an earlier event) has it already
        if cur is None:
            if kind != "join":
                return  # a load change of a node we have no record of: the
                        # snapshot after our next reconnect has it
            cur = {"node_id": i}
        rec = dict(cur)
        rec.update(ev.get("fields") or {})
        rec["seq"] = seq
        rec["node_id"] = i
        rec.setdefault("state", "ALIVE")
        self.nodes[i] = rec
        self._changed()

    def _died(self, i, why) -> None:
        if i == self.me:
            self.on_fenced(f"the cluster declared this node dead ({why})")
            return
        self.nodes.pop(i, None)
        if i not in self.dead:
            self.dead.add(i)
            self.on_death(i)

    def _changed(self) -> None:
        self.multi = bool(self.nodes) or bool(self.dead)
        if self.waiters:
            for i in [i for i in self.waiters if i in self.nodes or i in self.dead]:
                for f in self.waiters.pop(i):
                    if not f.done():
                        f.set_result(None)

    # ------------------------------------------------------------------ queries
    def alive(self, node_hex) -> bool:
        """This node, or another one alive in the view."""
        return node_hex == self.me or (node_hex in self.nodes
                                       and node_hex not in self.dead)

    async def wait_for(self, node_hex, timeout: float) -> bool:
        """Wait (at most `timeout` s) until `node_hex` is in the view, alive or
        dead; whether it is.  A node that just registered may talk to us a
        moment before its join reaches us."""
        if node_hex in self.nodes or node_hex in self.dead or node_hex == self.me:
            return True
        fut = self.loop.create_future()
        self.waiters.setdefault(node_hex, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            left = [f for f in self.waiters.get(node_hex, ()) if f is not fut]
            if left:
                self.waiters[node_hex] = left
            else:
                self.waiters.pop(node_hex, None)
        return node_hex in self.nodes or node_hex in self.dead

    async def record(self, node_hex, wait_s=5.0):
        """The GCS record of a live peer (waiting a little for one that just
        joined: it may forward us a task before its join reaches us)."""
        if node_hex not in self.nodes and node_hex not in self.dead:
            await self.wait_for(node_hex, wait_s)
        if node_hex not in self.nodes:
            raise KeyError(f"node {node_hex} is not an alive node of the cluster")
        return self.nodes[node_hex]

    def note_available(self, node_hex, available: dict) -> None:
        """What we just sent `node_hex` will take: its record shows it until its
        next load event."""
        rec = self.nodes.get(node_hex)
        if rec is not None:
            rec["resources_available"] = available
