"""This raylet's view of the other nodes of the cluster (the GCS node table).

Owns: the records of the other ALIVE nodes (as of the last read: resources
  total and available, demand, address and peer port), the ids of the nodes
  known dead, and whether this node is part of a cluster at all (`multi`:
  other nodes exist or existed, so unknown object ids are looked up).
Uses: the GcsClient (reads, in a thread: the loop never waits on Redis), and
  a callback `on_death(node_hex)` for each node newly seen dead (the object
  manager, which tells cluster placement).
Messages: none; refreshed every heartbeat (ObjectManager.tick) and whenever a
  node that talks to us, or that a task names, is not in it yet.
"""
import asyncio
import time


class NodeTable:
    # `nodes` (node hex -> record), `dead` (set of node hexes), `multi` (bool) and
    # `refreshing` (bool) are read-only for the other components
    INTERFACE = ("wire", "refresh", "record", "alive", "note_available",
                 "nodes", "dead", "multi", "refreshing")

    def __init__(self, node_id: bytes, gcs):
        self.me = node_id.hex()
        self.gcs = gcs
        self.nodes = {}        # node hex -> GCS record of every other ALIVE node
        self.dead = set()      # node hexes known dead
        self.multi = False     # other nodes exist (or existed): unknown ids are looked up
        self.refreshing = False
        self.on_death = None

    def wire(self, on_death) -> None:
        self.on_death = on_death

    async def refresh(self):
        """Re-read the node table (in a thread: the loop must not wait on Redis)."""
        if self.refreshing:
            return
        self.refreshing = True
        try:
            recs = await asyncio.get_running_loop().run_in_executor(
                None, self.gcs.nodes)
        except Exception:
            return
        finally:
            self.refreshing = False
        nodes = {}
        died = []
        for n in recs:
            i = n["node_id"]
            if n.get("state") == "ALIVE" and i != self.me and n.get("peer_port"):
                nodes[i] = n
            elif n.get("state") == "DEAD" and i not in self.dead and i != self.me:
                self.dead.add(i)
                died.append(i)
        self.nodes = nodes
        self.multi = bool(nodes) or bool(self.dead)
        for i in died:
            self.on_death(i)

    def alive(self, node_hex) -> bool:
        """This node, or another one alive as of the last read."""
        return node_hex == self.me or (node_hex in self.nodes
                                       and node_hex not in self.dead)

    async def record(self, node_hex, wait_s=5.0):
        """The GCS record of a live peer.  A node that joined since our last
        refresh of the node table (one per heartbeat) may already talk to us — for
        instance forward us a task whose result we must send back: re-read the
        table until it shows up, rather than failing the send."""
        deadline = time.monotonic() + wait_s
        while node_hex not in self.nodes:
            if time.monotonic() > deadline or node_hex in self.dead:
                raise KeyError(f"node {node_hex} is not an alive node of the cluster")
            await self.refresh()
            if node_hex not in self.nodes:
                await asyncio.sleep(0.05)
        return self.nodes[node_hex]

    def note_available(self, node_hex, available: dict) -> None:
        """What we just sent `node_hex` will take: its record shows it until the
        next read."""
        rec = self.nodes.get(node_hex)
        if rec is not None:
            rec["resources_available"] = available
