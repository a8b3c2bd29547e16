"""An HTTP/2 client (the `h2` package) that drives edgeplane's HTTP/2 side through the cases
curl and h2load do not reach: small windows, stream limits, resets, malformed requests,
CONTINUATION frames, oversized header lists, PING, bad prefaces, reset floods, turns between
large responses, and WebSocket over HTTP/2 (extended CONNECT, RFC 8441).

Usage: h2_peer.py CASE HOST PORT; prints what it saw, a `key=JSON value` line each.
       h2_peer.py ws_server HOST 0 serves WebSocket echo (the `websockets` package) on a free
       port, after printing `port=N`, until killed."""

import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def connect(host, port, settings=None):
    sock = socket.create_connection((host, port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    if settings:
        conn.update_settings(settings)
    sock.sendall(conn.data_to_send())
    return sock, conn


def headers(path, method="GET", extra=()):
    return [(":method", method), (":scheme", "http"), (":authority", "h2.test"), (":path", path), *extra]


def pump(sock, conn, until, timeout=10.0, on_event=None):
    """Reads until `until()` holds; returns every event seen."""
    seen = []
    deadline = time.time() + timeout
    while not until() and time.time() < deadline:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            seen.append("eof")
            break
        for e in conn.receive_data(data):
            seen.append(e)
            if on_event:
                on_event(e)
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    return seen


class Responses:
    def __init__(self):
        self.status = {}
        self.body = {}
        self.ended = set()
        self.reset = {}
        self.goaway = None
        self.eof = False

    def __call__(self, e):
        if isinstance(e, h2.events.ResponseReceived):
            self.status[e.stream_id] = dict(e.headers).get(":status")
        elif isinstance(e, h2.events.DataReceived):
            self.body[e.stream_id] = self.body.get(e.stream_id, b"") + e.data
        elif isinstance(e, h2.events.StreamEnded):
            self.ended.add(e.stream_id)
        elif isinstance(e, h2.events.StreamReset):
            self.reset[e.stream_id] = int(e.error_code)
        elif isinstance(e, h2.events.ConnectionTerminated):
            self.goaway = int(e.error_code)


def small_window(host, port):
    """A 1,000-byte stream window, given back 1,000 bytes at a time: the whole body arrives
    in frames no larger than the window allows."""
    sock, conn = connect(host, port, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    r = Responses()
    largest = [0]

    def on(e):
        r(e)
        if isinstance(e, h2.events.DataReceived):
            largest[0] = max(largest[0], len(e.data))
            conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)

    payload = bytes(i % 251 for i in range(200_000))
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers("/echo", "POST", [("content-length", str(len(payload)))]))
    sent = 0
    while sent < len(payload):
        room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(payload) - sent)
        if room > 0:
            conn.send_data(sid, payload[sent:sent + room], end_stream=sent + room == len(payload))
            sent += room
            sock.sendall(conn.data_to_send())
        else:
            pump(sock, conn, lambda: conn.local_flow_control_window(sid) > 0, on_event=on)
    sock.sendall(conn.data_to_send())
    pump(sock, conn, lambda: sid in r.ended or sid in r.reset, timeout=20, on_event=on)
    return {"status": r.status.get(sid), "same": r.body.get(sid) == payload, "largest": largest[0]}


def stream_limit(host, port):
    """More concurrent streams than announced: those over the limit are refused."""
    sock, conn = connect(host, port)
    r = Responses()
    pump(sock, conn, lambda: conn.remote_settings.max_concurrent_streams < 2**31, timeout=5, on_event=r)
    limit = conn.remote_settings.max_concurrent_streams
    # The client library enforces the limit itself; it is lifted to send past it.
    conn.remote_settings = h2.settings.Settings(client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    ids = []
    for _ in range(limit + 10):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, headers("/slow?ms=700"), end_stream=True)
        ids.append(sid)
    sock.sendall(conn.data_to_send())
    pump(sock, conn, lambda: all(i in r.ended or i in r.reset for i in ids), timeout=20, on_event=r)
    return {
        "limit": limit,
        "ok": sum(1 for i in ids if r.status.get(i) == "200" and i in r.ended),
        "refused": sum(1 for i in ids if r.reset.get(i) == 7),
    }


def cancel(host, port):
    """A stream reset by the client while its request is in flight; the connection serves on."""
    sock, conn = connect(host, port)
    r = Responses()
    slow = conn.get_next_available_stream_id()
    conn.send_headers(slow, headers("/slow?ms=3000"), end_stream=True)
    sock.sendall(conn.data_to_send())
    time.sleep(0.2)
    conn.reset_stream(slow)
    nxt = conn.get_next_available_stream_id()
    conn.send_headers(nxt, headers("/after"), end_stream=True)
    sock.sendall(conn.data_to_send())
    started = time.time()
    pump(sock, conn, lambda: nxt in r.ended, on_event=r)
    return {"status": r.status.get(nxt), "slow_answered": slow in r.status, "took": time.time() - started}


def malformed(host, port):
    """Malformed requests are reset with PROTOCOL_ERROR; a good one after them is served."""
    sock, conn = connect(host, port)
    r = Responses()
    cases = [
        headers("/x", extra=[("connection", "close")]),
        headers("/x", extra=[("te", "gzip")]),
        [(":method", "GET"), (":scheme", "http"), (":path", "/x"), (":path", "/y")],
        [(":method", "GET"), (":authority", "h2.test")],
        headers("/x", extra=[("content-length", "5")]),
    ]
    ids = []
    for h in cases:
        sid = conn.get_next_available_stream_id()
        # Sent without the client library's own checks.
        conn.config.validate_outbound_headers = False
        conn.config.normalize_outbound_headers = False
        conn.send_headers(sid, h, end_stream=True)
        ids.append(sid)
    conn.config.validate_outbound_headers = True
    good = conn.get_next_available_stream_id()
    conn.send_headers(good, headers("/good", extra=[("cookie", "a=1"), ("cookie", "b=2")]), end_stream=True)
    sock.sendall(conn.data_to_send())
    pump(sock, conn, lambda: good in r.ended, on_event=r)
    return {
        "resets": [r.reset.get(i) for i in ids],
        "good": r.status.get(good),
        "cookie": b"cookie=a=1; b=2\n" in r.body.get(good, b""),
    }


def continuation(host, port):
    """A header block spread over HEADERS and CONTINUATION frames reaches the backend whole;
    a header list over the limit is answered 431."""
    sock, conn = connect(host, port)
    r = Responses()
    big = "v" * 30_000
    a = conn.get_next_available_stream_id()
    conn.send_headers(a, headers("/big", extra=[("x-big", big)]), end_stream=True)
    b = conn.get_next_available_stream_id()
    conn.send_headers(b, headers("/huge", extra=[(f"x-{i}", big) for i in range(4)]), end_stream=True)
    c = conn.get_next_available_stream_id()
    conn.send_headers(c, headers("/after"), end_stream=True)
    sock.sendall(conn.data_to_send())
    pump(sock, conn, lambda: {a, b, c} <= r.ended | set(r.reset), on_event=r)
    return {
        "big": r.status.get(a),
        "big_seen": ("x-big=" + big).encode() in r.body.get(a, b""),
        "huge": r.status.get(b),
        "after": r.status.get(c),
    }


def ping(host, port):
    sock, conn = connect(host, port)
    acks = []
    conn.ping(b"edgeping")
    sock.sendall(conn.data_to_send())
    pump(sock, conn, lambda: acks, on_event=lambda e: isinstance(e, h2.events.PingAckReceived) and acks.append(e.ping_data))
    return {"ack": acks[0].decode() if acks else None}


def bad_preface(host, port):
    """Not the preface: a GOAWAY with PROTOCOL_ERROR, then the connection closes."""
    sock = socket.create_connection((host, port), timeout=5)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + b"\x00" * 9)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    # Frames: find the GOAWAY (type 7) and its error code.
    code, at = None, 0
    while at + 9 <= len(data):
        length = int.from_bytes(data[at:at + 3], "big")
        if data[at + 3] == 7:
            code = int.from_bytes(data[at + 13:at + 17], "big")
        at += 9 + length
    return {"goaway": code, "closed": True}


def reset_flood(host, port):
    """Streams opened and reset at once, thousands of them: the connection is ended with
    ENHANCE_YOUR_CALM."""
    sock, conn = connect(host, port)
    r = Responses()
    try:
        for _ in range(2000):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, headers("/slow?ms=1000"), end_stream=True)
            conn.reset_stream(sid)
        sock.sendall(conn.data_to_send())
    except (BrokenPipeError, ConnectionResetError):
        pass
    pump(sock, conn, lambda: r.goaway is not None, on_event=r)
    return {"goaway": r.goaway}


def turns(host, port):
    """Two large responses on one connection, read slowly: they take turns, so when the
    first has all its bytes the second has most of its own (not none of them)."""
    sock, conn = connect(host, port)
    r = Responses()
    size = 4 * 1024 * 1024
    done_at = {}

    def on(e):
        r(e)
        if isinstance(e, h2.events.DataReceived):
            conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        if isinstance(e, h2.events.StreamEnded):
            done_at[e.stream_id] = {k: len(v) for k, v in r.body.items()}

    a = conn.get_next_available_stream_id()
    conn.send_headers(a, headers(f"/bytes?n={size}"), end_stream=True)
    b = conn.get_next_available_stream_id()
    conn.send_headers(b, headers(f"/bytes?n={size}"), end_stream=True)
    sock.sendall(conn.data_to_send())
    pump(sock, conn, lambda: {a, b} <= r.ended | set(r.reset), timeout=60, on_event=on)
    first = min(done_at, key=lambda s: sum(done_at[s].values())) if done_at else None
    other = b if first == a else a
    return {
        "status": [r.status.get(a), r.status.get(b)],
        "whole": [len(r.body.get(a, b"")) == size, len(r.body.get(b, b"")) == size],
        "other_share": done_at[first].get(other, 0) / size if first else None,
    }


def ws_frame(opcode, payload):
    """A masked client frame (RFC 6455 section 5.2)."""
    mask = b"\x11\x22\x33\x44"
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_parse(data):
    """The complete unmasked server frames at the start of `data`, and what is left."""
    frames = []
    while len(data) >= 2:
        n, at = data[1] & 0x7F, 2
        if n == 126:
            n, at = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, at = int.from_bytes(data[2:10], "big"), 10
        if len(data) < at + n:
            break
        frames.append((data[0] & 0x0F, data[at:at + n]))
        data = data[at + n:]
    return frames, data


def websocket(host, port):
    """WebSocket over HTTP/2: an extended CONNECT answered 200, messages echoed through the
    stream by a real WebSocket server behind the proxy, a closing handshake; then a request
    the server refuses (no Sec-WebSocket-Version) gets its answer as is."""
    sock, conn = connect(host, port)
    r = Responses()
    pump(sock, conn, lambda: conn.remote_settings.enable_connect_protocol, timeout=5, on_event=r)
    enabled = bool(conn.remote_settings.enable_connect_protocol)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                            (":path", "/chat"), (":authority", "h2.test"), ("sec-websocket-version", "13")])
    sock.sendall(conn.data_to_send())
    pump(sock, conn, lambda: sid in r.status or sid in r.reset, on_event=r)
    status = r.status.get(sid)
    echoed = []
    left = [b""]

    def on(e):
        r(e)
        if isinstance(e, h2.events.DataReceived):
            conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            frames, left[0] = ws_parse(left[0] + r.body.pop(sid, b""))
            echoed.extend(frames)

    def send(data):
        while data:
            n = min(conn.max_outbound_frame_size, conn.local_flow_control_window(sid), len(data))
            conn.send_data(sid, data[:n])
            data = data[n:]
            sock.sendall(conn.data_to_send())

    messages = [(1, b"hello"), (2, bytes(i % 256 for i in range(70_000))), (1, "\u00fcn\u00efcode".encode())]
    for i, (opcode, payload) in enumerate(messages):
        send(ws_frame(opcode, payload))
        pump(sock, conn, lambda: len(echoed) > i, on_event=on)
    send(ws_frame(8, (1000).to_bytes(2, "big")))
    pump(sock, conn, lambda: any(op == 8 for op, _ in echoed) and (sid in r.ended or sid in r.reset), on_event=on)
    close = [int.from_bytes(p[:2], "big") for op, p in echoed if op == 8]
    refused = conn.get_next_available_stream_id()
    conn.send_headers(refused, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                                (":path", "/chat"), (":authority", "h2.test")])
    sock.sendall(conn.data_to_send())
    pump(sock, conn, lambda: refused in r.ended or refused in r.reset, on_event=r)
    return {
        "enabled": enabled,
        "status": status,
        "echoed": [(op, p) for op, p in echoed if op != 8] == messages,
        "close": close[0] if close else None,
        "ended": sid in r.ended,
        "refused": r.status.get(refused),
    }


def ws_server(host, _port):
    from websockets.sync.server import serve

    def echo(ws):
        for message in ws:
            ws.send(message)

    with serve(echo, host, 0) as server:
        print(f"port={server.socket.getsockname()[1]}", flush=True)
        server.serve_forever()
    return {}


def main():
    case, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for k, v in globals()[case](host, port).items():
        print(f"{k}={json.dumps(v)}")


if __name__ == "__main__":
    main()
