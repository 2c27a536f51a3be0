"""A client for any OpenAI-compatible chat-completions endpoint: streaming, tools, timeouts.

Qwen's compatible mode, llama.cpp's server and Ollama all speak this: POST
``{endpoint}/chat/completions`` with the messages and the tools, and read
back server-sent events (``data: {...}`` lines, ``data: [DONE]`` last) whose
deltas carry the answer's text and the tool calls in pieces. A server that
ignores ``stream`` and answers with one JSON body is understood too.

Everything that can go wrong (no server, a timeout, a status that is not
200, a body that is not what the protocol says) is an LlmError with the
reason, so the assistant can fall back to its offline intents and say why.
Runs in a worker thread: it touches nothing but its arguments.
"""

from __future__ import annotations

import json
import socket
from typing import Callable, NamedTuple

from bus.slotted import Slotted


class LlmError(RuntimeError):
    """The endpoint could not give an answer; the message says why."""


class ToolCall(NamedTuple):
    id: str
    name: str
    arguments: dict


class Reply(Slotted):
    __slots__ = ("content", "tool_calls")

    def __init__(self, content: str = "", tool_calls: list[ToolCall] | None = None):
        self.content = content
        self.tool_calls: list[ToolCall] = tool_calls if tool_calls is not None else []


class ChatClient:
    def __init__(self, endpoint: str, model: str, api_key: str | None, timeout_s: float):
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout_s = model, api_key, timeout_s

    def chat(self, messages: list[dict], tools: list[dict], on_text: Callable[[str], None] | None = None) -> Reply:
        import urllib.error  # here, not at the top: an offline assistant never loads http.client and ssl
        import urllib.request

        body = {"model": self.model, "messages": messages, "stream": True}
        if tools:
            body["tools"] = tools
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            # The timeout bounds the connection and every read: a server that stalls mid-answer is caught too.
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                if "text/event-stream" in (response.headers.get("Content-Type") or ""):
                    return _read_stream(response, on_text)
                return _read_whole(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode(errors="replace") if exc.fp else ""
            raise LlmError(f"{self.url} answered {exc.code} {exc.reason}: {detail}".strip()) from None
        except (socket.timeout, TimeoutError):
            raise LlmError(f"{self.url} made no progress for {self.timeout_s:g} s") from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            raise LlmError(f"{self.url} is unreachable: {getattr(exc, 'reason', exc)}") from None


def _read_stream(response, on_text: Callable[[str], None] | None) -> Reply:
    reply, calls = Reply(), {}  # tool calls arrive in pieces, keyed by index
    done = False
    for raw in response:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line.startswith("data:"):
            continue  # blank separators, comments (": keep-alive"), event names
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        choice = _first_choice(_json(data))
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise LlmError(f"malformed stream: delta is {type(delta).__name__}")
        text = delta.get("content")
        if text:
            reply.content += str(text)
            if on_text is not None:
                on_text(reply.content)
        for piece in delta.get("tool_calls") or []:
            slot = calls.setdefault(piece.get("index", len(calls)), {"id": "", "name": "", "arguments": ""})
            slot["id"] = piece.get("id") or slot["id"]
            function = piece.get("function") or {}
            slot["name"] += function.get("name") or ""
            slot["arguments"] += function.get("arguments") or ""
        if choice.get("finish_reason"):
            done = True
    if not done:
        raise LlmError("the stream ended before the answer did (no finish_reason, no [DONE])")
    reply.tool_calls = [_tool_call(c) for _, c in sorted(calls.items())]
    return reply


def _read_whole(body: bytes) -> Reply:
    message = _first_choice(_json(body.decode("utf-8", errors="replace"))).get("message")
    if not isinstance(message, dict):
        raise LlmError("malformed reply: no message in choices[0]")
    calls = [{"id": c.get("id", ""), "name": (c.get("function") or {}).get("name", ""),
              "arguments": (c.get("function") or {}).get("arguments") or "{}"}
             for c in message.get("tool_calls") or []]
    return Reply(str(message.get("content") or ""), [_tool_call(c) for c in calls])


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LlmError(f"malformed reply: not JSON ({exc.msg} at {exc.pos}): {text[:80]!r}") from None


def _first_choice(data) -> dict:
    if not isinstance(data, dict):
        raise LlmError(f"malformed reply: {type(data).__name__} instead of an object")
    if "error" in data:
        raise LlmError(f"the endpoint reported an error: {str(data['error'])[:200]}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LlmError("malformed reply: no choices")
    return choices[0]


def _tool_call(raw: dict) -> ToolCall:
    if not raw["name"]:
        raise LlmError("malformed tool call: no function name")
    arguments = _json(raw["arguments"] or "{}") if isinstance(raw["arguments"], str) else raw["arguments"]
    if not isinstance(arguments, dict):
        raise LlmError(f"malformed tool call {raw['name']}: arguments are not an object")
    return ToolCall(raw["id"] or raw["name"], raw["name"], arguments)
