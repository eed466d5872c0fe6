#!/usr/bin/python3
"""hostile_grpc: a tiny cleartext HTTP/2 (h2c, prior knowledge) server that answers every
gRPC call badly, for tests/integration/test_hostile.py. grpcio frames messages itself,
so this speaks HTTP/2 directly with python3-h2 (Debian package python3-h2).

    /usr/bin/python3 hostile_grpc.py [--port N] MODE      prints "PORT <n>" once bound

Modes, after the request's END_STREAM:
    huge-prefix         200, content-type application/grpc, a DATA frame whose gRPC
                        length prefix claims 0xFFFFFFFF bytes, then 'x' for as long as
                        flow control lets it, never ending the stream
    huge-prefix-trailers  the same prefix and 64 bytes, then trailers grpc-status: 0
    no-trailers         a valid SERVING message and never the trailers
    silent              nothing at all (the connection preface only)

One thread per connection; each exits when its peer closes."""

import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events
import h2.exceptions

CHUNK = 16384
FLOOD = b"x" * CHUNK


def serve(sock, mode):
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False,
                                                                       header_encoding="utf-8"))
    conn.initiate_connection()
    flooding = set()

    def flush():
        data = conn.data_to_send()
        if data:
            sock.sendall(data)

    def pump():
        for sid in list(flooding):
            while True:
                try:
                    window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                except Exception:  # stream closed or reset by the peer
                    flooding.discard(sid)
                    break
                if window <= 0:
                    break
                conn.send_data(sid, FLOOD[:window])
                flush()

    try:
        flush()
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.StreamEnded):
                    sid = ev.stream_id
                    if mode == "silent":
                        continue
                    conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                    if mode == "huge-prefix":
                        conn.send_data(sid, b"\x00\xff\xff\xff\xff")
                        flooding.add(sid)
                    elif mode == "huge-prefix-trailers":
                        conn.send_data(sid, b"\x00\xff\xff\xff\xff" + b"x" * 64)
                        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
                    elif mode == "no-trailers":
                        conn.send_data(sid, b"\x00\x00\x00\x00\x02\x08\x01")
                elif isinstance(ev, (h2.events.StreamReset,)):
                    flooding.discard(ev.stream_id)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    flush()
                    return
            flush()
            pump()
    except (OSError, h2.exceptions.ProtocolError):
        return
    finally:
        sock.close()


def main():
    args = sys.argv[1:]
    port = 0
    if len(args) >= 2 and args[0] == "--port":
        port = int(args[1])
        args = args[2:]
    modes = ("huge-prefix", "huge-prefix-trailers", "no-trailers", "silent")
    if len(args) != 1 or args[0] not in modes:
        sys.stderr.write("usage: hostile_grpc.py [--port N] %s\n" % "|".join(modes))
        sys.exit(2)
    mode = args[0]
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    print("PORT %d" % ls.getsockname()[1], flush=True)
    while True:
        s, _ = ls.accept()
        threading.Thread(target=serve, args=(s, mode), daemon=True).start()


if __name__ == "__main__":
    main()
