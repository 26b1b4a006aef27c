"""Who may see the dashboard: whoever holds the cluster token (pure decisions, no
I/O: server.py applies them).

A request is let in when it carries one of
  - the session cookie (`beamlet_dashboard`, HttpOnly, SameSite=Strict): an
    HMAC of the token and a random value of this server's own, so the cookie
    is not the token (it opens nothing but this dashboard) and stops working
    when the dashboard restarts;
  - `Authorization: Bearer <token>` (scripts, curl);
  - `?token=<token>` in the URL (the link init() and `beamlet start` print): a
    page answers with the cookie and a redirect to the same URL without the
    token, so the token does not stay in the address bar; a JSON endpoint just
    answers.
Anything else gets 401: a page gets the login form (POST /login with the token
sets the cookie), a JSON endpoint an error; nothing of the cluster is sent.
"""
import hashlib
import hmac
import os
import urllib.parse

from .._private import webauth

COOKIE = "beamlet_dashboard"


class Decision:
    """What to do with a request: let it in (`ok`), redirect it with the cookie
    (`redirect` holds the location), or refuse it (`why` says what was wrong)."""
    __slots__ = ("ok", "redirect", "why")

    def __init__(self, ok=False, redirect=None, why=None):
        self.ok = ok
        self.redirect = redirect
        self.why = why


class Gate:
    def __init__(self, token: str):
        if not token:
            raise ValueError("the dashboard needs the cluster token")
        self.token = token
        self.session = hmac.new(token.encode(), b"beamlet-dashboard-session:" +
                                os.urandom(16), hashlib.sha256).hexdigest()

    def decide(self, path: str, query: dict, headers, is_page: bool) -> Decision:
        """`query`: the parsed query string (name -> list of values); `headers`:
        a mapping with .get() (case-insensitive, as http.server's)."""
        if webauth.same_secret(_cookie(headers.get("Cookie"), COOKIE), self.session):
            return Decision(ok=True)
        if webauth.bearer_ok(headers.get("Authorization"), self.token):
            return Decision(ok=True)
        given = query.get("token")
        if given:
            if not webauth.same_secret(given[-1], self.token):
                return Decision(why="the token in the URL is not this cluster's")
            if not is_page:
                return Decision(ok=True)
            rest = {k: v for k, v in query.items() if k != "token"}
            location = path + ("?" + urllib.parse.urlencode(rest, doseq=True)
                               if rest else "")
            return Decision(ok=True, redirect=location)
        return Decision(why=None)

    def login(self, form_token: str) -> bool:
        return webauth.same_secret(form_token, self.token)

    def set_cookie(self) -> str:
        return (f"{COOKIE}={self.session}; HttpOnly; SameSite=Strict; Path=/")

    @staticmethod
    def clear_cookie() -> str:
        return f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"


def _cookie(header, name):
    """The value of cookie `name` in a Cookie header, or ""."""
    if not header:
        return ""
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name:
            return v
    return ""


def safe_next(target) -> str:
    """Where to go after logging in: a path of this server only (never another
    site: "//evil" or "http://..." become "/")."""
    if not target or not target.startswith("/") or target.startswith("//") or \
            "\\" in target:
        return "/"
    return target
