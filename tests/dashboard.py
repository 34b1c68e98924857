"""A ZenML dashboard page rendered by headless Chromium (Debian's ``chromium``), driven over the DevTools protocol.

The dashboard is a single-page app: it needs the login cookie, the flag it keeps in localStorage after
a login, and a user who has answered its one-time account survey. The page is captured once the
text it must show has rendered, so a blank or half-loaded page fails the caller's checks.
"""

from __future__ import annotations

import base64
import http.cookies
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager

from tests.services import free_port


def chromium_reason() -> str | None:
    """Why no headless Chromium can render here, or None."""
    if shutil.which("chromium") is None:
        return "Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"
    return None


def login(server: str, username: str, password: str) -> tuple[str, str, str]:
    """(cookie name, cookie value, bearer token) from the server's login endpoint, as the dashboard's form posts it."""
    body = urllib.parse.urlencode({"username": username, "password": password}).encode()
    with urllib.request.urlopen(
        urllib.request.Request(server + "/api/v1/login", data=body, method="POST"), timeout=30
    ) as resp:
        cookie = http.cookies.SimpleCookie(resp.headers["Set-Cookie"])
        token = json.loads(resp.read())["access_token"]
    name, morsel = next(iter(cookie.items()))
    return name, morsel.value, token


def answer_account_survey(server: str, token: str) -> None:
    """What the dashboard's first-visit form sends for its user (else every page shows that form)."""
    body = json.dumps({"email_opted_in": False, "user_metadata": {"finished_onboarding_survey": True}}).encode()
    req = urllib.request.Request(
        server + "/api/v1/current-user",
        data=body,
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=30).close()


@contextmanager
def _devtools_page(width: int, height: int):
    port = free_port()
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen(
        [
            "chromium",
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--remote-debugging-port={port}",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as resp:
                    pages = [p for p in json.load(resp) if p["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("headless Chromium did not open its DevTools port")
            time.sleep(0.2)
        from websockets.sync.client import connect

        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            counter = iter(range(1, 1 << 30))

            def call(method: str, **params):
                msg_id = next(counter)
                ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
                while True:
                    msg = json.loads(ws.recv(timeout=60))
                    if msg.get("id") == msg_id:
                        if "error" in msg:
                            raise RuntimeError(f"{method}: {msg['error']}")
                        return msg["result"]

            yield call
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def render(
    server: str,
    page_url: str,
    username: str,
    password: str,
    must_show: list[str],
    timeout_s: float = 90,
    size: tuple[int, int] = (1400, 900),
) -> tuple[str, bytes]:
    """(the page's visible text, a PNG of it) once every string in ``must_show`` is on the page.

    Raises:
        AssertionError: the strings did not all appear within ``timeout_s`` (with the text that did).
    """
    name, value, token = login(server, username, password)
    answer_account_survey(server, token)
    with _devtools_page(*size) as call:
        call("Network.enable")
        call("Network.setCookie", name=name, value=value, url=server, httpOnly=True)
        call("Page.enable")
        call("Page.addScriptToEvaluateOnNewDocument", source="localStorage.setItem('isAuthenticated', 'true')")
        return _capture(call, page_url, must_show, timeout_s, size)


def render_open(
    page_url: str, must_show: list[str], timeout_s: float = 90, size: tuple[int, int] = (1400, 900)
) -> tuple[str, bytes]:
    """As :func:`render`, for a page that needs no login (a local MLflow UI)."""
    with _devtools_page(*size) as call:
        call("Page.enable")
        return _capture(call, page_url, must_show, timeout_s, size)


def _capture(call, page_url: str, must_show: list[str], timeout_s: float, size: tuple[int, int]) -> tuple[str, bytes]:
    """The page's visible text and a PNG once every string in ``must_show`` is on it (else AssertionError)."""
    call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1, mobile=False)
    call("Page.navigate", url=page_url)
    deadline, text = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        result = call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''", returnByValue=True)
        text = result["result"].get("value", "")
        if all(s in text for s in must_show):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"{page_url} did not show {must_show} within {timeout_s:.0f} s; it showed: {text[:500]!r}")
    time.sleep(1.5)  # the DAG view lays itself out after the text arrives
    return text, base64.b64decode(call("Page.captureScreenshot", format="png")["data"])
