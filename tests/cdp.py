"""A headless Chromium driven over the DevTools protocol, for the dashboard's
browser test: one browser for every page (its cookies kept between them), pages
loaded and waited for by a condition the page's script makes true, the DOM and
screenshots taken from the live page.

The protocol runs over two pipes (`--remote-debugging-pipe`: the browser reads
commands on its fd 3 and writes answers on its fd 4, JSON messages ended by a
NUL byte), so no websocket client and no listening port are needed.
"""
import base64
import json
import os
import select
import shutil
import subprocess
import time

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser():
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


class Browser:
    def __init__(self, exe, profile):
        to_r, to_w = os.pipe()        # commands: we write, the browser reads fd 3
        from_r, from_w = os.pipe()    # answers: the browser writes fd 4

        def pipes_at_3_and_4():
            a, b = os.dup(to_r), os.dup(from_w)   # (either may be 3 or 4 already)
            os.dup2(a, 3)
            os.dup2(b, 4)
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu",
             # no network but this machine: nothing fetched from elsewhere
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-default-apps",
             "--disable-breakpad", f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            preexec_fn=pipes_at_3_and_4, close_fds=False, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self.w, self.r = to_w, from_r
        self.buf = b""
        self.next_id = 0

    def send(self, method, params=None, session=None, timeout=60):
        """Run one DevTools command; its result (events are skipped)."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self.buf:
                raw, self.buf = self.buf.split(b"\0", 1)
                m = json.loads(raw)
                if m.get("id") == self.next_id:
                    if "error" in m:
                        raise RuntimeError(f"{method}: {m['error']}")
                    return m["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                raise TimeoutError(f"the browser did not answer {method}")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"the browser exited ({self.proc.poll()})")
            self.buf += chunk

    def new_tab(self, isolated=False):
        """A page; `isolated`: in a context of its own (no cookies shared)."""
        params = {"url": "about:blank"}
        if isolated:
            params["browserContextId"] = self.send(
                "Target.createBrowserContext")["browserContextId"]
        target = self.send("Target.createTarget", params)["targetId"]
        session = self.send("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        return Tab(self, session)

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.w)
        os.close(self.r)


class Tab:
    def __init__(self, browser, session):
        self.browser, self.session = browser, session

    def send(self, method, params=None):
        return self.browser.send(method, params, self.session)

    def evaluate(self, expression):
        ans = self.send("Runtime.evaluate", {"expression": expression,
                                             "returnByValue": True})
        if "exceptionDetails" in ans:
            raise RuntimeError(f"{expression}: {ans['exceptionDetails']}")
        return ans["result"].get("value")

    def poll(self, expression):
        """`expression`'s value, or None while the page is between two
        documents (a navigation: no body yet, or its context just destroyed)."""
        try:
            return self.evaluate(expression)
        except RuntimeError:
            return None

    def open(self, url, until="true", timeout=60):
        """Load `url` and wait until the page is loaded and `until` (a JS
        expression) is true; the page's URL then."""
        self.send("Page.navigate", {"url": url})
        deadline = time.monotonic() + timeout
        cond = f"document.readyState === 'complete' && !!({until})"
        while not self.poll(cond):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: {until} did not become true; the page: "
                                   + str(self.dom())[:3000])
            time.sleep(0.1)
        return self.evaluate("location.href")

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def screenshot(self, path, width=1400, height=860):
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
