"""Integration tests of the probed core (issue 2): http and tcp probes, the status
server, config, the command line, shutdown and logs, against the real daemon and real
targets (tests/tools/target.c), queried with the real curl CLI. See harness.py."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (config, curl, eq, http, probe, start_daemon, start_target, status, tcp, wait_probe, wait_until)  # noqa: E402

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]00:00)$")
OUTCOMES = {"success", "failure", "timeout", "cancelled", "error"}








def wait_healthy(d, name, healthy=True, timeout=10):
    return wait_probe(d, name, lambda p: p["healthy"] is healthy,
                      "%s healthy=%s" % (name, healthy), timeout=timeout)


def wait_code(url, code, timeout=10):
    last = {}

    def check():
        last["r"] = curl(url)
        return last["r"] if last["r"][0] == code else None
    try:
        return wait_until(check, timeout=timeout, msg="%s to answer %d" % (url, code))
    except AssertionError as e:
        raise AssertionError("%s; last answer %r" % (e, last.get("r")))


def q(s):
    return urllib.parse.quote(s, safe="")


def count(target):
    code, body, _ = curl(target.url("/count"))
    eq(code, 200, "/count")
    m = re.match(r"requests=(\d+) connections=(\d+)", body)
    return int(m.group(1)), int(m.group(2))


def stats(target, reset=False):
    code, body, _ = curl(target.url("/stats?reset" if reset else "/stats"))
    eq(code, 200, "/stats")
    m = re.match(r"open=(\d+) max_open=(\d+)", body)
    return int(m.group(1)), int(m.group(2))


def time_wait_to(port):
    """Sockets in TIME_WAIT whose peer is 127.0.0.1:port, i.e. client-side sockets that
    closed first (read from /proc/net/tcp: state 06)."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            remote, st = fields[2], fields[3]
            if st == "06" and int(remote.split(":")[1], 16) == port:
                n += 1
    return n


# ------------------------------------------------------------ startup and verdicts

def test_default_config_startup_waits_for_target():
    port = harness.free_port()
    d = start_daemon(env={"PROBED_TARGET_PORT": port})
    app = probe(d, "app")
    eq(app["type"], "tcp", "default probe type")
    eq(app["target"], "127.0.0.1:%d" % port, "default probe target")
    eq(sorted(app["scopes"]), ["liveness", "readiness", "startup"], "default scopes")
    eq(curl(d.url("/startup"))[0], 503, "/startup before the target listens")
    eq(status(d)["status"], "starting", "/status status before startup")
    start_target(["--port", port])
    # startup_period (100ms by default), not period (10s), paces a startup probe
    code, body, _ = wait_code(d.url("/startup"), 200, timeout=3)
    eq(body, "ok\n", "/startup body")


def test_http_healthy_all_verdicts_ok():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200"))))
    wait_code(d.url("/readyz"), 200)
    for path in ("/livez", "/readyz", "/startup"):
        code, body, _ = curl(d.url(path))
        eq((code, body), (200, "ok\n"), path)
    eq(status(d)["status"], "ok", "/status status")
    d.wait_log({"probe": "api", "event": "healthy"})


def test_failing_probe_named_in_reason():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/health"))))
    wait_code(d.url("/readyz"), 200)
    curl(t.url("/control/health?status=503&body=down"))
    code, body, _ = wait_code(d.url("/readyz"), 503)
    assert body.startswith("failing: api: "), "readyz reason %r does not name the probe" % body
    assert "503" in body, "readyz reason %r does not mention the status" % body
    assert body.endswith("\n") and body.count("\n") == 1, "one reason line: %r" % body
    # started is latched, and api is a liveness probe: /livez fails too, /startup stays ok
    code, body, _ = curl(d.url("/livez"))
    eq(code, 503, "/livez once api is unhealthy")
    assert body.startswith("failing: api: "), body
    eq(curl(d.url("/startup"))[:2], (200, "ok\n"), "/startup stays latched")
    eq(status(d)["status"], "failing", "/status status")
    line = d.wait_log({"probe": "api", "event": "unhealthy"})
    eq(line.get("outcome"), "failure", "unhealthy log outcome")
    # the failure_threshold (2) was respected
    p = probe(d, "api")
    assert p["consecutive_failures"] >= 2, p
    # and it recovers
    curl(t.url("/control/health?status=200&body=ok"))
    wait_code(d.url("/readyz"), 200)
    wait_code(d.url("/livez"), 200)


def test_failure_threshold_counts():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/500"), failure_threshold=3,
                                 period="200ms", startup_period="200ms")))
    p = wait_probe(d, "api", lambda p: p["attempts"] >= 1 and p["last_outcome"] == "failure")
    if p["attempts"] < 3:
        assert p["healthy"] is None, "unhealthy before failure_threshold: %r" % p
    p = wait_healthy(d, "api", False)
    assert p["consecutive_failures"] >= 3 and p["failures"] >= 3, p
    eq(p["successes"], 0, "successes")


def test_verbose_format():
    t = start_target()
    d = start_daemon(config(http("good", t.url("/status/200")),
                            http("bad", t.url("/status/503"), scopes=["readiness"])))
    wait_healthy(d, "bad", False)
    wait_healthy(d, "good", True)
    code, body, _ = curl(d.url("/readyz?verbose"))
    eq(code, 503, "/readyz?verbose code")
    lines = body.splitlines()
    assert "[+]good ok" in lines, body
    assert any(l.startswith("[-]bad failed") for l in lines), body
    eq(lines[-1], "readyz check failed", "last verbose line")
    code, body, _ = curl(d.url("/livez?verbose"))
    eq((code, body.splitlines()), (200, ["[+]good ok", "livez check passed"]), "/livez?verbose")
    code, body, _ = curl(d.url("/startup?verbose"))
    eq((code, body.splitlines()), (200, ["[+]good ok", "startup check passed"]),
       "/startup?verbose")


def test_aliases():
    t = start_target()
    d = start_daemon(config(http("good", t.url("/status/200")),
                            http("bad", t.url("/status/503"), scopes=["readiness"])))
    wait_healthy(d, "bad", False)
    wait_healthy(d, "good", True)
    for path, code in (("/livez", 200), ("/health", 200), ("/healthz", 200),
                       ("/readyz", 503), ("/health/ready", 503),
                       ("/startup", 200), ("/health/startup", 200)):
        eq(curl(d.url(path))[0], code, path)
    eq(curl(d.url("/health/ready"))[1], curl(d.url("/readyz"))[1], "/health/ready body")
    eq(curl(d.url("/healthz?verbose"))[1], curl(d.url("/livez?verbose"))[1], "/healthz?verbose")


def test_404_405_head_and_no_store():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200"))))
    wait_code(d.url("/readyz"), 200)
    code, _, h = curl(d.url("/nope"))
    eq(code, 404, "unknown path")
    eq(h.get("Cache-Control"), "no-store", "404 Cache-Control")
    code, _, h = curl(d.url("/livez"), "-X", "POST", "-d", "x=1")
    eq(code, 405, "POST /livez")
    allow = sorted(m.strip() for m in (h.get("Allow") or "").split(","))
    eq(allow, ["GET", "HEAD"], "Allow header")
    eq(h.get("Cache-Control"), "no-store", "405 Cache-Control")
    code, body, h = curl(d.url("/livez"), "-I")
    eq(code, 200, "HEAD /livez")
    eq(h.get("Cache-Control"), "no-store", "HEAD Cache-Control")
    code, _, _ = curl(d.url("/status"), "-I")
    eq(code, 200, "HEAD /status")
    for path in ("/livez", "/readyz", "/startup", "/status", "/metrics", "/readyz?verbose",
                 "/health", "/healthz", "/health/ready", "/health/startup"):
        code, _, h = curl(d.url(path))
        eq(code, 200, path)
        eq(h.get("Cache-Control"), "no-store", path + " Cache-Control")


def test_503_has_no_store():
    d = start_daemon(config(tcp("port", "127.0.0.1:%d" % harness.free_port())))
    code, _, h = curl(d.url("/startup"))
    eq(code, 503, "/startup with nothing listening")
    eq(h.get("Cache-Control"), "no-store", "503 Cache-Control")


def test_status_json_fields():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200")),
                            tcp("port", "127.0.0.1:%d" % t.port, scopes=["startup"])))
    wait_healthy(d, "api")
    wait_healthy(d, "port")
    s = status(d)
    for k, ty in (("version", str), ("status", str), ("started", bool), ("live", bool),
                  ("ready", bool), ("draining", bool), ("uptime_seconds", (int, float)),
                  ("stalls", int), ("reloads", int), ("probes", list)):
        assert k in s, "/status lacks %r: %r" % (k, s)
        assert isinstance(s[k], ty) and not (ty is int and isinstance(s[k], bool)), \
            "/status %r has type %s" % (k, type(s[k]).__name__)
    eq(s["status"], "ok", "status")
    eq((s["started"], s["live"], s["ready"], s["draining"]), (True, True, True, False), "flags")
    eq([p["name"] for p in s["probes"]], ["api", "port"], "probes in config order")
    for p in s["probes"]:
        for k in ("consecutive_successes", "consecutive_failures", "attempts", "successes",
                  "failures", "timeouts", "cancellations", "errors", "restarts"):
            assert isinstance(p.get(k), int) and not isinstance(p[k], bool), \
                "%s.%s = %r" % (p["name"], k, p.get(k))
        assert isinstance(p.get("last_duration_ms"), (int, float)), p
        for k in ("last_attempt", "last_change"):
            assert isinstance(p.get(k), str) and RFC3339.match(p[k]), \
                "%s.%s = %r is not RFC 3339 UTC" % (p["name"], k, p.get(k))
        assert p["last_error"] is None or isinstance(p["last_error"], str), p
        assert "output" in p and p["output"] is None, "output must be null: %r" % p
        eq(p["healthy"], True, p["name"] + ".healthy")
        eq(p["last_outcome"], "success", p["name"] + ".last_outcome")
        assert p["state"] in ("waiting", "running", "backoff", "stopped"), p
        assert p["attempts"] >= p["successes"] >= 1, p
        assert isinstance(p["target"], str) and p["target"], p
    api, port = s["probes"]
    eq(api["type"], "http", "api.type")
    eq(api["target"], t.url("/status/200"), "api.target")
    eq(sorted(api["scopes"]), ["liveness", "readiness", "startup"], "api.scopes")
    eq(port["type"], "tcp", "port.type")
    eq(port["target"], "127.0.0.1:%d" % t.port, "port.target")
    eq(port["scopes"], ["startup"], "port.scopes")


def test_status_json_before_first_attempt():
    t = start_target()
    d = start_daemon(config(http("slow", t.url("/status/200"), initial_delay="1h")))
    p = probe(d, "slow")
    eq(p["healthy"], None, "healthy before any attempt")
    eq(p["attempts"], 0, "attempts")
    eq(status(d)["status"], "starting", "status")


def parse_metrics(text):
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        assert m, "bad metrics line %r" % line
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def test_metrics_promtool():
    t = start_target()
    d = start_daemon(config(http("good", t.url("/status/200")),
                            http("bad", t.url("/status/503"), scopes=["readiness"]),
                            tcp("port", "127.0.0.1:%d" % t.port)))
    wait_healthy(d, "bad", False)
    wait_healthy(d, "good")
    wait_healthy(d, "port")
    code, text, h = curl(d.url("/metrics"))
    eq(code, 200, "/metrics")
    assert (h.get("Content-Type") or "").startswith("text/plain"), h
    assert "version=0.0.4" in h.get("Content-Type"), h
    rc, out = harness.promtool_check(text)
    eq(rc, 0, "promtool check metrics (%s)" % out.strip())
    m = parse_metrics(text)
    for name in ("probed_started", "probed_live", "probed_ready", "probed_draining",
                 "probed_stalls_total", "process_resident_memory_bytes",
                 "process_cpu_seconds_total"):
        assert (name, ()) in m, "%s missing from /metrics:\n%s" % (name, text)
    eq(m[("probed_started", ())], 1.0, "probed_started")
    eq(m[("probed_ready", ())], 0.0, "probed_ready")
    eq(m[("probed_probe_healthy", (("probe", "good"), ("type", "http")))], 1.0, "good healthy")
    eq(m[("probed_probe_healthy", (("probe", "bad"), ("type", "http")))], 0.0, "bad healthy")
    eq(m[("probed_probe_healthy", (("probe", "port"), ("type", "tcp")))], 1.0, "port healthy")
    eq(m[("probed_probe_success", (("probe", "bad"), ("type", "http")))], 0.0, "bad success")
    assert m[("probed_probe_attempts_total",
              (("outcome", "success"), ("probe", "good"), ("type", "http")))] >= 1, text
    assert m[("probed_probe_attempts_total",
              (("outcome", "failure"), ("probe", "bad"), ("type", "http")))] >= 2, text
    assert ("probed_probe_duration_seconds_count", (("probe", "good"), ("type", "http"))) in m, text
    assert ("probed_probe_duration_seconds_bucket",
            (("le", "+Inf"), ("probe", "good"), ("type", "http"))) in m, text
    assert ("probed_probe_restarts_total", (("probe", "good"), ("type", "http"))) in m, text
    assert any(k[0] == "probed_config_reloads_total" for k in m), text


def test_metrics_unknown_probe_has_no_healthy_sample():
    t = start_target()
    d = start_daemon(config(http("later", t.url("/status/200"), initial_delay="1h")))
    code, text, _ = curl(d.url("/metrics"))
    eq(code, 200, "/metrics")
    rc, out = harness.promtool_check(text)
    eq(rc, 0, "promtool check metrics (%s)" % out.strip())
    assert not any(k[0] == "probed_probe_healthy" and ("probe", "later") in k[1]
                   for k in parse_metrics(text)), text


# ------------------------------------------------------------ http probe behaviour

def test_expect_status_lists_and_ranges():
    t = start_target()
    d = start_daemon(config(
        http("list", t.url("/status/204"), expect_status="200,204"),
        http("list_miss", t.url("/status/201"), expect_status="200,204"),
        http("range", t.url("/status/299"), expect_status="200-299"),
        http("range_miss", t.url("/status/300"), expect_status="200-299"),
        http("default_hi", t.url("/status/399")),
        http("default_miss", t.url("/status/400")),
        http("only_503", t.url("/status/503"), expect_status="503"),
    ))
    for name, want in (("list", True), ("list_miss", False), ("range", True),
                       ("range_miss", False), ("default_hi", True), ("default_miss", False),
                       ("only_503", True)):
        wait_healthy(d, name, want)


def test_expect_body_and_max_body():
    t = start_target()
    marked = t.url("/status/200?body=" + "a" * 200 + "MARK")
    d = start_daemon(config(
        http("found", t.url("/status/200?body=hello%20world"), expect_body="world"),
        http("absent", t.url("/status/200?body=hello%20world"), expect_body="absent"),
        http("big", t.url("/body/1048576")),
        http("big_timeout", t.url("/body/1048576"), timeout="300ms"),
        http("beyond", marked, max_body=100, expect_body="MARK"),
        http("cut", marked, max_body=203, expect_body="MARK"),
        http("edge", marked, max_body=204, expect_body="MARK"),
        http("within", marked, max_body=1000, expect_body="MARK"),
    ))
    for name, want in (("found", True), ("absent", False), ("big", True), ("big_timeout", True),
                       ("beyond", False), ("cut", False), ("edge", True), ("within", True)):
        p = wait_healthy(d, name, want)
        eq(p["last_outcome"], "success" if want else "failure", name + ".last_outcome")
    p = probe(d, "big")
    eq((p["failures"], p["timeouts"], p["errors"]), (0, 0, 0), "big body counters")


def test_headers_host_override_and_defaults():
    t = start_target()
    echo = t.url("/echo")
    d = start_daemon(config(
        http("host", echo, headers={"Host": "example.test"}, expect_body="Host: example.test"),
        http("custom", echo, headers={"X-Probe": "yes"}, expect_body="X-Probe: yes"),
        http("ua", echo, expect_body="User-Agent: probed/"),
        http("ua_set", echo, headers={"User-Agent": "mine/1"}, expect_body="User-Agent: mine/1"),
        http("accept", echo, expect_body="Accept: */*"),
        http("close", echo, expect_body="Connection: close"),
        http("request_line", echo, expect_body="GET /echo HTTP/1.1"),
        http("control", echo, expect_body="X-Not-Sent: 1"),
    ))
    for name in ("host", "custom", "ua", "ua_set", "accept", "close", "request_line"):
        wait_healthy(d, name)
    wait_healthy(d, "control", False)


def test_head_method():
    t = start_target()
    d = start_daemon(config(
        http("head", t.url("/only/HEAD"), method="HEAD"),
        http("head_status", t.url("/status/200"), method="HEAD", timeout="500ms"),
        http("get", t.url("/only/GET")),
        http("get_not_head", t.url("/only/HEAD")),
    ))
    wait_healthy(d, "head")
    p = wait_healthy(d, "head_status")
    eq(p["timeouts"], 0, "HEAD must not wait for a body")
    wait_healthy(d, "get")
    wait_healthy(d, "get_not_head", False)


def test_fresh_connection_per_attempt():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200"))))
    wait_healthy(d, "api")
    r0, c0 = count(t)
    a0 = probe(d, "api")["attempts"]
    wait_probe(d, "api", lambda p: p["attempts"] >= a0 + 5, what="5 more attempts")
    r1, c1 = count(t)
    a1 = probe(d, "api")["attempts"]
    # each /count call is one request on one connection
    dr, dc = r1 - r0 - 1, c1 - c0 - 1
    assert dc >= 5, "only %d new connections for >= 5 attempts" % dc
    eq(dr, dc, "requests vs connections (a connection was reused)")
    assert dc <= a1 - a0 + 1, "more connections (%d) than attempts (%d)" % (dc, a1 - a0)


def test_redirects():
    t = start_target()
    other = start_target()
    tls = harness.start_https(200, "secure\n")
    back = harness.start_https(302, "moved\n", location=t.url("/redirect/0"))
    cross_host = "http://localhost:%d/status/500" % t.port
    other_port = "http://127.0.0.1:%d/status/200?body=elsewhere" % other.port
    d = start_daemon(config(
        http("chain", t.url("/redirect/3"), expect_body="landed"),
        http("nine", t.url("/redirect/9"), expect_body="landed"),
        http("ten", t.url("/redirect/10"), expect_body="landed"),
        http("loop", t.url("/loop")),
        http("other_host", t.url("/redirect/1?to=" + q(cross_host))),
        http("other_host_strict", t.url("/redirect/1?to=" + q(cross_host)),
             expect_status="302"),
        http("other_port", t.url("/redirect/1?to=" + q(other_port)), expect_body="elsewhere"),
        # same host, another scheme: probed's client hands the hop to libcurl
        http("to_https", t.url("/redirect/1?to=" + q(tls.url("/"))), expect_body="secure"),
        http("relative", t.url("/redirect/1?to=" + q("../status/200?body=relative")),
             expect_body="relative"),
        # and back: an https probe redirected to http on the same host
        http("from_https", back.url("/"), expect_body="landed"),
    ))
    for name, want in (("chain", True), ("nine", True), ("ten", False), ("loop", False),
                       ("other_host", True), ("other_host_strict", True), ("other_port", True),
                       ("to_https", True), ("relative", True), ("from_https", True)):
        wait_healthy(d, name, want)


def test_body_framings():
    """The body is read as framed (chunked, until the close, after a 100 Continue):
    expect_body is searched in the body itself, never in the framing."""
    t = start_target()
    text = "hello world, all good"
    u = lambda mode: t.url("/framed/%s?body=%s" % (mode, q(text)))
    d = start_daemon(config(
        http("chunked", u("chunked"), expect_body="world, all"),
        http("chunk_ext", u("chunked"), expect_body="ext=1"),
        http("trailer", u("chunked"), expect_body="X-Trailer"),
        http("chunked_capped", u("chunked"), expect_body="world", max_body=8),
        http("eof", u("eof"), expect_body="all good"),
        http("continue", u("continue"), expect_body="world", expect_status="200"),
        http("head_chunked", u("chunked"), method="HEAD"),
    ))
    for name, want in (("chunked", True), ("chunk_ext", False), ("trailer", False),
                       ("chunked_capped", False), ("eof", True), ("continue", True),
                       ("head_chunked", True)):
        p = wait_healthy(d, name, want)
        eq(p["timeouts"], 0, name + " timeouts")


def test_host_with_two_addresses_tries_each():
    """A name with two addresses (as localhost: ::1, 127.0.0.1) of which only the second
    listens: http and tcp probes pass to the next address when one fails. The name comes
    from an /etc/hosts bind-mounted in a private mount namespace (unshare), and the
    target listens on whichever address getaddrinfo puts second."""
    tmp = harness.tmpdir()
    hosts = os.path.join(tmp, "hosts")
    with open(hosts, "w") as f:
        f.write("::1 dual\n127.0.0.1 dual\n")
    wrap = ["unshare", "--mount", "sh", "-c",
            'mount --bind "$0" /etc/hosts && '
            'getent ahosts dual | awk \'$2 == "STREAM" {print $1}\' && exec "$@"', hosts]
    r = subprocess.run(wrap + ["true"], capture_output=True, text=True, timeout=10)
    eq(r.returncode, 0, "unshare --mount (%s)" % r.stderr.strip())
    order = r.stdout.split()
    eq(sorted(order), ["127.0.0.1", "::1"], "addresses of dual")
    t = start_target(["--addr", order[1]])
    closed = harness.free_port()
    cfg = os.path.join(tmp, "dual.json")
    with open(cfg, "w") as f:
        json.dump(config(http("web", "http://dual:%d/status/200" % t.port),
                         tcp("port", "dual:%d" % t.port),
                         http("down", "http://dual:%d/" % closed, scopes=["readiness"])), f)
    port = harness.free_port()
    p = subprocess.Popen(wrap + [harness.PROBED, "-c", cfg, "-l", "127.0.0.1:%d" % port],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def probes():
            r = curl("http://127.0.0.1:%d/status" % port)
            return {x["name"]: x for x in json.loads(r.body)["probes"]} if r.status == 200 else {}
        harness.wait_until(lambda: probes().get("web", {}).get("healthy") is True, timeout=10,
                           msg="web healthy through the second address of dual (%s)" % order[1])
        harness.wait_until(lambda: probes().get("port", {}).get("healthy") is True, timeout=10,
                           msg="tcp healthy through the second address")
        down = harness.wait_until(lambda: (lambda d: d if d.get("attempts", 0) >= 2 else None)(
            probes().get("down", {})), timeout=10, msg="two attempts of down")
        eq(down["last_outcome"], "failure", "neither address listens: a failure, not an error")
        eq(down["errors"], 0, "errors")
    finally:
        p.kill()
        p.wait(timeout=10)


def test_ipv6_literal_url():
    """http://[::1]:PORT/ connects over IPv6 and sends Host: [::1]:PORT (RFC 7230 5.4)."""
    t = start_target(["--addr", "::1"])
    d = start_daemon(config(http("v6", "http://[::1]:%d/echo" % t.port,
                                 expect_body="Host: [::1]:%d\r\n" % t.port),
                            tcp("v6tcp", "[::1]:%d" % t.port)))
    wait_probe(d, "v6", lambda p: p["healthy"] is True, what="v6 healthy")
    wait_probe(d, "v6tcp", lambda p: p["healthy"] is True, what="v6tcp healthy")


def test_timeout_is_not_a_failure():
    t = start_target()
    d = start_daemon(config(http("hang", t.url("/hang"), timeout="200ms"),
                            http("slow_ok", t.url("/delay/50"), timeout="1s")))
    p = wait_probe(d, "hang", lambda p: p["timeouts"] >= 2 and p["healthy"] is False,
                   what="two timeouts")
    eq(p["failures"], 0, "timeouts counted as failures")
    eq(p["last_outcome"], "timeout", "last_outcome")
    assert p["consecutive_failures"] >= 2, p
    assert 150 <= p["last_duration_ms"] <= 1000, "timeout took %r ms" % p["last_duration_ms"]
    line = d.wait_log({"probe": "hang", "event": "unhealthy"})
    eq(line.get("outcome"), "timeout", "unhealthy log outcome")
    wait_healthy(d, "slow_ok")


def test_close_and_reset_are_failures():
    t = start_target()
    d = start_daemon(config(http("close", t.url("/close")), http("reset", t.url("/reset")),
                            http("refused", "http://127.0.0.1:%d/" % harness.free_port())))
    for name in ("close", "reset", "refused"):
        p = wait_healthy(d, name, False)
        eq(p["timeouts"], 0, name + " timeouts")
        eq(p["last_outcome"], "failure", name + " last_outcome")
        assert p["failures"] >= 2 and p["last_error"], p
    code, body, _ = curl(d.url("/readyz"))
    eq(code, 503, "readyz")
    # not started yet: the reason may say "starting" or "failing", but names a probe
    assert re.match(r"^(starting|failing): (close|reset|refused): .+\n$", body), body


def test_tcp_up_and_down():
    t = start_target()
    d = start_daemon(config(tcp("port", "127.0.0.1:%d" % t.port),
                            tcp("nothing", "127.0.0.1:%d" % harness.free_port(),
                                scopes=["readiness"])))
    wait_healthy(d, "port")
    p = wait_healthy(d, "nothing", False)
    eq(p["last_outcome"], "failure", "refused tcp outcome")
    t.stop()
    p = wait_healthy(d, "port", False)
    eq(p["last_outcome"], "failure", "tcp after the target stopped")
    code, body, _ = curl(d.url("/livez"))
    eq(code, 503, "livez once port is down")
    assert body.startswith("failing: port: "), body


def test_probe_flags():
    t = start_target()
    d = start_daemon(args=["--http", "web=" + t.url("/status/200"),
                           "--tcp", "sock=127.0.0.1:%d" % t.port])
    eq([p["name"] for p in status(d)["probes"]], ["web", "sock"], "flag probes")
    eq(probe(d, "web")["type"], "http", "web type")
    eq(probe(d, "sock")["type"], "tcp", "sock type")
    # startup_period (100ms by default) applies until startup completes
    wait_code(d.url("/startup"), 200, timeout=5)
    wait_code(d.url("/readyz"), 200, timeout=5)


def test_probe_flags_add_to_config():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200"))),
                     args=["--tcp", "sock=127.0.0.1:%d" % t.port])
    eq([p["name"] for p in status(d)["probes"]], ["api", "sock"], "config + flag probes")


def test_https_tls_verify_off_by_default():
    srv = harness.start_https(200, "secure\n")
    d = start_daemon(config(http("tls", srv.url("/"), expect_body="secure"),
                            http("tls_verify", srv.url("/"), tls_verify=True,
                                 scopes=["readiness"])))
    wait_healthy(d, "tls")
    p = wait_healthy(d, "tls_verify", False)
    eq(p["last_outcome"], "failure", "self-signed with tls_verify")


def test_success_threshold():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200"), success_threshold=3,
                                 period="200ms", startup_period="200ms")))
    p = wait_probe(d, "api", lambda p: p["attempts"] >= 1)
    if p["successes"] < 3:
        eq(p["healthy"], None, "healthy before success_threshold (%r)" % p)
    p = wait_healthy(d, "api")
    assert p["consecutive_successes"] >= 3, p


def test_listen_from_env_and_config():
    t = start_target()
    path = os.path.join(harness.tmpdir(), "c.json")
    with open(path, "w") as f:
        json.dump(config(http("api", t.url("/status/200"))), f)
    d = start_daemon(listen=None, env={"PROBED_LISTEN": "127.0.0.1:0", "PROBED_CONFIG": path})
    eq([p["name"] for p in status(d)["probes"]], ["api"], "probes from $PROBED_CONFIG")
    d2 = start_daemon(config(http("api", t.url("/status/200")), listen="127.0.0.1:0"),
                      listen=None)
    wait_code(d2.url("/readyz"), 200)


def test_probe_ignores_proxy_env():
    t = start_target()
    dead = "http://127.0.0.1:%d" % harness.free_port()
    d = start_daemon(config(http("api", t.url("/status/200"))),
                     env={"http_proxy": dead, "HTTP_PROXY": dead, "all_proxy": dead,
                          "ALL_PROXY": dead})
    wait_healthy(d, "api")


def test_empty_header_value_removes_default():
    t = start_target()
    d = start_daemon(config(
        http("no_ua", t.url("/absent/User-Agent"), headers={"User-Agent": ""}),
        http("no_accept", t.url("/absent/Accept"), headers={"Accept": ""}),
        http("has_ua", t.url("/absent/User-Agent")),
    ))
    wait_healthy(d, "no_ua")
    wait_healthy(d, "no_accept")
    wait_healthy(d, "has_ua", False)


def test_attempts_never_overlap():
    t = start_target()
    d = start_daemon(config(http("slow", t.url("/delay/300"), period="50ms",
                                 startup_period="50ms", timeout="2s")))
    p0 = wait_probe(d, "slow", lambda p: p["successes"] >= 1)
    t0 = time.monotonic()
    stats(t, reset=True)
    p1 = wait_probe(d, "slow", lambda p: p["attempts"] >= p0["attempts"] + 4, timeout=10)
    elapsed = time.monotonic() - t0
    _, max_open = stats(t)
    # one probe connection at a time, plus the /stats connection itself
    assert max_open <= 2, "%d connections open at once: attempts overlap" % max_open
    done = p1["attempts"] - p0["attempts"]
    assert done <= elapsed / 0.3 + 2, "%d attempts of a 300ms target in %.2fs" % (done, elapsed)
    assert p1["last_duration_ms"] >= 290, p1


def test_no_time_wait_on_probe_side():
    t = start_target()
    d = start_daemon(config(tcp("port", "127.0.0.1:%d" % t.port),
                            http("big", t.url("/body/1048576")),
                            http("hang", t.url("/hang"), timeout="100ms")))
    for name in ("port", "big"):
        wait_probe(d, name, lambda p: p["successes"] >= 5, what=name + " 5 successes")
    wait_probe(d, "hang", lambda p: p["timeouts"] >= 3, what="3 timeouts")
    eq(time_wait_to(t.port), 0, "TIME_WAIT sockets left by probes towards the target")


def test_oversized_request_refused():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200"))))
    code, _, _ = curl(d.url("/livez"), "-H", "X-Big: " + "a" * 100000)
    assert code == 0 or 400 <= code < 500, "oversized header answered %d" % code
    code, _, _ = curl(d.url("/livez?" + "a" * 100000))
    assert code == 0 or 400 <= code < 500, "oversized request line answered %d" % code
    eq(curl(d.url("/livez"))[0] in (200, 503), True, "still answering")


def test_sigterm_with_many_hung_attempts():
    t = start_target()
    n = 300
    d = start_daemon(config(*[http("h%d" % i, t.url("/hang"), timeout="30s",
                                   scopes=["readiness"]) for i in range(n)]))
    wait_until(lambda: stats(t)[0] >= n + 1, timeout=20, msg="%d hung connections" % n)
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    eq(d.wait_exit(10), 0, "exit code")
    took = time.monotonic() - t0
    if not harness.WRAPPER:
        assert took < 1.0, "exit took %.2fs with %d hung attempts" % (took, n)
    wait_until(lambda: stats(t)[0] == 1, timeout=5, msg="hung connections closed")
    bad = [l for l in d.logs() if l.get("event") == "unhealthy"]
    eq(bad, [], "cancelled attempts logged as unhealthy")


# ------------------------------------------------------------ command line

def write_file(text):
    path = os.path.join(harness.tmpdir(), "c.json")
    with open(path, "w") as f:
        f.write(text if isinstance(text, str) else json.dumps(text))
    return path


def test_check_config_prints_json():
    path = write_file(config(http("api", "http://127.0.0.1:${TPORT}/x"),
                             tcp("db", "${DBHOST:-127.0.0.1}:5432")))
    r = harness.run_probed(["--check-config", "-c", path], env={"TPORT": "1234"})
    eq(r.rc, 0, "exit code (%r)" % r)
    c = json.loads(r.stdout)
    probes = c["probes"]
    eq([(p["name"], p["type"]) for p in probes], [("api", "http"), ("db", "tcp")], "probes")
    eq(probes[0]["url"], "http://127.0.0.1:1234/x", "${VAR} expansion")
    eq(probes[1]["address"], "127.0.0.1:5432", "${VAR:-default} expansion")


def test_check_config_flags_and_default():
    r = harness.run_probed(["--check-config", "--http", "web=http://127.0.0.1:1/h",
                            "--tcp", "db=127.0.0.1:5432"])
    eq(r.rc, 0, "exit code (%r)" % r)
    eq([(p["name"], p["type"]) for p in json.loads(r.stdout)["probes"]],
       [("web", "http"), ("db", "tcp")], "flag probes")
    r = harness.run_probed(["--check-config"], env={"PROBED_TARGET_PORT": "9999"})
    eq(r.rc, 0, "exit code (%r)" % r)
    probes = json.loads(r.stdout)["probes"]
    eq([(p["name"], p["type"], p.get("address")) for p in probes],
       [("app", "tcp", "127.0.0.1:9999")], "embedded default")


def test_check_config_errors_name_the_path():
    cases = [
        (config(http("api", "http://127.0.0.1:1/", timeout="5x")), "probes[0].timeout"),
        (config(tcp("a", "127.0.0.1:1"), tcp("b", "127.0.0.1:1", period="10")),
         "probes[1].period"),
        (config(tcp("a", "127.0.0.1:1", tiemout="1s")), "probes[0].tiemout"),
        (config(tcp("a", "127.0.0.1:1"), tcp("a", "127.0.0.1:2")), "probes[1].name"),
        (config(tcp("a", "127.0.0.1:1", failure_threshold=0)), "probes[0].failure_threshold"),
        (config(http("a", "http://127.0.0.1:1/", expect_status="abc")),
         "probes[0].expect_status"),
        (config(http("a", "http://[::1:8080/")), "probes[0].url"),
        # header names are tokens, values free of control bytes (as for websocket)
        (config(http("a", "http://127.0.0.1:1/", headers={"X-A": "a\u0001b"})),
         "probes[0].headers.X-A"),
        (config(http("a", "http://127.0.0.1:1/", headers={"X(A)": "b"})),
         "probes[0].headers.X(A)"),
        ('{"probes": [', None),
    ]
    for cfg, path in cases:
        f = write_file(cfg)
        r = harness.run_probed(["--check-config", "-c", f])
        eq(r.rc, 2, "exit code for %s (%r)" % (path, r))
        lines = r.stderr.strip().splitlines()
        eq(len(lines), 1, "one stderr line for %s: %r" % (path, r.stderr))
        assert lines[0].startswith("probed: "), r.stderr
        if path:
            assert path in lines[0], "%r does not name %s" % (lines[0], path)
    r = harness.run_probed(["--check-config", "-c", "/nonexistent/probed.json"])
    eq(r.rc, 2, "missing config file")


def test_daemon_bad_config_exits_2():
    f = write_file(config(http("api", "http://127.0.0.1:1/", timeout="5x")))
    r = harness.run_probed(["-l", "127.0.0.1:0", "-c", f], timeout=10)
    eq(r.rc, 2, "exit code (%r)" % r)
    assert "probes[0].timeout" in r.stderr, r.stderr


def test_usage_error_exits_2():
    r = harness.run_probed(["--no-such-flag"])
    eq(r.rc, 2, "unknown flag (%r)" % r)
    r = harness.run_probed(["--version"])
    eq(r.rc, 0, "--version")
    assert r.stdout.strip(), "--version prints nothing"


def test_listen_port_taken_exits_1():
    t = start_target()
    r = harness.run_probed(["-l", "127.0.0.1:%d" % t.port], timeout=10)
    eq(r.rc, 1, "listen on a taken port (%r)" % r)


def test_check_command():
    t = start_target()
    run = harness.run_probed
    eq(run(["check", t.url("/status/200")]).rc, 0, "check 200")
    eq(run(["check", t.url("/status/204")]).rc, 0, "check 204")
    eq(run(["check", t.url("/redirect/1")]).rc, 0, "check 302")
    # no redirect is followed: the 302 decides, not the 503 behind it
    eq(run(["check", t.url("/redirect/1?to=" + q(t.url("/status/503")))]).rc, 0,
       "check 302 -> 503")
    eq(run(["check", t.url("/status/503")]).rc, 1, "check 503")
    eq(run(["check", t.url("/status/404")]).rc, 1, "check 404")
    eq(run(["check", "http://127.0.0.1:%d/" % harness.free_port()]).rc, 1, "check refused")
    t0 = time.monotonic()
    eq(run(["check", t.url("/hang"), "--timeout", "200ms"]).rc, 1, "check timeout")
    assert time.monotonic() - t0 < 5 * harness.SCALE, "check --timeout 200ms took too long"
    # proxy variables are ignored
    r = run(["check", t.url("/status/200")],
            env={"http_proxy": "http://127.0.0.1:%d" % harness.free_port(),
                 "HTTP_PROXY": "http://127.0.0.1:%d" % harness.free_port()})
    eq(r.rc, 0, "check with a dead proxy configured")


# ------------------------------------------------------------ shutdown

def test_sigterm_exits_0():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200")), http("hang", t.url("/hang"))))
    wait_healthy(d, "api")
    wait_probe(d, "hang", lambda p: p["state"] == "running", what="hang attempt in flight")
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    eq(d.wait_exit(5), 0, "exit code after SIGTERM")
    if not harness.WRAPPER:
        assert time.monotonic() - t0 < 2, "exit took %.2fs" % (time.monotonic() - t0)
    # a cancelled attempt is never logged as a failure
    assert not [l for l in d.logs() if l.get("probe") == "hang" and l.get("event") == "unhealthy"], \
        d.stderr_text()


def test_sigint_exits_0():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200"))))
    wait_healthy(d, "api")
    d.signal(signal.SIGINT)
    eq(d.wait_exit(5), 0, "exit code after SIGINT")


def test_drain():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200")),
                            http("hang", t.url("/hang"), timeout="30s", scopes=["readiness"]),
                            drain="3s"))
    wait_code(d.url("/livez"), 200)
    wait_healthy(d, "api")
    wait_probe(d, "hang", lambda p: p["state"] == "running", what="hang attempt in flight")
    d.signal(signal.SIGTERM)
    t0 = time.monotonic()
    code, body, _ = wait_code(d.url("/readyz"), 503, timeout=2)
    eq(body, "draining\n", "/readyz body while draining")
    r1, _ = count(t)
    eq(curl(d.url("/livez"))[:2], (200, "ok\n"), "/livez while draining")
    s = status(d)
    eq((s["status"], s["draining"], s["ready"]), ("draining", True, False), "/status while draining")
    hang = [p for p in s["probes"] if p["name"] == "hang"][0]
    eq((hang["cancellations"], hang["failures"], hang["timeouts"], hang["healthy"]),
       (1, 0, 0, None), "hang (cancellations, failures, timeouts, healthy) after SIGTERM")
    assert d.alive(), "exited before the drain ended"
    d.wait_log({"event": "draining"})
    eq(d.wait_exit(10), 0, "exit code after the drain")
    took = time.monotonic() - t0
    assert took >= 2.5, "exited %.2fs after SIGTERM, drain is 3s" % took
    if not harness.WRAPPER:
        assert took < 4.5, "exited %.2fs after SIGTERM, drain is 3s" % took
    r2, _ = count(t)
    # no attempt starts once draining (one request in flight at SIGTERM may land late)
    assert r2 - r1 - 1 <= 1, "%d requests reached the target during the drain" % (r2 - r1 - 1)


def test_second_signal_exits_at_once():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200")), drain="60s"))
    wait_code(d.url("/readyz"), 200)
    d.signal(signal.SIGTERM)
    wait_code(d.url("/readyz"), 503, timeout=2)
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    eq(d.wait_exit(5), 0, "exit code after a second SIGTERM")
    if not harness.WRAPPER:
        assert time.monotonic() - t0 < 1, "second signal took %.2fs" % (time.monotonic() - t0)


# ------------------------------------------------------------ logs

def test_logs_are_json_with_transitions():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200"))))
    line = d.wait_log({"probe": "api", "event": "healthy"})
    eq(line.get("outcome"), "success", "healthy line outcome")
    d.wait_log({"event": "started"})
    d.signal(signal.SIGTERM)
    eq(d.wait_exit(5), 0, "exit code")
    logs = d.logs()
    assert logs, "no log lines"
    for l in logs:
        assert l.get("severity") in ("DEBUG", "INFO", "WARNING", "ERROR"), l
        assert isinstance(l.get("message"), str) and l["message"], l
        assert isinstance(l.get("time"), str) and RFC3339.match(l["time"]), l
    # transitions only: far fewer lines than attempts at info level
    healthy_lines = [l for l in logs if l.get("probe") == "api" and l.get("event") == "healthy"]
    eq(len(healthy_lines), 1, "healthy transition logged once")


def test_log_levels_and_text_format():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200"))), args=["--log-level", "debug"])
    d.wait_log({"event": "attempt", "probe": "api"})
    d2 = start_daemon(config(http("api", t.url("/status/200"))))
    wait_probe(d2, "api", lambda p: p["attempts"] >= 5)
    eq([l for l in d2.logs() if l.get("event") == "attempt"], [], "attempt lines at info level")
    port = harness.free_port()
    d3 = start_daemon(config(http("api", t.url("/status/200"))),
                      args=["--log-format", "text"], listen="127.0.0.1:%d" % port,
                      wait_listening=False, json_logs=False)
    d3.port = port
    wait_code(d3.url("/readyz"), 200)
    text = d3.stderr_text()
    assert text.strip(), "no text logs"
    assert not any(l.startswith("{") for l in text.splitlines()), text


def test_unhealthy_log_has_error():
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/503"))))
    line = d.wait_log({"probe": "api", "event": "unhealthy"})
    eq(line.get("severity"), "WARNING", "unhealthy severity")
    assert isinstance(line.get("error"), str) and "503" in line["error"], line


# ------------------------------------------------------------ the valgrind scenario

def test_scenario_full():
    """One run through everything, also run under valgrind by valgrind.sh."""
    t = start_target()
    d = start_daemon(config(http("api", t.url("/status/200")),
                            tcp("port", "127.0.0.1:%d" % t.port),
                            http("bad", t.url("/status/503"), scopes=["readiness"]),
                            http("hang", t.url("/hang"), timeout="300ms",
                                 scopes=["readiness"])))
    wait_probe(d, "api", lambda p: p["attempts"] >= 3 and p["healthy"], timeout=20)
    wait_probe(d, "port", lambda p: p["attempts"] >= 3 and p["healthy"], timeout=20)
    wait_probe(d, "hang", lambda p: p["timeouts"] >= 2, timeout=20)
    for path in ("/startup", "/livez", "/readyz", "/health", "/healthz", "/health/ready",
                 "/health/startup", "/status", "/metrics", "/readyz?verbose",
                 "/livez?verbose", "/startup?verbose", "/nope"):
        code, _, _ = curl(d.url(path))
        assert code in (200, 503, 404), "%s answered %d" % (path, code)
    eq(curl(d.url("/livez"), "-X", "POST")[0], 405, "POST")
    eq(curl(d.url("/livez"), "-I")[0], 200, "HEAD")
    d.signal(signal.SIGTERM)
    eq(d.wait_exit(10), 0, "exit code")


if __name__ == "__main__":
    harness.main()
