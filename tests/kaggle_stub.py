"""A stand-in for api.kaggle.com on loopback, for testing the REAL kaggle client.

With ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` the kaggle client sends every request to
``http://localhost`` (port 80). ``KaggleStub`` binds that port, answers the routes a
test registers, and records every request it saw::

    with KaggleStub() as stub:
        stub.add_route("POST", DOWNLOAD_DATA_FILES, stub.redirect_to_file("dogs-vs-cats.zip", payload))
        subprocess.run([...], env=stub.client_env(tmp_path))
        assert stub.requests[0].json == {"competitionName": "dogs-vs-cats"}

A route handler takes the ``StubRequest`` and returns a ``StubResponse``. Helpers build
the common answers: ``json_response``, ``kaggle_error`` (the JSON error body the client
turns into an ``HTTPError``), ``file_response`` and ``redirect``. Port 80 is shared by
every test process on the machine, so the stub holds a file lock while it serves; if
the port cannot be bound at all, ``StubUnavailable`` says why (tests skip on it).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

STUB_PORT = 80
API_PREFIX = "/api/v1/"
DOWNLOAD_DATA_FILES = API_PREFIX + "competitions.CompetitionApiService/DownloadDataFiles"
DOWNLOAD_DATASET = API_PREFIX + "datasets.DatasetApiService/DownloadDataset"
START_SUBMISSION_UPLOAD = API_PREFIX + "competitions.CompetitionApiService/StartSubmissionUpload"
CREATE_SUBMISSION = API_PREFIX + "competitions.CompetitionApiService/CreateSubmission"
FILES_PREFIX = "/stub-files/"
TEST_USERNAME = "stub-user"
TEST_KEY = "0123456789abcdef0123456789abcdef"
LOCK_FILE = Path(tempfile.gettempdir()) / "kaggle_stub_port80.lock"


@contextlib.contextmanager
def exclusive_port():
    """Hold the machine-wide lock on the stub's port (other test processes wait), e.g. to
    test "no server" without another process's stub answering."""
    with open(LOCK_FILE, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class StubUnavailable(RuntimeError):
    """The stub could not bind its port (not root, or another server holds it)."""


@dataclass
class StubRequest:
    method: str
    path: str
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body or b"null")

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """(username, key) from an HTTP Basic Authorization header, if any."""
        value = self.headers.get("Authorization", "")
        if not value.startswith("Basic "):
            return None
        username, _, key = base64.b64decode(value[6:]).decode().partition(":")
        return username, key


@dataclass
class StubResponse:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)


Handler = Callable[[StubRequest], StubResponse]


def json_response(payload, status: int = 200) -> StubResponse:
    return StubResponse(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def kaggle_error(status: int, message: str) -> StubResponse:
    """The JSON error body api.kaggle.com sends (the client raises HTTPError(message))."""
    return json_response({"code": status, "message": message}, status)


def file_response(payload: bytes, content_type: str = "application/zip") -> StubResponse:
    return StubResponse(200, payload, {"Content-Type": content_type, "Content-Length": str(len(payload))})


def redirect(location: str) -> StubResponse:
    return StubResponse(302, b"", {"Location": location})


class KaggleStub:
    """A threaded HTTP server on localhost:80 with per-test routes and a request log."""

    def __init__(self, port: int = STUB_PORT):
        self.port = port
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[StubRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._port_lock = None

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Answer ``method path`` with ``handler(request)``; unknown routes get a 404."""
        self.routes[(method.upper(), path)] = handler

    def serve_file(self, name: str, payload: bytes) -> str:
        """Serve ``payload`` at GET /stub-files/<name>; returns that path."""
        path = FILES_PREFIX + name
        self.add_route("GET", path, lambda request: file_response(payload))
        return path

    def redirect_to_file(self, name: str, payload: bytes) -> Handler:
        """A handler that redirects to ``payload`` served as ``name`` (how Kaggle serves downloads)."""
        path = self.serve_file(name, payload)
        return lambda request: redirect(f"http://localhost:{self.port}{path}")

    def client_env(self, config_dir: Path, username: str = TEST_USERNAME, key: str = TEST_KEY) -> dict:
        """Environment for a subprocess running the real kaggle client against this stub,
        with throwaway legacy credentials written to ``config_dir/kaggle.json``."""
        config_dir = Path(config_dir)
        config_dir.mkdir(parents=True, exist_ok=True)
        token = config_dir / "kaggle.json"
        token.write_text(json.dumps({"username": username, "key": key}))
        token.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
        env.update(KAGGLE_API_ENVIRONMENT="LOCALHOST", KAGGLE_CONFIG_DIR=str(config_dir))
        env.pop("HTTP_PROXY", None)
        env.pop("http_proxy", None)
        env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1"
        return env

    def _handle(self, request: StubRequest) -> StubResponse:
        self.requests.append(request)
        handler = self.routes.get((request.method, request.path.split("?")[0]))
        if handler is None:
            return kaggle_error(404, f"stub has no route for {request.method} {request.path}")
        return handler(request)

    def start(self) -> "KaggleStub":
        self._port_lock = exclusive_port()
        self._port_lock.__enter__()  # one stub on port 80 at a time
        stub = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = StubRequest(self.command, self.path, dict(self.headers), self.rfile.read(length))
                response = stub._handle(request)
                self.send_response(response.status)
                headers = {"Content-Length": str(len(response.body)), **response.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_POST = do_HEAD = do_PUT = _answer

            def log_message(self, *args):
                pass

        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", self.port), RequestHandler)
        except OSError as error:
            self._release_lock()
            raise StubUnavailable(f"cannot bind localhost:{self.port} for the Kaggle stub: {error}") from None
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._release_lock()

    def _release_lock(self) -> None:
        if self._port_lock is not None:
            self._port_lock.__exit__(None, None, None)
            self._port_lock = None

    def __enter__(self) -> "KaggleStub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def running_stub_or_skip() -> Iterator["KaggleStub"]:
    """A started stub for a pytest fixture; skips the test when port 80 cannot be bound."""
    import pytest

    try:
        with KaggleStub() as stub:
            yield stub
    except StubUnavailable as reason:
        pytest.skip(str(reason))
