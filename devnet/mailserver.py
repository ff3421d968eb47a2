"""The demo port's SIMULATED mail server: aiosmtpd in its own process on loopback, delivering
every message into a Maildir, so the demo can show alerts arriving by e-mail through real SMTP.

Nothing leaves the machine: the server listens on 127.0.0.1 only and stores what it receives.
"""

from __future__ import annotations

import mailbox
import socket
import subprocess
import sys
import time
from email.header import decode_header, make_header
from pathlib import Path

from devnet.errors import DevnetError
from devnet.ports import free_port


class MailServer:
    """``python -m aiosmtpd -n -l 127.0.0.1:<port> -c aiosmtpd.handlers.Mailbox <maildir>``."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = Path(folder)
        self.port = port or free_port()
        self.maildir = self.folder / "Maildir"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> MailServer:
        """Start the server; return once it accepts connections (DevnetError otherwise)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "mailserver.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}",
             "-c", "aiosmtpd.handlers.Mailbox", str(self.maildir)],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DevnetError(f"the SIMULATED mail server exited ({self.process.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise DevnetError(f"the SIMULATED mail server did not listen within {timeout} s")

    def messages(self) -> list[tuple[str, str, str]]:
        """(to, subject, text body) of every message received so far."""
        if not self.maildir.exists():
            return []
        out = []
        for message in mailbox.Maildir(self.maildir, create=False):
            parts = [message] if not message.is_multipart() else [
                p for p in message.walk() if p.get_content_type() == "text/plain"]
            text = ""
            for part in parts:
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    text += payload.decode("utf-8", "replace")
            subject = str(make_header(decode_header(str(message["Subject"] or ""))))
            out.append((str(message["To"]), subject, text))
        return out

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
