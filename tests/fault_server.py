"""A small OpenAI-compatible server on 127.0.0.1 that misbehaves on purpose.

It streams completions the way OpenAI-compatible servers do (server-sent
events of ``text_completion`` chunks, then a usage chunk and ``[DONE]``), and
can be told, per request, to answer 429 with Retry-After, 500, or to drop the
connection after some chunks. The happy path of the API backend is tested
against the real ``transformers serve``; this server covers the faults a real
server cannot be made to produce on demand.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up early are part of the tests


class FaultServer:
    """``plan`` holds one action per completion request ('429:SECONDS', '500',
    'drop:N' or 'ok'); requests beyond the plan get 'ok'."""

    def __init__(
        self, plan: list[str] | None = None, *, words: int = 4, gap_s: float = 0.02
    ) -> None:
        self.plan = list(plan or [])
        self.words, self.gap_s = words, gap_s
        self.requests = 0
        self.prompts: list[str] = []
        self.echo = True  # answer echo + logprobs requests with log-probabilities
        self.reply = " The answer is 18.\n\nQuestion: next"
        self.lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def next_action(self) -> str:
        with self.lock:
            self.requests += 1
            return self.plan.pop(0) if self.plan else "ok"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._json(
                200,
                {"object": "list", "data": [{"id": "fault-model", "object": "model"}]},
            )

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            request = json.loads(self.rfile.read(length) or b"{}")
            action = server.next_action()
            if action.startswith("sleep"):
                time.sleep(float(action.split(":")[1]))
                action = "ok"
            if action.startswith("429"):
                self._json(
                    429,
                    {"error": {"message": "slow down"}},
                    {"retry-after": action.split(":")[1]},
                )
            elif action == "500":
                self._json(500, {"error": {"message": "broken"}})
            elif not request.get("stream"):
                self._complete(request)
            else:
                drop = int(action.split(":")[1]) if action.startswith("drop") else None
                self._stream(int(request.get("max_tokens", server.words)), drop)

        def _complete(self, request: dict) -> None:
            """A non-streamed completion. With ``echo`` and ``logprobs`` the
            prompt comes back split at word starts (``\\s*\\S+``), token i
            scored −0.5·i (the first: None) with a top alternative "alt" at
            −0.75 (so only token 1 is greedy), then one generated token. Without
            them (or with ``server.echo`` off) the text is ``server.reply``."""
            prompt = request.get("prompt", "")
            server.prompts.append(prompt)
            if request.get("messages"):
                prompt = request["messages"][-1]["content"]
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
            if request.get("echo") and request.get("logprobs") and server.echo:
                tokens = re.findall(r"\s*\S+", prompt) + [" gen"]
                offsets, at = [], 0
                for t in tokens:
                    offsets.append(at)
                    at += len(t)
                lps = [None] + [-0.5 * i for i in range(1, len(tokens))]
                choice.update(
                    text=prompt + " gen",
                    logprobs={
                        "tokens": tokens,
                        "text_offset": offsets,
                        "token_logprobs": lps,
                        "top_logprobs": [None]
                        + [
                            {t: lp, "alt": -0.75}
                            for t, lp in zip(tokens[1:], lps[1:], strict=True)
                        ],
                    },
                )
            else:
                choice.update(text=server.reply, logprobs=None)
            if request.get("messages"):
                choice = {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": server.reply},
                }
            self._json(
                200,
                {
                    "id": "x",
                    "object": "chat.completion"
                    if request.get("messages")
                    else "text_completion",
                    "created": 0,
                    "model": "fault-model",
                    "choices": [choice],
                },
            )

        def _event(self, body: dict) -> None:
            self.wfile.write(f"data: {json.dumps(body)}\n\n".encode())
            self.wfile.flush()

        def _stream(self, max_tokens: int, drop: int | None) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            n = min(server.words, max_tokens)
            base = {
                "id": "x",
                "object": "text_completion",
                "created": 0,
                "model": "fault-model",
            }
            for i in range(n):
                if drop is not None and i == drop:
                    self.connection.shutdown(2)  # the server dies mid-stream
                    return
                time.sleep(server.gap_s)
                self._event(
                    {
                        **base,
                        "choices": [
                            {"index": 0, "text": f" w{i}", "finish_reason": None}
                        ],
                    }
                )
            self._event(
                {
                    **base,
                    "choices": [{"index": 0, "text": "", "finish_reason": "length"}],
                }
            )
            self._event(
                {
                    **base,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 3,
                        "completion_tokens": n,
                        "total_tokens": n + 3,
                    },
                }
            )
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler


class GeminiServer:
    """A local server speaking the Gemini API's streaming wire format
    (``POST .../models/MODEL:streamGenerateContent?alt=sse``), with the same
    per-request ``plan`` of faults as FaultServer."""

    def __init__(self, plan: list[str] | None = None, *, words: int = 4) -> None:
        self.plan, self.words = list(plan or []), words
        self.requests, self.paths = 0, []
        self.lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), _gemini_handler(self))
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def next_action(self, path: str) -> str:
        with self.lock:
            self.requests += 1
            self.paths.append(path)
            return self.plan.pop(0) if self.plan else "ok"

    def __enter__(self) -> GeminiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _gemini_handler(server: GeminiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            request = json.loads(self.rfile.read(length) or b"{}")
            action = server.next_action(self.path)
            if action.startswith("429") or action == "500":
                status = 429 if action.startswith("429") else 500
                body = json.dumps(
                    {
                        "error": {
                            "code": status,
                            "message": "fault",
                            "status": "UNAVAILABLE",
                        }
                    }
                ).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            limit = request.get("generationConfig", {}).get("maxOutputTokens", 4)
            n = min(server.words, limit)
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            for i in range(n):
                time.sleep(0.01)
                candidate: dict[str, Any] = {
                    "content": {"parts": [{"text": f" w{i}"}], "role": "model"},
                    "index": 0,
                }
                if i == n - 1:
                    candidate["finishReason"] = "MAX_TOKENS"
                chunk = {
                    "candidates": [candidate],
                    "usageMetadata": {
                        "promptTokenCount": 3,
                        "candidatesTokenCount": i + 1,
                        "totalTokenCount": 4 + i,
                    },
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
                self.wfile.flush()

    return Handler
