#!/usr/bin/env python3
"""Checks /docs in headless Chromium, as a newcomer would use it.

    check-docs-browser.py BASE_URL ACCESS_TOKEN OUT_DIR

Loads BASE_URL/docs and waits until Swagger UI lists every operation of /openapi.json;
enters the token through the Authorize dialog; opens GET /api/models, presses Execute
and expects 200 with the model lists. Also loads the landing page (/). Fails on a
script error, a Content-Security-Policy violation, or any request that leaves the
server (the page must load nothing from a CDN). Writes OUT_DIR/docs.png (the page,
authorized) and OUT_DIR/docs-try-it.png (the answer).

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe), so
nothing but the Python standard library is needed.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

TIMEOUT = 60.0


class Browser:
    def __init__(self, binary, profile):
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()

        def child_fds():
            # DevTools reads commands from fd 3 and writes answers to fd 4. Through
            # spare numbers first: either end may already sit on 3 or 4.
            spare_r, spare_w = os.dup2(cmd_r, 100), os.dup2(res_w, 101)
            os.dup2(spare_r, 3)
            os.dup2(spare_w, 4)

        args = [
            binary,
            "--headless=new",
            # CI runs as root in a container, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--window-size=1280,2000",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            args, pass_fds=(3, 4), preexec_fn=child_fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(cmd_r)
        os.close(res_w)
        self._buffer = b""
        self._next_id = 0
        self.events = []
        self.session = None

    def _read_message(self, deadline):
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._res_r, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, params=None, session=True):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            if "method" in answer:
                self.events.append(answer)

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"timed out waiting for {what}")

    def navigate(self, url):
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", f"{url} to load")

    def close(self):
        try:
            self.call("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def screenshot(browser, path):
    shot = browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))


def count_operations(base):
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=30) as r:
        document = json.load(r)
    verbs = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    return sum(1 for ops in document["paths"].values() for verb in ops if verb in verbs)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    base, token, out = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    os.makedirs(out, exist_ok=True)
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not binary:
        sys.exit("no Chromium found: apt-get install -y chromium")
    expected = count_operations(base)
    problems = []
    profile = tempfile.mkdtemp(prefix="medledger-docs-check-")
    browser = Browser(binary, profile)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        browser.session = browser.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, session=False
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable")
        browser.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 2000, "deviceScaleFactor": 1, "mobile": False})

        # The landing page leads to the documentation.
        browser.navigate(f"{base}/")
        landing = browser.evaluate("document.body.innerText")
        if "/docs" not in browser.evaluate("[...document.links].map(a => a.getAttribute('href')).join(' ')"):
            problems.append("the landing page has no link to /docs")
        for contract in ("000", "001", "002", "003", "004"):
            if contract not in landing:
                problems.append(f"the landing page does not name contract {contract}")

        browser.navigate(f"{base}/docs")
        listed = browser.wait_for(
            f"document.querySelectorAll('.opblock').length >= {expected} && document.querySelectorAll('.opblock').length",
            f"Swagger UI to list {expected} operations",
        )
        print(f"/docs lists {listed} operations ({expected} in /openapi.json)")
        # Swagger UI lists what it could not read or resolve ($refs, schemas) here.
        errors = browser.evaluate("(document.querySelector('.errors-wrapper') || {}).innerText || ''")
        if errors:
            problems.append(f"Swagger UI reports errors in the document: {errors[:500]}")

        # Authorize: type the token into the bearer scheme's field, as a person would.
        browser.evaluate("document.querySelector('button.authorize').click()")
        browser.wait_for("!!document.getElementById('auth-bearer-value')", "the Authorize dialog")
        browser.evaluate("document.getElementById('auth-bearer-value').focus()")
        browser.call("Input.insertText", {"text": token})
        browser.evaluate(
            "document.getElementById('auth-bearer-value').closest('form').querySelector('button[type=submit]').click()"
        )
        browser.wait_for("[...document.querySelectorAll('.auth-container h6')].some(h => h.textContent === 'Authorized')", "the token to be accepted")
        browser.evaluate("document.querySelector('.modal-ux .btn-done, .modal-ux button.close-modal').click()")
        browser.wait_for("!document.querySelector('.modal-ux')", "the Authorize dialog to close")
        screenshot(browser, os.path.join(out, "docs.png"))

        # Try it out: GET /api/models.
        block = "document.getElementById('operations-004_inference-get_api_models')"
        browser.wait_for(f"!!{block}", "the GET /api/models operation")
        browser.evaluate(f"{block}.querySelector('.opblock-summary-control').click()")
        browser.wait_for(f"!!{block}.querySelector('button.execute')", "the Execute button")
        browser.evaluate(f"{block}.querySelector('button.execute').click()")
        status = browser.wait_for(
            f"(({block}.querySelector('.live-responses-table tr.response .response-col_status') || {{}}).textContent || '').trim()",
            "the response of GET /api/models",
        )
        body = browser.evaluate(f"({block}.querySelector('.live-responses-table tr.response .response-col_description') || {{}}).textContent || ''")
        curl = browser.evaluate(f"({block}.querySelector('.curl-command') || {{}}).textContent || ''")
        print(f"Try it out: GET /api/models answered {status}")
        if status != "200":
            problems.append(f"GET /api/models from /docs answered {status}: {body[:300]}")
        if "detection_models" not in body:
            problems.append(f"GET /api/models from /docs: no detection_models in {body[:300]!r}")
        if "Authorization: Bearer" not in curl:
            problems.append("the request from /docs carried no bearer token")

        browser.evaluate(f"{block}.scrollIntoView()")
        screenshot(browser, os.path.join(out, "docs-try-it.png"))

        # Drain the events that came with the last answers.
        browser.evaluate("1")
        for event in browser.events:
            method, params = event["method"], event.get("params", {})
            if method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not (url.startswith(base + "/") or url.startswith("data:") or url == "about:blank"):
                    problems.append(f"the page loaded {url}: everything must come from this server")
            elif method == "Runtime.exceptionThrown":
                problems.append(f"script error: {params['exceptionDetails'].get('text')} {params['exceptionDetails'].get('exception', {}).get('description', '')}")
            elif method == "Log.entryAdded":
                entry = params["entry"]
                if entry.get("level") == "error" and "Content Security Policy" in entry.get("text", ""):
                    problems.append(f"CSP violation: {entry['text']}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                if "Content Security Policy" in text or "Refused to" in text:
                    problems.append(f"CSP violation: {text}")
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)

    if problems:
        print("the /docs check failed:")
        for p in problems:
            print(f"  - {p}")
        sys.exit(1)
    print(f"/docs check passed; screenshots in {out}/docs.png and {out}/docs-try-it.png")


if __name__ == "__main__":
    main()
