"""Screenshot of the run dashboard for README (docs/dashboard.png), in headless Chromium.

Serves the dashboard over the configured database (``LOR_DATABASE_URL`` or the embedded
one) in this process, opens it in Debian's Chromium, waits until the newest run's plots have
loaded and saves the page. Usage: ``.venv/bin/python scripts/dashboard_screenshot.py [OUT]``.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from lor.dashboard.app import create_app, reader_engine

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000", "--hide-scrollbars")  # fmt: skip


def main(out: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(reader_engine()), port=port,
                                           log_level="warning"))  # fmt: skip
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    profile = tempfile.mkdtemp(prefix="lor-shot-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        loaded = ("return [...document.querySelectorAll('img')].filter(i => !i.hidden && "
                  "i.offsetParent !== null).every(i => i.complete && i.naturalWidth > 100)")  # fmt: skip
        deadline = time.monotonic() + 120
        time.sleep(3)
        while not driver.execute_script(loaded) and time.monotonic() < deadline:
            time.sleep(0.5)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, height + 20)
        time.sleep(1)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        server.should_exit = True
    print(f"saved {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png"))
