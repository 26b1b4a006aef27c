"""The web dashboard of a cluster: pages of its nodes, jobs, tasks, actors,
objects, logs and timeline, served by the head node.

    browser ──HTTP (token: cookie / bearer / ?token=)──▶ server.py (http.server,
                                                          a thread of the head's
                                                          monitor process)
       pages.py  server-rendered HTML; static/ a little vanilla JS that polls
       data.py   the JSON endpoints, built on the state API (beamlet.util.state)
                 and the timeline, never on state of its own
       auth.py   who may see it (the cluster token)

No build step and no asset from the network: it works offline.
docs/observability.md describes the pages, docs/security.md the socket.
"""
