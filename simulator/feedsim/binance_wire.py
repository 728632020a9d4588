"""Binance's websocket wire format for the feed server (LIVE.md 1.1, 1.2): stream names, URL
paths, the JSON control protocol and payload framing. No sockets here: the server core
(server.py) calls these and writes the bytes; the REST side is rest.py.

Control-message errors use the shape the real server sends on the wire,
`{"error":{"code":2,"msg":"Invalid request: ..."},"id":1}`; the docs' table lists the inner
object only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote

import orjson

MAX_STREAMS: Final = 1024
MAX_INCOMING_PER_S: Final = 5
METHODS: Final = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_STREAM: Final = re.compile(r"^(?:[a-z0-9]+@[A-Za-z0-9_@]+|![A-Za-z0-9_@]+)$")
_ID: Final = re.compile(r"^[A-Za-z0-9]{1,36}$")
_INT64: Final = 2**63


def normalize_stream(name: str) -> str | None:
    """`BTCUSDT@trade` -> `btcusdt@trade` (symbols are lowercase); None if not a stream name."""
    symbol, at, rest = name.partition("@")
    name = symbol.lower() + at + rest
    return name if _STREAM.match(name) else None


@dataclass(slots=True)
class Subscription:
    """One connection's streams (in subscribe order) and payload mode."""

    streams: dict[str, None] = field(default_factory=dict)
    combined: bool = True


def path_subscription(path: str) -> Subscription | str | None:
    """The subscription a URL opens with: `/stream?streams=a/b` (combined), `/ws/<a>/<b>`
    (raw), or bare `/stream` and `/ws` awaiting SUBSCRIBE. None for other paths; the reason
    as a string when a stream name is invalid or there are too many."""
    route, _, query = path.partition("?")
    route = route.rstrip("/") or "/"
    params = {k: unquote(v) for k, _, v in (p.partition("=") for p in query.split("&") if p)}
    if route == "/stream":
        names, combined = params.get("streams", ""), True
    elif route == "/ws" or route.startswith("/ws/"):
        names, combined = route[4:], False
    else:
        return None
    if params.get("timeUnit", "MILLISECOND").upper() != "MILLISECOND":
        return f"timeUnit={params['timeUnit']} is not served: the recording is in milliseconds"
    sub = Subscription(combined=combined)
    for name in filter(None, names.split("/")):
        stream = normalize_stream(name)
        if stream is None:
            return f"invalid stream name {name!r}"
        sub.streams[stream] = None
    if len(sub.streams) > MAX_STREAMS:
        return f"{len(sub.streams)} streams; {MAX_STREAMS} at most per connection"
    return sub


REFUSED: Final = "Invalid request: subscription refused (feed server fault reject_subscribe)"


def subscribe_refusal(message: str | bytes) -> bytes | None:
    """The error answer to `message` if it is a SUBSCRIBE request, else None (not one)."""
    try:
        request = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(request, dict) or request.get("method") != "SUBSCRIBE":
        return None
    return _error(2, REFUSED, request.get("id"))


def _error(code: int, msg: str, request_id: object = None) -> bytes:
    return orjson.dumps({"error": {"code": code, "msg": msg}, "id": request_id})


def _valid_id(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_INT64 <= value < _INT64
    return value is None or (isinstance(value, str) and _ID.match(value) is not None)


def control_reply(message: str | bytes, sub: Subscription) -> bytes:
    """Answer one JSON control message, updating `sub`; errors as Binance words them."""
    try:
        request = orjson.loads(message)
    except orjson.JSONDecodeError as e:
        return _error(3, f"Invalid JSON: expected value at line {e.lineno} column {e.colno}")
    if not isinstance(request, dict):
        return _error(2, "Invalid request: expected a JSON object")
    request_id = request.get("id")
    if "id" not in request or not _valid_id(request_id):
        return _error(2, "Invalid request: request ID must be an unsigned integer")
    method = request.get("method")
    if method is None:
        return _error(2, "Invalid request: missing field `method`", request_id)
    if method not in METHODS:
        expected = ", ".join(f"`{m}`" for m in METHODS)
        return _error(
            2,
            f"Invalid request: unknown variant `{method}`, expected one of {expected}",
            request_id,
        )
    params = request.get("params", [])
    if not isinstance(params, list):
        return _error(2, "Invalid request: params must be an array", request_id)
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        return _subscribe(sub, params, request_id, add=method == "SUBSCRIBE")
    if method == "LIST_SUBSCRIPTIONS":
        return orjson.dumps({"result": list(sub.streams), "id": request_id})
    return _property(sub, params, request_id, write=method == "SET_PROPERTY")


def _subscribe(sub: Subscription, params: list[object], request_id: object, *, add: bool) -> bytes:
    streams = [normalize_stream(p) if isinstance(p, str) else None for p in params]
    if not streams or None in streams:
        return _error(2, "Invalid request: invalid stream", request_id)
    if add:
        fresh = {s: None for s in streams if s is not None and s not in sub.streams}
        if len(sub.streams) + len(fresh) > MAX_STREAMS:
            return _error(
                2, f"Invalid request: too many streams ({MAX_STREAMS} at most)", request_id
            )
        sub.streams.update(fresh)
    else:
        for stream in streams:
            sub.streams.pop(str(stream), None)
    return orjson.dumps({"result": None, "id": request_id})


def _property(sub: Subscription, params: list[object], request_id: object, *, write: bool) -> bytes:
    if len(params) > (2 if write else 1):
        return _error(2, "Invalid request: too many parameters", request_id)
    if not params or not isinstance(params[0], str):
        return _error(2, "Invalid request: property name must be a string", request_id)
    if params[0] != "combined":
        return _error(0, "Unknown property", request_id)
    if not write:
        return orjson.dumps({"result": sub.combined, "id": request_id})
    if len(params) < 2 or not isinstance(params[1], bool):
        return _error(1, "Invalid value type: expected Boolean", request_id)
    sub.combined = params[1]
    return orjson.dumps({"result": None, "id": request_id})


def raw_payload(text: bytes, stream: str) -> bytes:
    """The `data` of a combined-stream message, sliced out byte-exact when it is in Binance's
    layout `{"stream":"<name>","data":<payload>}`."""
    head = 21 + len(stream)  # len('{"stream":"') + len('","data":') == 21
    if text.endswith(b"}") and text[head - 9 : head] == b'","data":':
        return text[head:-1]
    return orjson.dumps(orjson.loads(text)["data"])


def shutdown_notice(ts_ms: int, *, combined: bool) -> bytes:
    """Binance's serverShutdown event, wrapped like a stream message in combined mode."""
    event = {"e": "serverShutdown", "E": ts_ms}
    return orjson.dumps({"stream": "!serverShutdown", "data": event} if combined else event)
