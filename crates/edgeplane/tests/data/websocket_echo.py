"""A real WebSocket peer for the proxy tests (the `websockets` package).

usage: websocket_echo.py server PORT      echo every message back, until killed
       websocket_echo.py client URL       send text and binary messages through the proxy,
                                          check each echo, print OK
"""

import sys

from websockets.sync.client import connect
from websockets.sync.server import serve


def echo(ws):
    for message in ws:
        ws.send(message)


def main():
    if sys.argv[1] == "server":
        with serve(echo, "127.0.0.1", int(sys.argv[2])) as server:
            print("listening", flush=True)
            server.serve_forever()
    else:
        url = sys.argv[2]
        with connect(url, open_timeout=5) as ws:
            for message in ["hello", "x" * 70000, b"\x00\x01binary\xff"]:
                ws.send(message)
                back = ws.recv(timeout=5)
                if back != message:
                    sys.exit(f"echo differs for a {type(message).__name__} of {len(message)}")
            # A ping/pong round trip through the spliced connection.
            ws.ping().wait(timeout=5)
        print("OK")


if __name__ == "__main__":
    main()
