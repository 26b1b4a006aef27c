"""The dashboard's HTTP server: the standard library's http.server, in a thread
of the head node's monitor process (scheduler/global_scheduler.py starts it),
so the dashboard costs no process of its own.

Routes (every one behind auth.py's gate, except the login form itself):
    GET  /  /jobs  /tasks  /actors  /objects  /logs  /timeline   pages (pages.py)
    GET  /api/cluster /api/jobs /api/tasks /api/actors /api/objects /api/logs
         /api/log?node=&name=&offset=   /api/timeline[?download=1]   JSON (data.py)
    GET  /static/dashboard.js  /static/dashboard.css
    GET  /login   POST /login (token=, next=)   GET /logout

Answers carry a Content-Security-Policy that allows only this server's own
script and style (no inline script, nothing from the network).
"""
import http.server
import json
import os
import re
import sys
import threading
import traceback
import urllib.parse

from . import auth, data, pages

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_TYPES = {".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
FORM_MAX = 4096
DEFAULT_PORT = 8265          # Ray's
PORT_RETRIES = 50            # the next ports tried when the default one is busy
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
LOGIN_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; " \
            "frame-ancestors 'none'; base-uri 'none'"


class DashboardServer:
    """Binds at construction (so a busy port fails at once, naming it); serves
    in a daemon thread after start()."""

    def __init__(self, host: str, port, token: str, view, explicit_port=True):
        self.gate = auth.Gate(token)
        self.view = view
        handler = type("Handler", (_Handler,), {"server_state": self})
        ports = [port]
        if not explicit_port:
            ports = [port + i for i in range(PORT_RETRIES + 1)] + [0]
        err = None
        for p in ports:
            try:
                self.httpd = http.server.ThreadingHTTPServer((host, p), handler)
                break
            except OSError as e:
                err = e
        else:
            raise OSError(f"the dashboard cannot listen on {host}:{port} "
                          f"({err.strerror or err}); choose another port "
                          f"(--dashboard-port, init(dashboard_port=...)) or turn the "
                          f"dashboard off (--include-dashboard false, "
                          f"include_dashboard=False).")
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       name="beamlet-dashboard")
        self.thread.start()
        return self

    def stop(self):
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join(5)
        self.httpd.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state = None      # the DashboardServer (set on the subclass)
    protocol_version = "HTTP/1.1"
    server_version = "beamlet-dashboard"
    sys_version = ""

    # ---------------------------------------------------------------- plumbing
    def log_request(self, code="-", size="-"):
        pass    # no access log: pages poll every few seconds

    def log_message(self, fmt, *args):
        # errors only (to the monitor's log), without query strings: one may
        # carry the token, which must never reach a log
        sys.stderr.write("dashboard: " + re.sub(r"\?\S*", "", fmt % args) + "\n")

    def _send(self, status, body: bytes, ctype, headers=(), csp=CSP):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", csp)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status, obj, headers=()):
        self._send(status, json.dumps(obj, default=str).encode(),
                   "application/json; charset=utf-8", headers)

    def _html(self, status, text, headers=(), csp=CSP):
        self._send(status, text.encode(), "text/html; charset=utf-8", headers, csp)

    def _redirect(self, location, headers=()):
        self._send(303, b"", "text/plain", [("Location", location), *headers])

    # ---------------------------------------------------------------- requests
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        try:
            self._get()
        except (BrokenPipeError, ConnectionResetError):
            pass                  # the browser went away
        except Exception:
            # a bug here must not take the thread down or say more than this
            self.log_message("error answering %s: %s", self.path,
                             traceback.format_exc())
            self._json(500, {"error": "the dashboard failed to answer (its log, "
                                      "monitor.err, has the details)"})

    def _get(self):
        url = urllib.parse.urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        st = self.server_state
        if path == "/login":
            return self._html(200, pages.login_page(
                next_path=auth.safe_next(_first(query, "next"))), csp=LOGIN_CSP)
        if path == "/logout":
            return self._redirect("/login", [("Set-Cookie", st.gate.clear_cookie())])
        is_page = path in pages.PAGES
        decision = st.gate.decide(path, query, self.headers, is_page)
        if not decision.ok:
            return self._refuse(decision.why, is_page, url)
        if decision.redirect is not None:
            return self._redirect(decision.redirect,
                                  [("Set-Cookie", st.gate.set_cookie())])
        if is_page:
            return self._html(200, pages.PAGES[path](st.view, query))
        if path in data.ENDPOINTS:
            build, takes_query = data.ENDPOINTS[path]
            ans = build(st.view, query) if takes_query else build(st.view)
            return self._json(200, ans)
        if path == "/api/log":
            offset = _first(query, "offset")
            ans = data.log_tail(st.view, _first(query, "node"), _first(query, "name"),
                                int(offset) if offset.isdigit() else None)
            return self._json(200, ans)
        if path == "/api/timeline":
            ans = data.timeline(st.view)
            extra = [("Content-Disposition", 'attachment; filename="timeline.json"')] \
                if _first(query, "download") else []
            return self._json(200, ans, extra)
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        return self._json(404, {"error": f"no such page or endpoint: {path}"})

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/login":
            return self._json(405, {"error": "only POST /login is accepted"})
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if not 0 <= n <= FORM_MAX:
            return self._json(413, {"error": "the login form is too large"})
        form = urllib.parse.parse_qs(self.rfile.read(n).decode(errors="replace"))
        st = self.server_state
        target = auth.safe_next(_first(form, "next"))
        if not st.gate.login(_first(form, "token")):
            return self._html(401, pages.login_page("That is not this cluster's token.",
                                                    target), csp=LOGIN_CSP)
        return self._redirect(target, [("Set-Cookie", st.gate.set_cookie())])

    def _refuse(self, why, is_page, url):
        if is_page:
            target = url.path + ("?" + _without_token(url.query) if url.query else "")
            return self._html(401, pages.login_page(why, auth.safe_next(target)),
                              csp=LOGIN_CSP)
        return self._json(401, {"error": (why or "this dashboard needs the cluster "
                                          "token") + ": send the session cookie (log "
                                          "in at /login), 'Authorization: Bearer "
                                          "<token>' or ?token=<token>"},
                          [("WWW-Authenticate", "Bearer")])

    def _static(self, name):
        ext = os.path.splitext(name)[1]
        if "/" in name or name.startswith(".") or ext not in STATIC_TYPES:
            return self._json(404, {"error": f"no such file: {name}"})
        try:
            with open(os.path.join(STATIC, name), "rb") as f:
                body = f.read()
        except OSError:
            return self._json(404, {"error": f"no such file: {name}"})
        self._send(200, body, STATIC_TYPES[ext])


def _first(query, name) -> str:
    values = query.get(name) or [""]
    return values[-1]


def _without_token(q: str) -> str:
    return urllib.parse.urlencode([(k, v) for k, v in urllib.parse.parse_qsl(
        q, keep_blank_values=True) if k != "token"])
