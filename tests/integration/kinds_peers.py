"""Peers for tests/integration/test_kinds.py, one process each, started with
/usr/bin/python3 (the interpreter that has Debian's python3-websockets and
python3-grpcio). Each prints "PORT <n>" on stdout once it listens on 127.0.0.1, then
serves until killed. The raw and gRPC peers also print what they saw ("HEAD" once a
handshake request was read, "FRAME" for bytes after it, "CHECK <service>" when Check
runs), so that a test can act at a known point of an attempt without sleeping.

    kinds_peers.py ws MODE [CERT KEY]   python3-websockets server (websockets 10.4):
        healthy   accepts every upgrade; the library answers pings
        reject    process_request answers 503 to the upgrade
        chat      offers the subprotocol "chat"
        echo      sends back every message it gets, after a text message "welcome"
        silent    reads every message, never sends one (the library answers pings)
        (with CERT and KEY: TLS, for wss://)
    kinds_peers.py rawws MODE           a raw-socket server that completes the handshake
                                        correctly (RFC 6455 accept) and then:
        nopong    reads and drops everything: never answers the ping
        close     answers the ping with a close frame (1001)
        eof       closes the connection right after the handshake
        badaccept answers 101 with a wrong Sec-WebSocket-Accept
        chatty    answers the ping only after a 70000-byte text frame (64-bit length), a
                  fragmented binary message, an unsolicited pong and a ping of its own
        hang      never answers the handshake at all
    kinds_peers.py grpc MODE [CERT KEY [CA]] python3-grpcio server on h2c (with CERT and KEY:
                                        TLS; with CA too: a client certificate from CA required):
        health    grpc.health.v1.Health/Check: "" and "ok" SERVING, "down" NOT_SERVING,
                  "slow" answers after 60 s, anything else NOT_FOUND "unknown service"
        none      no Health service at all (UNIMPLEMENTED)
        badreply  Check answers bytes that are not a HealthCheckResponse

Debian 12 has no grpcio-health-checking package (no grpc_health module), so the Health
service is registered with grpc's generic handlers, and its two messages are raw bytes
(the grpc.health.v1 protocol): the HTTP/2 framing, headers and trailers all come from grpcio.
"""

import base64
import hashlib
import socket
import sys
import threading
import time


def serve_ws(mode, cert=None, key=None):
    import asyncio
    import http
    import ssl

    import websockets

    async def handler(ws, path=None):
        try:
            if mode == "echo":
                await ws.send("welcome")
            async for msg in ws:
                if mode == "echo":
                    await ws.send(msg)
        except Exception:
            pass

    async def reject(path, headers):
        return http.HTTPStatus.SERVICE_UNAVAILABLE, [], b"down\n"

    async def main():
        kw = {}
        if mode == "reject":
            kw["process_request"] = reject
        elif mode == "chat":
            kw["subprotocols"] = ["chat"]
        elif mode not in ("healthy", "echo", "silent"):
            raise SystemExit("unknown ws mode " + mode)
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            kw["ssl"] = ctx
        async with websockets.serve(handler, "127.0.0.1", 0, **kw) as server:
            print("PORT", server.sockets[0].getsockname()[1], flush=True)
            await asyncio.Future()

    asyncio.run(main())


GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def raw_client(conn, mode):
    conn.settimeout(120)
    head = b""
    try:
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        print("HEAD", flush=True)
        if mode == "hang":
            while conn.recv(4096):
                pass
            return
        key = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        if mode == "badaccept":
            accept = base64.b64encode(hashlib.sha1(b"x" + GUID).digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        if mode == "eof":
            return
        if mode == "chatty":
            payload = read_client_frame(conn)
            print("FRAME", flush=True)
            conn.sendall(b"\x81\x7f" + (70000).to_bytes(8, "big") + b"x" * 70000)
            conn.sendall(b"\x02\x03abc" + b"\x80\x02de")  # binary in two fragments
            conn.sendall(b"\x8a\x04nope")  # a pong that is not ours
            conn.sendall(b"\x89\x02hi")  # a ping from the server
            conn.sendall(b"\x8a" + bytes([len(payload)]) + payload)
            while conn.recv(4096):
                pass
            return
        if mode == "close":
            conn.recv(4096)  # the ping
            print("FRAME", flush=True)
            conn.sendall(b"\x88\x02\x03\xe9")  # close 1001, unmasked as a server sends it
            time.sleep(5)
            return
        while conn.recv(4096):  # nopong: read, never answer
            print("FRAME", flush=True)
    except OSError:
        pass
    finally:
        conn.close()


def read_client_frame(conn):
    """One small masked client frame (the ping): its unmasked payload."""
    def take(n):
        b = b""
        while len(b) < n:
            chunk = conn.recv(n - len(b))
            if not chunk:
                raise OSError("closed")
            b += chunk
        return b
    hdr = take(2)
    n = hdr[1] & 0x7F
    mask = take(4)
    data = take(n)
    return bytes(c ^ mask[i % 4] for i, c in enumerate(data))


def serve_rawws(mode):
    if mode not in ("nopong", "close", "eof", "badaccept", "hang", "chatty"):
        raise SystemExit("unknown rawws mode " + mode)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    print("PORT", ls.getsockname()[1], flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=raw_client, args=(conn, mode), daemon=True).start()


def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def service_of(request):
    """HealthCheckRequest.service from its raw bytes (field 1, wire type 2)."""
    i, service = 0, ""
    while i < len(request):
        tag, i = varint(request, i)
        if tag == 0x0A:
            n, i = varint(request, i)
            service = request[i:i + n].decode()
            i += n
        else:
            raise ValueError("unexpected field")
    return service


def serve_grpc(mode, cert=None, key=None, client_ca=None):
    from concurrent import futures

    import grpc

    statuses = {"": 1, "ok": 1, "down": 2}

    def check(request, context):
        service = service_of(request)
        print("CHECK", service, flush=True)
        if mode == "badreply":
            return b"\x0a\x03abc"  # field 1 as a string: not a HealthCheckResponse
        if service == "slow":
            time.sleep(60)
        if service not in statuses:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return bytes([0x08, statuses[service]])

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    if mode in ("health", "badreply"):
        method = grpc.unary_unary_rpc_method_handler(check)  # no (de)serializers: raw bytes
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": method}),))
    elif mode != "none":
        raise SystemExit("unknown grpc mode " + mode)
    if cert:
        with open(cert, "rb") as c, open(key, "rb") as k:
            ca = open(client_ca, "rb").read() if client_ca else None
            creds = grpc.ssl_server_credentials([(k.read(), c.read())], root_certificates=ca,
                                                require_client_auth=bool(ca))
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("PORT", port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    kind, mode = sys.argv[1], sys.argv[2]
    if kind == "ws":
        serve_ws(mode, *sys.argv[3:5])
    elif kind == "rawws":
        serve_rawws(mode)
    elif kind == "grpc":
        serve_grpc(mode, *sys.argv[3:6])
    else:
        raise SystemExit("unknown peer kind " + kind)
