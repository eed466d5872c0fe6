"""gRPC health on the status port (README "gRPC health"), against the real daemon with two
independent clients:

- python3-grpcio, a generic unary call with the HealthCheckRequest encoded by hand;
- TOOLS/grpc_health, a Go client built on grpc-go's grpc_health_v1 (the client library
  of the kubelet's gRPC prober), built offline from Debian's golang-google-grpc-dev:
      GO111MODULE=off GOPATH=/usr/share/gocode go build -o TOOLS/grpc_health tests/tools/grpc_health.go
  (`make integration` builds it; this file builds it when it is missing).

Cases: every service name follows /livez, /startup and /readyz through an outage and a
recovery; unknown names are NOT_FOUND, Watch UNIMPLEMENTED; HTTP/1.1 and h2c GETs on the
same port; garbage after the preface closes the connection and a client dribbling the
preface holds up no one; drain turns readiness NOT_SERVING; 1,000 concurrent Checks
stay within the bounds; the watchdog turns a stuck loop into NOT_SERVING; `probed check
grpc://`; the /metrics counters."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import (config, curl, eq, http, promtool_check, run_probed, start_daemon, start_target,
                     tcp, wait_until)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GO_CLIENT = os.path.join(harness.TOOLS, "grpc_health")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CHECK = "/grpc.health.v1.Health/Check"


def go_client():
    """TOOLS/grpc_health, built when missing (about 5 s, offline)."""
    if not os.access(GO_CLIENT, os.X_OK):
        env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode")
        env.setdefault("GOCACHE", os.path.join(harness.tmpdir(), "gocache"))
        r = subprocess.run(["go", "build", "-o", GO_CLIENT, os.path.join(ROOT, "tests", "tools", "grpc_health.go")],
                           env=env, capture_output=True, text=True, timeout=300)
        eq(r.returncode, 0, "go build of the Go client (%s)" % r.stderr[-2000:])
    return GO_CLIENT


def request(service):
    """HealthCheckRequest{service}, protobuf by hand (field 1, wire type 2)."""
    b = service.encode()
    assert len(b) < 128
    return (b"\x0a" + bytes([len(b)]) + b) if b else b""


def py_checks(port, services, timeout=2):
    """{service: "SERVING" | "NOT_SERVING" | "NOT_FOUND" | ...} from python3-grpcio."""
    import grpc
    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    try:
        call = ch.unary_unary(CHECK, request_serializer=lambda x: x, response_deserializer=lambda x: x)
        out = {}
        for s in services:
            try:
                r = call(request(s), timeout=timeout * harness.SCALE)
                out[s] = {b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING"}.get(r, "bad reply %r" % r)
            except grpc.RpcError as e:
                out[s] = e.code().name
        return out
    finally:
        ch.close()


def go_checks(port, services, timeout=2):
    """The same from the Go client ("code=NotFound" becomes "NOT_FOUND")."""
    r = subprocess.run([go_client(), "-addr", "127.0.0.1:%d" % port, "-timeout", "%gs" % (timeout * harness.SCALE)]
                       + list(services), capture_output=True, text=True, timeout=30 * harness.SCALE)
    out = {}
    for line, s in zip(r.stdout.splitlines(), services):
        v = line[len(s):].strip()
        out[s] = {"code=NotFound": "NOT_FOUND"}.get(v.split(":")[0], v)
    eq(len(out), len(services), "Go client answers (%r, %r)" % (r.stdout, r.stderr))
    return out


def http_verdicts(d):
    """What /livez, /startup and /readyz say, as the gRPC names should."""
    code = lambda p: curl(d.url(p))[0]
    live, started, ready = code("/livez"), code("/startup"), code("/readyz")
    v = lambda c: {200: "SERVING", 503: "NOT_SERVING"}[c]
    return {"": v(live), "liveness": v(live), "startup": v(started), "readiness": v(ready)}


def agree(d, probe_name, probe_healthy):
    """Both clients give every name the answer HTTP gives (polled: the state may be
    moving when first asked)."""
    names = ["", "liveness", "startup", "readiness", probe_name, "no-such-service"]

    def same():
        want = http_verdicts(d)
        want[probe_name] = "SERVING" if probe_healthy() else "NOT_SERVING"
        want["no-such-service"] = "NOT_FOUND"
        got_py, got_go = py_checks(d.port, names), go_checks(d.port, names)
        return (want, got_py, got_go) if got_py == want and got_go == want and http_verdicts(d) == {
            k: want[k] for k in ("", "liveness", "startup", "readiness")} else None
    return wait_until(same, timeout=10, interval=0.1, msg="gRPC answers equal to HTTP's")[0]


def test_grpc_follows_http_through_outage_and_recovery():
    t = start_target()
    d = start_daemon(config(http("app", t.url("/health"))))
    healthy = lambda: harness.probe(d, "app")["healthy"] is True
    wait_until(healthy, msg="app healthy")
    w = agree(d, "app", healthy)
    eq(w["liveness"], "SERVING", "liveness before the outage")
    eq(w["readiness"], "SERVING", "readiness before the outage")
    eq(curl(t.url("/control/health?status=503"))[0], 200, "target switched to 503")
    wait_until(lambda: harness.probe(d, "app")["healthy"] is False, msg="app unhealthy")
    w = agree(d, "app", healthy)
    eq((w["liveness"], w["startup"], w["readiness"], w["app"]),
       ("NOT_SERVING", "SERVING", "NOT_SERVING", "NOT_SERVING"), "during the outage (startup is latched)")
    eq(curl(t.url("/control/health?status=200"))[0], 200, "target switched back to 200")
    wait_until(healthy, msg="app healthy again")
    w = agree(d, "app", healthy)
    eq((w["liveness"], w["readiness"], w["app"]), ("SERVING",) * 3, "after the recovery")


class PyWatch:
    """A Watch from python3-grpcio in a thread: .got is the list of statuses so far."""

    def __init__(self, port, service, timeout=20):
        import grpc
        import threading
        self.got, self.error = [], None
        self.ch = grpc.insecure_channel("127.0.0.1:%d" % port)
        call = self.ch.unary_stream("/grpc.health.v1.Health/Watch", request_serializer=lambda x: x,
                                    response_deserializer=lambda x: x)
        self.it = call(request(service), timeout=timeout * harness.SCALE)

        def run():
            names = {b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING", b"\x08\x03": "SERVICE_UNKNOWN"}
            try:
                for m in self.it:
                    self.got.append(names.get(m, "bad %r" % m))
            except grpc.RpcError as e:
                self.error = e.code().name
        self.t = threading.Thread(target=run, daemon=True)
        self.t.start()

    def wait_last(self, want, what):
        wait_until(lambda: self.got and self.got[-1] == want, timeout=10, msg="%s: Watch says %s (got %r)"
                   % (what, want, self.got))

    def close(self):
        self.it.cancel()
        self.ch.close()


def test_grpc_watch_follows_changes():
    """Watch (python3-grpcio and the Go client): the first status at once, then one each
    time it changes, through an outage and a recovery and into the drain; an unknown
    name is SERVICE_UNKNOWN with the stream kept open."""
    t = start_target()
    d = start_daemon(config(http("app", t.url("/health")), drain="5s"))
    wait_until(lambda: harness.probe(d, "app")["healthy"] is True, msg="app healthy")
    app, ready, nope = PyWatch(d.port, "app"), PyWatch(d.port, "readiness"), PyWatch(d.port, "no-such")
    go = subprocess.Popen([go_client(), "-addr", "127.0.0.1:%d" % d.port, "-watch", "3",
                           "-timeout", "%gs" % (20 * harness.SCALE), "app"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    go_lines = []
    reader = threading.Thread(target=lambda: go_lines.extend(iter(go.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        app.wait_last("SERVING", "app before the outage")
        ready.wait_last("SERVING", "readiness before the outage")
        nope.wait_last("SERVICE_UNKNOWN", "an unknown name")
        wait_until(lambda: go_lines, msg="the Go client's first Watch message")
        eq(curl(t.url("/control/health?status=503"))[0], 200, "target switched to 503")
        app.wait_last("NOT_SERVING", "app during the outage")
        ready.wait_last("NOT_SERVING", "readiness during the outage")
        eq(curl(t.url("/control/health?status=200"))[0], 200, "target switched back")
        app.wait_last("SERVING", "app after the recovery")
        ready.wait_last("SERVING", "readiness after the recovery")
        go.wait(timeout=20 * harness.SCALE)
        reader.join(timeout=5 * harness.SCALE)
        eq([l.strip() for l in go_lines], ["SERVING", "NOT_SERVING", "SERVING"], "Go client's Watch")
        eq(app.got, ["SERVING", "NOT_SERVING", "SERVING"], "python Watch of app: one message per change")
        eq(nope.got, ["SERVICE_UNKNOWN"], "Watch of an unknown name")
        d.signal(signal.SIGTERM)
        ready.wait_last("NOT_SERVING", "readiness while draining")
    finally:
        for w in (app, ready, nope):
            w.close()
        if go.poll() is None:
            go.kill()
            go.wait()


def test_grpc_other_calls_unimplemented():
    import grpc
    d = start_daemon(args=["--tcp", "app=127.0.0.1:%d" % harness.free_port()])
    ch = grpc.insecure_channel("127.0.0.1:%d" % d.port)
    try:
        other = ch.unary_unary("/some.Service/Method", request_serializer=lambda x: x,
                               response_deserializer=lambda x: x)
        try:
            other(b"", timeout=5 * harness.SCALE)
            raise AssertionError("an unknown method returned without an error")
        except grpc.RpcError as e:
            eq(e.code(), grpc.StatusCode.UNIMPLEMENTED, "unknown method")
        # a request that is not one HealthCheckRequest: INTERNAL, as grpc-go answers
        check = ch.unary_unary(CHECK, request_serializer=lambda x: x, response_deserializer=lambda x: x)
        try:
            check(b"\x08\x01", timeout=5 * harness.SCALE)
            raise AssertionError("a malformed request returned without an error")
        except grpc.RpcError as e:
            eq(e.code(), grpc.StatusCode.INTERNAL, "malformed request")
        try:
            check(request("x" * 100) * 6, timeout=5 * harness.SCALE)
            raise AssertionError("an oversized request returned without an error")
        except grpc.RpcError as e:
            eq(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, "oversized request")
    finally:
        ch.close()


def test_grpc_and_http1_share_the_port():
    """HTTP/1.1 keep-alive clients on the port are unaffected while gRPC clients use it;
    an h2c GET of a verdict path answers as HTTP/1.1 does, other paths 404; /metrics
    counts the calls and passes promtool."""
    import grpc
    t = start_target()
    d = start_daemon(config(tcp("app", "127.0.0.1:%d" % t.port)))
    wait_until(lambda: curl(d.url("/readyz"))[0] == 200, msg="/readyz 200")
    ch = grpc.insecure_channel("127.0.0.1:%d" % d.port)
    call = ch.unary_unary(CHECK, request_serializer=lambda x: x, response_deserializer=lambda x: x)
    try:
        eq(call(request("readiness"), timeout=5 * harness.SCALE), b"\x08\x01", "Check readiness")
        # one HTTP/1.1 connection, three requests, while the gRPC channel stays open
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5 * harness.SCALE)
        try:
            got = b""
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /startup HTTP/1.1\r\nHost: x\r\n\r\n")
            while got.count(b"HTTP/1.1 200 OK") < 3:
                b = s.recv(65536)
                assert b, "HTTP/1.1 connection closed after %r" % got
                got += b
        finally:
            s.close()
        eq(call(request("liveness"), timeout=5 * harness.SCALE), b"\x08\x01", "Check liveness after HTTP/1.1")
    finally:
        ch.close()
    for path in ("/livez", "/readyz", "/startup", "/readyz?verbose"):
        h1 = curl(d.url(path))
        h2 = curl(d.url(path), "--http2-prior-knowledge")
        eq(h2[:2], (h1[0], h1[1] if "verbose" not in path else "ok\n"), "h2c GET %s" % path)
    eq(curl(d.url("/status"), "--http2-prior-knowledge")[0], 404, "h2c GET /status")
    eq(curl(d.url("/livez"), "--http2-prior-knowledge", "-X", "POST")[0], 405, "h2c POST /livez")
    eq(py_checks(d.port, ["app", "nope"]), {"app": "SERVING", "nope": "NOT_FOUND"}, "Check app, nope")
    code, text, _ = curl(d.url("/metrics"))
    eq(code, 200, "/metrics")
    for series in ('{service="probe",result="SERVING"} 1', '{service="other",result="NOT_FOUND"} 1'):
        assert "probed_grpc_health_requests_total%s\n" % series in text, series
    assert 'probed_grpc_health_requests_total{service="readiness",result="SERVING"} 1\n' in text, \
        [l for l in text.splitlines() if "grpc" in l]
    assert 'probed_grpc_health_requests_total{service="liveness",result="SERVING"} 1\n' in text
    rc, out = promtool_check(text)
    eq(rc, 0, "promtool check metrics (%s)" % out)


def recv_until_closed(s, timeout):
    """Bytes read until the peer closes (asserts it does within timeout)."""
    s.settimeout(timeout * harness.SCALE)
    got = b""
    end = time.monotonic() + timeout * harness.SCALE
    while time.monotonic() < end:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            return got
        except socket.timeout:
            break
        if not b:
            return got
        got += b
    raise AssertionError("connection still open after %gs (got %r)" % (timeout * harness.SCALE, got[:200]))


def test_grpc_garbage_after_preface_closes():
    """The preface then bytes that are no HTTP/2 frame: nghttp2's GOAWAY and a closed
    connection. Meanwhile a client that sent only the preface's first bytes holds up
    neither a new /livez nor a new Check, which the server answers at once."""
    d = start_daemon(args=["--tcp", "app=127.0.0.1:%d" % harness.free_port()])
    slow = socket.create_connection(("127.0.0.1", d.port))
    slow.sendall(PREFACE[:10])
    try:
        t0 = time.monotonic()
        eq(curl(d.url("/livez"))[0], 200, "/livez beside a dribbling client")
        eq(py_checks(d.port, ["liveness"]), {"liveness": "SERVING"}, "Check beside a dribbling client")
        assert time.monotonic() - t0 < 2 * harness.SCALE, "answers took %.2fs" % (time.monotonic() - t0)
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(PREFACE + b"\x00\x00\x08\x07\x00\x00\x00\x00\x01garbage!" + b"\xff" * 64)
        got = recv_until_closed(s, 5)
        assert b"\x07" in got[:64] or got == b"", "no GOAWAY among %r" % got[:64]  # type 7: GOAWAY
        s.close()
        # and a wrong preface goes to HTTP/1.1, which refuses it and closes
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        got = recv_until_closed(s, 5)
        assert got == b"" or got.startswith(b"HTTP/1.1 4") or got.startswith(b"HTTP/1.1 5"), got[:100]
        s.close()
    finally:
        slow.close()


def test_grpc_drain_turns_readiness_not_serving():
    t = start_target()
    d = start_daemon(config(tcp("app", "127.0.0.1:%d" % t.port), drain="3s"))
    wait_until(lambda: py_checks(d.port, ["readiness"])["readiness"] == "SERVING", msg="readiness SERVING")
    d.signal(signal.SIGTERM)
    got = wait_until(lambda: (lambda r: r if r["readiness"] == "NOT_SERVING" else None)(
        go_checks(d.port, ["readiness", "liveness", "startup"])), timeout=3, msg="readiness NOT_SERVING")
    eq((got["liveness"], got["startup"]), ("SERVING", "SERVING"), "liveness and startup while draining")
    eq(py_checks(d.port, ["readiness"])["readiness"], "NOT_SERVING", "python client while draining")
    eq(d.wait_exit(10), 0, "exit status after the drain")


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_grpc_1000_concurrent_checks_within_bounds():
    """1,000 Checks at once over 1,000 connections, then over 10 connections (32 streams
    each at most: the rest wait their turn on the client): every one SERVING, /livez
    answered meanwhile, and every connection closed afterwards (descriptors back to
    what they were)."""
    t = start_target()
    d = start_daemon(config(tcp("app", "127.0.0.1:%d" % t.port)))
    wait_until(lambda: curl(d.url("/livez"))[0] == 200, msg="/livez 200")
    go_client()
    base = fd_count(d.pid)
    for conns in (1000, 10):
        p = subprocess.Popen([GO_CLIENT, "-addr", "127.0.0.1:%d" % d.port, "-conns", str(conns), "-calls", "1000",
                              "-timeout", "%gs" % (10 * harness.SCALE), "liveness"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        code = curl(d.url("/livez"), timeout=5)[0]
        eq(code, 200, "/livez while %d connections call" % conns)
        out, err = p.communicate(timeout=60 * harness.SCALE)
        res = json.loads(out)
        eq((res["SERVING"], res["errors"]), (1000, 0), "1,000 Checks over %d connections (%s, %s)"
           % (conns, res["first_error"], err[-500:]))
        print("INFO 1,000 Checks over %d connections: %.2fs" % (conns, time.monotonic() - t0))
    wait_until(lambda: fd_count(d.pid) <= base + 2, timeout=10, msg="descriptors back to %d" % base)
    code, text, _ = curl(d.url("/metrics"))
    assert 'probed_grpc_health_requests_total{service="liveness",result="SERVING"} 2000\n' in text, \
        [l for l in text.splitlines() if "grpc_health" in l]


def test_grpc_idle_connections_count_and_are_shed():
    """1,200 h2c connections that sent the preface and SETTINGS but no request: they
    count toward the connection limit (1024), so the oldest idle ones are shed (closed by
    the server) as more arrive, and a new /livez and a new Check are answered at once."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1400 <= hard or hard == resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096) if hard == resource.RLIM_INFINITY
                                                    else min(hard, 4096), hard))
    d = start_daemon(args=["--tcp", "app=127.0.0.1:%d" % harness.free_port()])
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    socks = []
    try:
        for _ in range(1200):
            s = socket.create_connection(("127.0.0.1", d.port))
            s.sendall(PREFACE + settings)
            socks.append(s)
        t0 = time.monotonic()
        eq(curl(d.url("/livez"))[0], 200, "/livez beside 1,200 idle h2c connections")
        eq(py_checks(d.port, ["liveness"]), {"liveness": "SERVING"}, "Check beside them")
        took = time.monotonic() - t0
        assert took < 2 * harness.SCALE, "answers took %.2fs" % took

        def shed():
            n = 0
            for s in socks:
                s.setblocking(False)
                try:
                    while True:
                        b = s.recv(65536)
                        if not b:
                            n += 1
                            break
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    n += 1
            return n if n >= 1200 - 1024 else None
        n = wait_until(shed, timeout=10, interval=0.2, msg="idle h2c connections shed")
        print("INFO %d of 1,200 idle h2c connections shed; /livez and Check in %.0f ms" % (n, took * 1000))
    finally:
        for s in socks:
            s.close()


def test_grpc_watchdog_stuck_loop_not_serving():
    """The loop thread spins 6 s (watchdog 1s; each answer first waits fresh_wait, 300 ms):
    Check answers NOT_SERVING for every name (unknown ones stay NOT_FOUND), as the verdict
    endpoints answer 503, and a Watch says NOT_SERVING; SERVING again once it runs."""
    t = start_target()
    with harness.hooks_binary():
        d = start_daemon(config(tcp("app", "127.0.0.1:%d" % t.port), watchdog="1s"),
                         env={"PROBED_TEST_SPIN_MS": "6000"})
    wait_until(lambda: py_checks(d.port, ["liveness", "app"]) == {"liveness": "SERVING", "app": "SERVING"},
               msg="liveness and app SERVING")
    watch = PyWatch(d.port, "liveness", timeout=30)
    try:
        watch.wait_last("SERVING", "liveness before the spin")
        d.signal(signal.SIGUSR2)
        want = {"": "NOT_SERVING", "liveness": "NOT_SERVING", "app": "NOT_SERVING", "no-such-service": "NOT_FOUND"}
        wait_until(lambda: py_checks(d.port, list(want), timeout=5) == want, timeout=10,
                   msg="every name NOT_SERVING while the loop is stuck")
        watch.wait_last("NOT_SERVING", "liveness while the loop is stuck")
        wait_until(lambda: py_checks(d.port, ["liveness"], timeout=5)["liveness"] == "SERVING", timeout=15,
                   msg="liveness SERVING after the spin")
        watch.wait_last("SERVING", "liveness after the spin")
        eq(watch.got, ["SERVING", "NOT_SERVING", "SERVING"], "Watch of liveness through the spin")
    finally:
        watch.close()


def test_check_command_grpc():
    """`probed check grpc://HOST:PORT[/SERVICE]`: 0 on SERVING, 1 otherwise (the reason
    on stderr), 2 on a URL it cannot parse."""
    d = start_daemon(args=["--tcp", "app=127.0.0.1:%d" % harness.free_port()])
    wait_until(lambda: curl(d.url("/readyz"))[0] == 503 and curl(d.url("/livez"))[0] == 200,
               msg="live, not ready")
    base = "grpc://127.0.0.1:%d" % d.port
    for url, rc, err in ((base, 0, ""), (base + "/liveness", 0, ""),
                         (base + "/readiness", 1, "status NOT_SERVING"),
                         (base + "/nope", 1, "grpc-status 5 (NOT_FOUND): unknown service"),
                         ("grpc://127.0.0.1:%d/" % harness.free_port(), 1, "connection refused"),
                         ("grpc://no-port", 2, "is not grpc://HOST:PORT[/SERVICE]")):
        r = run_probed(["check", url])
        eq(r.rc, rc, "probed check %s (%s)" % (url, r.stderr.strip()))
        assert err in r.stderr, "stderr of probed check %s: %r" % (url, r.stderr)


if __name__ == "__main__":
    harness.main()
