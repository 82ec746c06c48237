"""A tiny W3C WebDriver client (stdlib only) for Debian's chromium + chromium-driver, used by the browser tests.

    with Browser() as browser:                  # starts chromedriver and a headless Chromium
        browser.get("http://127.0.0.1:8765/")
        browser.find("#text").send_keys("hello")
        browser.run("return document.title")

WebDriver is plain JSON over HTTP (https://www.w3.org/TR/webdriver2/), so no Python package is needed.
Chromium runs headless with a fresh profile and with its background network traffic switched off
(FLAGS). `find_browser()` names the executables or says why there are none; `install_hint()` is the
apt-get line the test set-up runs.
"""

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
KEYS = {"right": "\ue014", "left": "\ue012", "end": "\ue010", "home": "\ue011"}


def find_browser() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, or a sentence saying what is missing."""
    chromium = next((p for p in CHROMIUM if Path(p).exists()), None) or shutil.which("chromium")
    driver = next((p for p in DRIVER if Path(p).exists()), None) or shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    missing = " and ".join(name for name, path in (("chromium", chromium), ("chromium-driver", driver)) if not path)
    return f"{missing} not installed ({install_hint()})"


def install_hint() -> str:
    return "as root: DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriverError(RuntimeError):
    pass


class Element:
    def __init__(self, browser: "Browser", ref: str) -> None:
        self.browser, self.ref = browser, ref

    def click(self) -> None:
        self.browser.command("POST", f"element/{self.ref}/click", {})

    def send_keys(self, text: str) -> None:
        self.browser.command("POST", f"element/{self.ref}/value", {"text": text})

    def clear(self) -> None:
        self.browser.command("POST", f"element/{self.ref}/clear", {})

    @property
    def text(self) -> str:
        return self.browser.command("GET", f"element/{self.ref}/text")

    def screenshot(self, path: str | Path) -> None:
        Path(path).write_bytes(base64.b64decode(self.browser.command("GET", f"element/{self.ref}/screenshot")))


class Browser:
    """chromedriver + headless Chromium for the length of a `with` block (or until close())."""

    def __init__(self, width: int = 1280, height: int = 1600, timeout: float = 20.0) -> None:
        found = find_browser()
        if isinstance(found, str):
            raise WebDriverError(found)
        chromium, driver = found
        self.profile = tempfile.TemporaryDirectory(prefix="fmblocks-chromium-")
        self.port = free_port()
        self.driver = subprocess.Popen([driver, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._http("GET", "/status")["value"]["ready"]:
                    break
            except (OSError, KeyError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.driver.kill()
                raise WebDriverError("chromedriver did not start")
            time.sleep(0.05)
        options = {"binary": chromium, "args": [*FLAGS, f"--user-data-dir={self.profile.name}",
                                                f"--window-size={width},{height}"]}
        capabilities = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        try:
            self.session = self._http("POST", "/session", capabilities)["value"]["sessionId"]
        except Exception:
            self.driver.kill()
            raise

    def _http(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            payload = json.loads(err.read() or b"{}").get("value", {})
            raise WebDriverError(f"{payload.get('error')}: {payload.get('message', '')[:300]}") from None

    def command(self, method: str, path: str, body: Any = None) -> Any:
        return self._http(method, f"/session/{self.session}/{path}", body)["value"]

    def get(self, url: str) -> None:
        self.command("POST", "url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """Run JavaScript in the page (`arguments[i]` are args) and return its result."""
        return self.command("POST", "execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> Element:
        return Element(self, self.command("POST", "element", {"using": "css selector", "value": css})[ELEMENT])

    def wait(self, script: str, *args: Any, timeout: float = 15.0) -> Any:
        """Poll the JavaScript expression-returning `script` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.run(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise WebDriverError(f"timed out waiting for: {script}")
            time.sleep(0.05)

    def screenshot(self, path: str | Path) -> None:
        Path(path).write_bytes(base64.b64decode(self.command("GET", "screenshot")))

    def close(self) -> None:
        try:
            self._http("DELETE", f"/session/{self.session}")
        except Exception:
            pass
        self.driver.terminate()
        try:
            self.driver.wait(5)
        except subprocess.TimeoutExpired:
            self.driver.kill()
        self.profile.cleanup()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
