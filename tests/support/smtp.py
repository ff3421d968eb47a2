"""A real local SMTP server for the e-mail tests: aiosmtpd in its own process, on a free
loopback port, writing every message it accepts to a folder the test reads.

::

    server = SmtpServer(tmp_path / "mail").start()          # plain SMTP
    server = SmtpServer(folder, tls=cert_files, login=("u", "p"), refuse_first=2).start()
    ...
    server.wait_for(1)      # bounded
    [message] = server.messages()
    server.stop()

Options of the server process (``python -m tests.support.smtp``): ``--port``, ``--dir``;
``--cert``/``--key`` to offer STARTTLS (and require it before AUTH and mail); ``--login
USER:PASSWORD`` to require AUTH; ``--refuse-first N`` to answer the first N messages' RCPT with a
temporary ``451`` (a struggling relay); ``--reject ADDRESS`` to refuse a recipient for good
(``550``). Accepted messages are written atomically as ``<n>.eml`` with ``X-Envelope-To``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import email
import email.policy
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: The repository root (the server process runs with it on its path).
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpServer:
    """The server process, its port and its mail folder."""

    def __init__(self, folder: Path, *, port: int | None = None,
                 tls: tuple[Path, Path] | None = None, login: tuple[str, str] | None = None,
                 refuse_first: int = 0, reject: str | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.tls = tls
        self.login = login
        self.refuse_first = refuse_first
        self.reject = reject
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> SmtpServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "tests.support.smtp", "--port", str(self.port),
                "--dir", str(self.folder), "--refuse-first", str(self.refuse_first)]
        if self.tls is not None:
            args += ["--cert", str(self.tls[0]), "--key", str(self.tls[1])]
        if self.login is not None:
            args += ["--login", f"{self.login[0]}:{self.login[1]}"]
        if self.reject is not None:
            args += ["--reject", self.reject]
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"the SMTP server exited: {err}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.settimeout(2)
                if sock.recv(3) == b"220":
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the SMTP server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def messages(self) -> list[EmailMessage]:
        """The messages accepted so far, in order."""
        files = sorted(self.folder.glob("*.eml"), key=lambda p: int(p.stem))
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                for p in files]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(found := self.messages()) < count:
            assert time.monotonic() < deadline, f"only {len(found)} messages arrived"
            time.sleep(0.05)
        return found

    async def wait_for_async(self, count: int, timeout: float = 15.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(found := self.messages()) < count:
            assert time.monotonic() < deadline, f"only {len(found)} messages arrived"
            await asyncio.sleep(0.05)
        return found

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` / ``127.0.0.1`` (cert file, key file)."""

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


# -- the server process -------------------------------------------------------------------------------
class _Handler:
    def __init__(self, folder: Path, refuse_first: int, reject: str | None) -> None:
        self.folder = folder
        self.refuse_left = refuse_first
        self.reject = reject.lower() if reject else None
        self.count = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.reject is not None and address.lower() == self.reject:
            return "550 5.1.1 no such mailbox"
        if self.refuse_left > 0:
            self.refuse_left -= 1
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        body = (f"X-Envelope-From: {envelope.mail_from}\r\n"
                f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n").encode()
        content = envelope.original_content or envelope.content
        target = self.folder / f"{self.count}.eml"
        partial = self.folder / f".{self.count}.tmp"
        partial.write_bytes(body + content)
        os.replace(partial, target)
        return "250 Message accepted"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--login")
    parser.add_argument("--refuse-first", type=int, default=0)
    parser.add_argument("--reject")
    args = parser.parse_args()
    handler = _Handler(args.dir, args.refuse_first, args.reject)
    options: dict[str, Any] = {}
    if args.cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        options.update(tls_context=context, require_starttls=True)
    if args.login is not None:
        user, _, password = args.login.partition(":")

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                         auth_data: Any) -> Any:
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            return AuthResult(success=ok)

        options.update(authenticator=authenticate, auth_required=True,
                       auth_require_tls=args.cert is not None)
    controller = Controller(handler, hostname="127.0.0.1", port=args.port, **options)
    controller.start()
    stop = False

    def on_signal(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not stop:
            time.sleep(0.05)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
