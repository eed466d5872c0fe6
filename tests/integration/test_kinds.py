"""Integration tests of the websocket, grpc and exec probe kinds (issue 4), against peers
nobody here wrote: a python3-websockets server, a raw-socket WebSocket server that
completes the handshake and then misbehaves, and a python3-grpcio server with a
grpc.health.v1 Health service (tests/integration/kinds_peers.py); exec against
/bin/true, /bin/false, /bin/sh and /bin/sleep. Each kind is also cancelled mid-attempt
by SIGTERM: the daemon exits 0, logs exactly one `cancelled` outcome for it, and leaves
no process behind. Run under the ASan build (BUILD=build-san), the harness turns any
leak or memory error into a failure. See harness.py for the API."""

import json
import os
import random
import select
import signal
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import eq, free_port, probe, start_daemon, tmpdir, wait_probe, wait_until  # noqa: E402

PY = "/usr/bin/python3"  # has python3-websockets and python3-grpcio
PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kinds_peers.py")
FAST = {"period": "100ms", "timeout": "1s", "startup_period": "50ms",
        "success_threshold": 1, "failure_threshold": 1}


# ---------------------------------------------------------------- peers

class Peer:
    """One kinds_peers.py process; .port once it listens, .lines what it printed."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([PY, PEERS] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        _peers.append(self)
        self.lines = []
        r, _, _ = select.select([self.proc.stdout], [], [], 20 * harness.SCALE)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("PORT "):
            raise AssertionError("peer %s did not print its port (got %r)" % (" ".join(map(str, args)), line))
        self.port = int(line.split()[1])
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.decode().strip())

    def wait_line(self, text, timeout=10):
        wait_until(lambda: text in self.lines, timeout=timeout, msg="peer to print %r" % text)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


_peers = []


def peer(*args):
    return Peer(*args)


def with_peers(fn):
    """Stops the peers a test started, whatever happened (the harness knows only its own)."""
    def run():
        try:
            fn()
        finally:
            while _peers:
                _peers.pop().stop()
    run.__name__ = fn.__name__
    return run


def cert_pair():
    d = tmpdir()
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


# ---------------------------------------------------------------- daemon helpers

def config(*probes, **top):
    """harness.config with this file's defaults (failure_threshold 1)."""
    return harness.config(*probes, **dict({"defaults": dict(FAST)}, **top))



def ws(name, url, **kw):
    return dict({"name": name, "type": "websocket", "url": url}, **kw)


def grpc(name, address, **kw):
    return dict({"name": name, "type": "grpc", "address": address}, **kw)


def exe(name, command, **kw):
    return dict({"name": name, "type": "exec", "command": command}, **kw)






def wait_healthy(d, name):
    p = wait_probe(d, name, lambda p: p["healthy"] is True, "%s healthy" % name)
    eq(p["last_outcome"], "success", name + " last_outcome")
    return p


def wait_error(d, name, error, outcome="failure"):
    """Waits for an attempt of probe name to end with that outcome and last_error."""
    return wait_probe(d, name, lambda p: p["last_outcome"] == outcome and p["last_error"] == error
                      and p["healthy"] is False, "%s to be unhealthy with %s %r" % (name, outcome, error))


def run_one(probe_cfg, check, **top):
    """Starts a daemon with one probe and runs check(daemon, name)."""
    d = start_daemon(config(probe_cfg, **top))
    check(d, probe_cfg["name"])
    return d


# ---------------------------------------------------------------- processes

def pids_with_arg(marker):
    """Live processes whose argv contains marker (zombies have an empty cmdline)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if marker.encode() in argv:
            out.append(int(pid))
    return out


def zombie_children(ppid):
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and int(fields[1]) == ppid:
            out.append(int(pid))
    return out


def sleeper():
    """A shell with a background and a foreground sleep, all in one process group; the
    two marker durations find them in /proc."""
    m1, m2 = ["%d" % random.randint(10 ** 7, 10 ** 8) for _ in range(2)]
    return ["/bin/sh", "-c", "/bin/sleep %s & /bin/sleep %s; wait" % (m1, m2)], (m1, m2)


def no_survivors(markers):
    wait_until(lambda: not any(pids_with_arg(m) for m in markers), timeout=10,
               msg="no process with %s left" % (markers,))


def cancelled_once(d, name):
    """Exactly one attempt of name was cancelled, and it is the last attempt logged."""
    ends = [l for l in d.logs() if l.get("event") == "attempt" and l.get("probe") == name]
    cancelled = [l for l in ends if l.get("outcome") == "cancelled"]
    eq(len(cancelled), 1, "cancelled outcomes of %s (%s)" % (name, ends))
    eq(ends[-1].get("outcome"), "cancelled", "last outcome of " + name)


def sigterm_mid_attempt(d, name):
    d.signal(signal.SIGTERM)
    eq(d.wait_exit(), 0, "exit code after SIGTERM")
    cancelled_once(d, name)


# ---------------------------------------------------------------- websocket

@with_peers
def test_ws_healthy():
    p = peer("ws", "healthy")
    d = run_one(ws("chat", "ws://127.0.0.1:%d/ws?room=1" % p.port), wait_healthy)
    eq(probe(d, "chat")["last_error"], None, "last_error")


@with_peers
def test_ws_rejected_503():
    p = peer("ws", "reject")
    run_one(ws("chat", "ws://127.0.0.1:%d/" % p.port),
            lambda d, n: wait_error(d, n, "handshake: status 503"))


@with_peers
def test_ws_no_pong():
    p = peer("rawws", "nopong")
    d = start_daemon(config(ws("ping", "ws://127.0.0.1:%d/" % p.port, timeout="1s"),
                            ws("noping", "ws://127.0.0.1:%d/" % p.port, ping=False)))
    # the handshake is right (ping false is healthy), only the pong is missing
    wait_healthy(d, "noping")
    v = wait_probe(d, "ping", lambda v: v["last_outcome"] == "timeout", "ping to time out")
    eq(v["healthy"], False, "healthy")
    # the lifecycle words timeouts; with attempt->waiting_for it names the pong
    if v["last_error"] not in ("timeout: no pong within 1s", "timeout: no answer within 1s"):
        raise AssertionError("unexpected last_error %r" % v["last_error"])
    p.wait_line("FRAME")  # the ping did reach the peer


@with_peers
def test_ws_pong_after_other_frames():
    # 70,010 bytes of frames before the pong: past the default max_skip (65536)
    p = peer("rawws", "chatty")
    run_one(ws("w", "ws://127.0.0.1:%d/" % p.port, max_skip=131072), wait_healthy)


@with_peers
def test_ws_pong_after_more_than_max_skip():
    p = peer("rawws", "chatty")
    run_one(ws("w", "ws://127.0.0.1:%d/" % p.port),
            lambda d, n: wait_error(d, n, "70010 bytes of data before the pong (max_skip 65536)"))


@with_peers
def test_ws_closed_before_pong():
    p = peer("rawws", "eof")
    run_one(ws("w", "ws://127.0.0.1:%d/" % p.port),
            lambda d, n: wait_error(d, n, "connection closed before pong"))


@with_peers
def test_ws_closed_by_server():
    p = peer("rawws", "close")
    run_one(ws("w", "ws://127.0.0.1:%d/" % p.port),
            lambda d, n: wait_error(d, n, "closed by server (code 1001)"))


@with_peers
def test_ws_bad_accept():
    p = peer("rawws", "badaccept")
    run_one(ws("w", "ws://127.0.0.1:%d/" % p.port),
            lambda d, n: wait_error(d, n, "bad Sec-WebSocket-Accept"))


@with_peers
def test_ws_subprotocol():
    chat = peer("ws", "chat")
    plain = peer("ws", "healthy")
    d = start_daemon(config(ws("chat", "ws://127.0.0.1:%d/" % chat.port, subprotocol="chat"),
                            ws("nochat", "ws://127.0.0.1:%d/" % plain.port, subprotocol="chat"),
                            ws("other", "ws://127.0.0.1:%d/" % chat.port, subprotocol="mqtt")))
    wait_healthy(d, "chat")
    wait_error(d, "nochat", 'handshake: no subprotocol (asked "chat")')
    wait_error(d, "other", 'handshake: no subprotocol (asked "mqtt")')


@with_peers
def test_ws_refused():
    port = free_port()
    run_one(ws("w", "ws://127.0.0.1:%d/" % port),
            lambda d, n: wait_error(d, n, "connect: connection refused"))


@with_peers
def test_wss_healthy():
    cert, key = cert_pair()
    p = peer("ws", "healthy", cert, key)
    d = start_daemon(config(ws("secure", "wss://127.0.0.1:%d/" % p.port),
                            ws("plain", "ws://127.0.0.1:%d/" % p.port)))
    wait_healthy(d, "secure")
    wait_probe(d, "plain", lambda v: v["last_outcome"] == "failure", "plain ws to a TLS port to fail")


@with_peers
def test_ws_flag_and_headers():
    p = peer("ws", "healthy")
    d = start_daemon(args=["--ws", "flagged=ws://127.0.0.1:%d/" % p.port])
    wait_healthy(d, "flagged")
    eq(probe(d, "flagged")["target"], "ws://127.0.0.1:%d/" % p.port, "target")
    d2 = start_daemon(config(ws("h", "ws://127.0.0.1:%d/" % p.port,
                                headers={"Origin": "http://127.0.0.1", "X-Probe": "1"})))
    wait_healthy(d2, "h")


def test_ws_config_errors():
    cases = [
        ({"url": "http://127.0.0.1/"}, 'probes[0].url: "http://127.0.0.1/" must be ws:// or wss://'),
        ({"url": "ws://h/#x"}, "probes[0].url:"),
        ({"url": "ws://h/", "headers": {"Upgrade": "x"}}, "probes[0].headers.Upgrade:"),
        ({"url": "ws://h/", "headers": {"X": "a\r\nb"}}, "probes[0].headers.X:"),
        ({"url": "ws://h/", "subprotocol": "a,b"}, "probes[0].subprotocol:"),
        ({"url": "ws://h/", "ping": "yes"}, "probes[0].ping:"),
        ({}, "probes[0].url: is required"),
    ]
    for extra, want in cases:
        d = tmpdir()
        path = os.path.join(d, "c.json")
        with open(path, "w") as f:
            json.dump({"probes": [dict({"name": "w", "type": "websocket"}, **extra)]}, f)
        r = harness.run_probed(["--check-config", "-c", path])
        eq(r.rc, 2, "exit code for %s" % extra)
        if want not in r.stderr:
            raise AssertionError("%s: %r does not contain %r" % (extra, r.stderr, want))
    r = harness.run_probed(["--check-config", "--ws", "w=ws://127.0.0.1:1/"])
    eq(r.rc, 0, "--check-config --ws")
    eq(json.loads(r.stdout)["probes"][0]["ping"], True, "ping default shown")


@with_peers
def test_ws_cancel_during_handshake():
    p = peer("rawws", "hang")
    d = start_daemon(config(ws("w", "ws://127.0.0.1:%d/" % p.port, timeout="60s")), args=["--log-level", "debug"])
    p.wait_line("HEAD")  # the request is in; the answer never comes
    sigterm_mid_attempt(d, "w")


@with_peers
def test_ws_cancel_pending_pong():
    p = peer("rawws", "nopong")
    d = start_daemon(config(ws("w", "ws://127.0.0.1:%d/" % p.port, timeout="60s")), args=["--log-level", "debug"])
    p.wait_line("FRAME")  # the ping was sent; the pong never comes
    sigterm_mid_attempt(d, "w")


# ---------------------------------------------------------------- grpc

@with_peers
def test_grpc_serving():
    p = peer("grpc", "health")
    d = start_daemon(config(grpc("all", "127.0.0.1:%d" % p.port),
                            grpc("ok", "127.0.0.1:%d" % p.port, service="ok")))
    wait_healthy(d, "all")
    wait_healthy(d, "ok")
    p.wait_line("CHECK")  # service "" (the line is stripped)
    p.wait_line("CHECK ok")


@with_peers
def test_grpc_not_serving():
    p = peer("grpc", "health")
    run_one(grpc("g", "127.0.0.1:%d" % p.port, service="down"),
            lambda d, n: wait_error(d, n, "status NOT_SERVING"))


@with_peers
def test_grpc_unknown_service():
    p = peer("grpc", "health")
    run_one(grpc("g", "127.0.0.1:%d" % p.port, service="nope"),
            lambda d, n: wait_error(d, n, "grpc-status 5 (NOT_FOUND): unknown service"))


@with_peers
def test_grpc_unimplemented():
    p = peer("grpc", "none")
    d = run_one(grpc("g", "127.0.0.1:%d" % p.port),
                lambda d, n: wait_probe(d, n, lambda v: v["last_outcome"] == "failure", "g to fail"))
    err = probe(d, "g")["last_error"]
    assert err.startswith("grpc-status 12 (UNIMPLEMENTED)"), err


@with_peers
def test_grpc_malformed_reply():
    p = peer("grpc", "badreply")
    run_one(grpc("g", "127.0.0.1:%d" % p.port),
            lambda d, n: wait_error(d, n, "malformed reply: status field is not a varint"))


@with_peers
def test_grpc_down():
    run_one(grpc("g", "127.0.0.1:%d" % free_port()),
            lambda d, n: wait_error(d, n, "connect: connection refused"))


@with_peers
def test_grpc_tls():
    cert, key = cert_pair()
    p = peer("grpc", "health", cert, key)
    d = start_daemon(config(grpc("secure", "127.0.0.1:%d" % p.port, tls=True),
                            grpc("down", "127.0.0.1:%d" % p.port, tls=True, service="down")))
    wait_healthy(d, "secure")
    wait_error(d, "down", "status NOT_SERVING")


@with_peers
def test_grpc_flag():
    p = peer("grpc", "health")
    d = start_daemon(args=["--grpc", "a=127.0.0.1:%d" % p.port, "--grpc", "b=127.0.0.1:%d/down" % p.port])
    wait_healthy(d, "a")
    wait_error(d, "b", "status NOT_SERVING")


@with_peers
def test_grpc_cancel_mid_call():
    p = peer("grpc", "health")
    d = start_daemon(config(grpc("g", "127.0.0.1:%d" % p.port, service="slow", timeout="60s")),
                     args=["--log-level", "debug"])
    p.wait_line("CHECK slow")  # the call is in the server's hands
    sigterm_mid_attempt(d, "g")


# ---------------------------------------------------------------- exec

def test_exec_true_false():
    d = start_daemon(config(exe("t", ["/bin/true"]), exe("f", ["/bin/false"])))
    wait_healthy(d, "t")
    wait_error(d, "f", "exit status 1")
    eq(probe(d, "t")["output"], "", "output of /bin/true")


def test_exec_output_and_status():
    d = start_daemon(config(exe("e", ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]),
                            exe("k", ["/bin/sh", "-c", "kill -9 $$"])))
    v = wait_error(d, "e", "exit status 3")
    eq(v["output"], "out\nerr\n", "output")
    wait_error(d, "k", "killed by signal 9")


def test_exec_output_capped():
    d = start_daemon(config(exe("big", ["/bin/sh", "-c", "i=0; while [ $i -lt 200 ]; do "
                                        "echo 0123456789012345678901234567890123456789; i=$((i+1)); done"])))
    v = wait_healthy(d, "big")
    eq(len(v["output"]), 1024, "output length (EXEC_OUTPUT_MAX)")
    eq(v["output"][:41], "0123456789012345678901234567890123456789\n", "output start")


def test_exec_missing_command():
    d = start_daemon(config(exe("m", ["/nonexistent/probe-cmd"]), exe("p", ["no-such-cmd-on-path"])))
    # glibc's posix_spawn reports the failed exec; under valgrind (which runs the vfork
    # child as a fork) only the child's exit status 127 tells it
    want = "exit status 127" if harness.WRAPPER else "exec: No such file or directory"
    wait_error(d, "m", want)
    wait_error(d, "p", want)


def test_exec_flag():
    d = start_daemon(args=["--exec", "t=/bin/sh -c true", "--exec", "f=/bin/false"])
    wait_healthy(d, "t")
    wait_error(d, "f", "exit status 1")


def test_exec_timeout_kills_group():
    argv, markers = sleeper()
    # 2s: room to see both sleeps running before the kill, even on a loaded machine
    d = start_daemon(config(exe("s", argv, timeout="2s", period="1h", scopes=["liveness"])))
    wait_until(lambda: len([p for m in markers for p in pids_with_arg(m)]) == 2, timeout=10,
               msg="both sleeps running")
    wait_probe(d, "s", lambda v: v["last_outcome"] == "timeout", "s to time out")
    no_survivors(markers)
    wait_until(lambda: not zombie_children(d.pid), timeout=10, msg="no zombie child of probed")


def test_exec_cancel_running_child():
    argv, markers = sleeper()
    d = start_daemon(config(exe("s", argv, timeout="60s")), args=["--log-level", "debug"])
    wait_until(lambda: len([p for m in markers for p in pids_with_arg(m)]) == 2, timeout=10,
               msg="both sleeps running")
    sigterm_mid_attempt(d, "s")
    no_survivors(markers)


def test_exec_config_errors():
    for command, want in (([], "probes[0].command: must be a non-empty array"),
                          ("ls", "probes[0].command: must be a non-empty array"),
                          (["/bin/true", 1], "probes[0].command[1]: is not a string"),
                          ([""], "probes[0].command[0]: must not be empty")):
        d = tmpdir()
        path = os.path.join(d, "c.json")
        with open(path, "w") as f:
            json.dump({"probes": [{"name": "e", "type": "exec", "command": command}]}, f)
        r = harness.run_probed(["--check-config", "-c", path])
        eq(r.rc, 2, "exit code for %r" % (command,))
        if want not in r.stderr:
            raise AssertionError("%r: %r does not contain %r" % (command, r.stderr, want))


if __name__ == "__main__":
    harness.main()
