"""A scripted OpenAI-compatible /v1/chat/completions on 127.0.0.1, for the QA generator's tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    """A scripted /v1/chat/completions: each script entry is an HTTP status or a content string; after the
    script, every request gets a good JSON answer (or ``then`` when it is set). ``{n}`` in a content
    string becomes the request's number (1, 2, ...)."""

    def __init__(self, script: list[int | str], then: int | str | None = None) -> None:
        self.script = list(script)
        self.then = then
        self.retry_after = "0"  # the Retry-After header sent with error statuses
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.requests.append(
                        {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                    )
                    step = owner.script.pop(0) if owner.script else owner.then
                    number = len(owner.requests)
                if step is None:
                    question = f"What is said in request {number}?"
                    step = json.dumps({"question": question, "answer": "Something specific, in other words."})
                if isinstance(step, int):
                    self.send_response(step)
                    self.send_header("Retry-After", owner.retry_after)
                    self.end_headers()
                    self.wfile.write(b'{"error": "scripted"}')
                    return
                content = step.replace("{n}", str(number))
                payload = json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": content}}]}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
