"""Deeper checks (README "Probe kinds"): http's expect_body_regex and expect_json against
the C target, redirects as kubelet follows them (only 301/302/303/307/308, an empty
Location is the final answer), tcp send/expect against a real redis-server and a
banner server, websocket send/expect against python3-websockets, and TLS (ca_file,
client certificates, server_name, a certificate that expires while probed runs) against
nginx with `ssl_verify_client on` and a python3-grpcio server, with a CA the test makes
with the openssl CLI. See harness.py for the API."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import eq, free_port, probe, run_probed, start_daemon, start_target, tmpdir, wait_probe  # noqa: E402
from test_kinds import grpc, peer, with_peers, ws  # noqa: E402

FAST = {"period": "100ms", "timeout": "1s", "startup_period": "50ms",
        "success_threshold": 1, "failure_threshold": 1}


def config(*probes):
    return {"defaults": dict(FAST), "probes": list(probes)}


def http(name, url, **kw):
    return dict({"name": name, "type": "http", "url": url}, **kw)


def tcp(name, address, **kw):
    return dict({"name": name, "type": "tcp", "address": address}, **kw)


def settled(d, name):
    """The probe's view once its first attempt ended."""
    return wait_probe(d, name, lambda p: p["last_outcome"] is not None, "first attempt of " + name)


def failing(d, name, error):
    p = wait_probe(d, name, lambda p: p["last_outcome"] in ("failure", "timeout"), name + " to fail")
    eq(p["last_error"], error, name + " last_error")


def passing(d, name):
    wait_probe(d, name, lambda p: p["last_outcome"] == "success" and p["healthy"] is True, name + " to pass")


# ---------------------------------------------------------------- http body checks

DOC = {"status": "ok", "checks": {"db": False, "cache": True}, "a/b": [1, 2], "n": None}


def test_expect_json_and_regex():
    t = start_target()
    body = urllib.parse.quote(json.dumps(DOC))
    url = t.url("/status/200?body=" + body)
    d = start_daemon(config(
        http("match", url, expect_json={"/status": "ok", "/checks/cache": True, "/a~1b/1": 2, "/n": None}),
        http("mismatch", url, expect_json={"/status": "ok", "/checks/db": True, "/nope": 1}),
        http("notjson", t.url("/status/200?body=hello"), expect_json={}),
        http("cut", url, max_body=20, expect_json={"/status": "ok"}),
        http("regex", url, expect_body_regex='"db": (true|false)'),
        http("noregex", url, expect_body_regex="^ok$"),
        http("regexcut", url, max_body=5, expect_body_regex="cache")))
    passing(d, "match")
    passing(d, "regex")
    failing(d, "mismatch", "status 200, /checks/db is false, want true; /nope is missing, want 1")
    failing(d, "notjson", "status 200, body is not JSON")
    failing(d, "cut", "status 200, body is not JSON (cut at max_body)")
    failing(d, "noregex", "status 200, body does not match expect_body_regex")
    failing(d, "regexcut", "status 200, body does not match expect_body_regex (cut at max_body)")


def test_new_keys_in_check_config_and_errors():
    d = tmpdir()
    path = os.path.join(d, "c.json")

    def check(*probes):
        with open(path, "w") as f:
            json.dump({"probes": list(probes)}, f)
        return run_probed(["--check-config", "-c", path])

    r = check(http("h", "http://127.0.0.1:1/", expect_body_regex="a+", expect_json={"/x": [1]}),
              tcp("t", "127.0.0.1:1", send="PING\\r\\n", expect="+PONG"),
              ws("w", "ws://127.0.0.1:1/", send="hi", expect="hi"))
    eq(r.rc, 0, "valid config: " + r.stderr)
    ps = {p["name"]: p for p in json.loads(r.stdout)["probes"]}
    eq(ps["h"]["expect_body_regex"], "a+")
    eq(ps["h"]["expect_json"], {"/x": [1]})
    eq((ps["t"]["send"], ps["t"]["expect"]), ("PING\\r\\n", "+PONG"))
    eq((ps["w"]["send"], ps["w"]["expect"], ps["w"]["tls_verify"]), ("hi", "hi", False))
    cases = [
        (http("h", "http://127.0.0.1:1/", expect_body_regex="(a"),
         'probed: config: probes[0].expect_body_regex: "(a" is not a POSIX extended regex: '),
        (http("h", "http://127.0.0.1:1/", expect_json={"status": 1}),
         'probed: config: probes[0].expect_json: "status" is not a JSON pointer'),
        (http("h", "http://127.0.0.1:1/", expect_json=[1]),
         "probed: config: probes[0].expect_json: must be an object"),
        (tcp("t", "127.0.0.1:1", send="a\\qb"),
         'probed: config: probes[0].send: "a\\qb": an unknown escape at byte 1'),
        (tcp("t", "127.0.0.1:1", expect="\\x4"),
         'probed: config: probes[0].expect: "\\x4": \\x without two hex digits at byte 0'),
        (http("h", "https://127.0.0.1:1/", ca_file=os.path.join(d, "none.pem")),
         'probed: config: probes[0].ca_file: cannot read "%s": no such file or directory'
         % os.path.join(d, "none.pem")),
        (http("h", "https://127.0.0.1:1/", ca_file=path),
         'probed: config: probes[0].ca_file: "%s" holds no PEM certificate' % path),
        (http("h", "https://127.0.0.1:1/", ca_file="/dev/zero"),  # never read forever
         'probed: config: probes[0].ca_file: "/dev/zero" is not a regular file of at most 4194304 bytes'),
        (http("h", "http://127.0.0.1:1/", server_name="x"),
         "probed: config: probes[0].server_name: applies to TLS only"),
        (grpc("g", "127.0.0.1:1", ca_file=path),
         "probed: config: probes[0].ca_file: applies to TLS only"),
    ]
    for p, want in cases:
        r = check(p)
        eq(r.rc, 2, "exit code for %r" % p)
        if not r.stderr.startswith(want) or r.stderr.count("\n") != 1:
            raise AssertionError("for %r: expected a line starting %r, got %r" % (p, want, r.stderr))


def test_reload_compares_new_keys():
    t = start_target()
    url = t.url("/status/200?body=" + urllib.parse.quote(json.dumps(DOC)))

    def cfg(want, expect):
        return config(http("h", url, expect_json=want),
                      tcp("t", "127.0.0.1:%d" % t.port, send="HEAD /status/200 HTTP/1.0\\r\\n\\r\\n", expect=expect))

    def reload(c, n):
        d.write_config(c)
        d.signal(signal.SIGHUP)
        lines = harness.wait_until(lambda: (lambda ls: ls if len(ls) >= n else None)(
            [l for l in d.logs() if l.get("event") == "reload"]), msg="%d reload lines" % n)
        return lines[n - 1].get("kept"), lines[n - 1].get("changed")

    d = start_daemon(cfg({"/status": "ok", "/n": None}, "HTTP/1.1 200"))
    passing(d, "h")
    passing(d, "t")
    eq(reload(cfg({"/n": None, "/status": "ok"}, "HTTP/1.1 200"), 1), ("2", "0"), "pointers reordered")
    eq(reload(cfg({"/n": None, "/status": "down"}, "HTTP/1.1 200"), 2), ("1", "1"), "a value changed")
    eq(reload(cfg({"/n": None, "/status": "down"}, "HTTP/1.1 2"), 3), ("1", "1"), "expect changed")


# ---------------------------------------------------------------- redirects (issue 18)

def test_redirects_as_kubelet():
    t = start_target()
    d = start_daemon(config(
        # an empty Location: the 302 itself is the answer, judged by its status
        http("empty", t.url("/status/302?location="), expect_status="200-299"),
        http("empty_ok", t.url("/status/302?location=")),
        # 300 and 304 are never followed (the target's /health would answer 200)
        http("multiple", t.url("/status/300?location=/health"), expect_status="200-299"),
        http("notmodified", t.url("/status/304?location=/health"), expect_status="200-299"),
        # 301, 302, 303, 307, 308 are followed
        http("moved", t.url("/status/301?location=/health"), expect_status="200-299"),
        http("temporary", t.url("/status/307?location=/health"), expect_status="200-299"),
        http("permanent", t.url("/status/308?location=/health"), expect_status="200-299")))
    failing(d, "empty", "status 302")
    failing(d, "multiple", "status 300")
    failing(d, "notmodified", "status 304")
    for name in ("empty_ok", "moved", "temporary", "permanent"):
        passing(d, name)


# ---------------------------------------------------------------- tcp send/expect

class Redis:
    def __init__(self, d, *extra):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", d, "--enable-debug-command", "local"] + list(extra),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_until(self.listening, timeout=10, msg="redis-server to listen")

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def command(self, *words):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(("*%d\r\n" % len(words) + "".join("$%d\r\n%s\r\n" % (len(w), w) for w in words)).encode())
            return s.recv(4096)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_tcp_redis():
    d = tmpdir()
    r = Redis(d)
    try:
        # a dump that loads slowly, for -LOADING (key-load-delay: microseconds per key)
        eq(r.command("DEBUG", "POPULATE", "1000"), b"+OK\r\n", "populate")
        eq(r.command("SAVE"), b"+OK\r\n", "save")
        dm = start_daemon(config(
            tcp("pong", "127.0.0.1:%d" % r.port, send="PING\\r\\n", expect="+PONG\\r\\n"),
            tcp("pang", "127.0.0.1:%d" % r.port, send="PING\r\n", expect="+PANG", timeout="300ms"),
            tcp("quit", "127.0.0.1:%d" % r.port, send="QUIT\r\n", expect="+PONG")))
        passing(dm, "pong")
        failing(dm, "pang", 'timeout: no "+PANG" in "+PONG\\r\\n" within 300ms')
        failing(dm, "quit", 'expect "+PONG": connection closed, got "+OK\\r\\n"')
        dm.stop()
        r.stop()
        r = Redis(d, "--key-load-delay", "2000", "--loading-process-events-interval-bytes", "1024")
        dm = start_daemon(config(tcp("loading", "127.0.0.1:%d" % r.port, send="PING\r\n", expect="+PONG",
                                     timeout="300ms")))
        failing(dm, "loading",
                'timeout: no "+PONG" in "-LOADING Redis is loading the dataset in memory\\r\\n" within 300ms')
        passing(dm, "loading")
    finally:
        r.stop()


def banner_server(banner):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)

    def serve():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            try:
                c.sendall(banner)
            except OSError:
                pass
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    return ls


def test_tcp_banner():
    good = banner_server(b"220 mail.test ESMTP ready\r\n")
    bad = banner_server(b"554 go away\r\n")
    try:
        d = start_daemon(config(
            tcp("smtp", "127.0.0.1:%d" % good.getsockname()[1], expect="220 "),
            tcp("refused", "127.0.0.1:%d" % bad.getsockname()[1], expect="220 ")))
        passing(d, "smtp")
        failing(d, "refused", 'expect "220 ": connection closed, got "554 go away\\r\\n"')
    finally:
        good.close()
        bad.close()


# ---------------------------------------------------------------- websocket send/expect

@with_peers
def test_ws_send_expect():
    echo = peer("ws", "echo")
    silent = peer("ws", "silent")
    d = start_daemon(config(
        ws("chat", "ws://127.0.0.1:%d/" % echo.port, send="hello probed", expect="probed"),
        ws("chat_noping", "ws://127.0.0.1:%d/" % echo.port, ping=False, send="round trip", expect="trip"),
        ws("welcome", "ws://127.0.0.1:%d/" % echo.port, expect="welcome"),
        ws("dead", "ws://127.0.0.1:%d/" % silent.port, send="hello", expect="hello", timeout="300ms")))
    for name in ("chat", "chat_noping", "welcome"):
        passing(d, name)
    failing(d, "dead", 'timeout: no message with "hello" within 300ms')


# ---------------------------------------------------------------- TLS

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


class Pki:
    """A CA made with the openssl CLI, and certificates it signs."""

    def __init__(self, name="ca"):
        self.d = tmpdir()
        self.name = name
        self.ca = os.path.join(self.d, name + ".crt")
        openssl("req", "-x509", "-new", *EC, "-keyout", name + ".key", "-out", name + ".crt",
                "-subj", "/CN=probed test " + name, "-days", "2", cwd=self.d)

    def issue(self, cn, san, enddate=None):
        """(cert, key) paths; enddate (YYYYMMDDHHMMSSZ) through `openssl ca`, else 1 day."""
        crt, key, csr = (os.path.join(self.d, cn + ext) for ext in (".crt", ".key", ".csr"))
        openssl("req", "-new", *EC, "-keyout", key, "-out", csr, "-subj", "/CN=" + cn,
                "-addext", "subjectAltName=" + san, cwd=self.d)
        if enddate is None:
            ext = os.path.join(self.d, cn + ".ext")
            with open(ext, "w") as f:
                f.write("subjectAltName=%s\n" % san)
            openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.name + ".key",
                    "-CAcreateserial", "-out", crt, "-days", "1", "-extfile", ext, cwd=self.d)
            return crt, key
        db = os.path.join(self.d, "db")
        os.makedirs(db, exist_ok=True)
        open(os.path.join(db, "index.txt"), "w").close()
        with open(os.path.join(db, "serial"), "w") as f:
            f.write("1000\n")
        cnf = os.path.join(self.d, "ca.cnf")
        with open(cnf, "w") as f:
            f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = db/index.txt\nserial = db/serial\n"
                    "new_certs_dir = db\ncertificate = %s\nprivate_key = %s.key\ndefault_md = sha256\n"
                    "policy = p\ncopy_extensions = copy\nunique_subject = no\n[p]\ncommonName = supplied\n"
                    % (self.ca, self.name))
        openssl("ca", "-batch", "-config", cnf, "-in", csr, "-out", crt, "-enddate", enddate, "-notext",
                cwd=self.d)
        return crt, key


class Nginx:
    """nginx from Debian, as root, everything in a temp dir; servers: a list of
    (port, cert, key, client_ca or None) answering 200 "tls ok"."""

    def __init__(self, servers):
        self.d = tmpdir()
        blocks = []
        for port, cert, key, client_ca in servers:
            verify = ("ssl_client_certificate %s;\n    ssl_verify_client on;\n" % client_ca) if client_ca else ""
            blocks.append("  server {\n    listen 127.0.0.1:%d ssl;\n    ssl_certificate %s;\n"
                          "    ssl_certificate_key %s;\n    %s    location / { return 200 \"tls ok\\n\"; }\n  }\n"
                          % (port, cert, key, verify))
        conf = os.path.join(self.d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("user root;\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log;\n"
                    "events { worker_connections 64; }\nhttp {\n  access_log off;\n"
                    "  client_body_temp_path %s;\n  proxy_temp_path %s;\n  fastcgi_temp_path %s;\n"
                    "  uwsgi_temp_path %s;\n  scgi_temp_path %s;\n%s}\n"
                    % ((self.d,) * 7 + ("".join(blocks),)))
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", self.d, "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port, _, _, _ in servers:
            harness.wait_until(lambda: self._up(port), timeout=10, msg="nginx on %d" % port)

    def _up(self, port):
        if self.proc.poll() is not None:
            with open(os.path.join(self.d, "error.log"), errors="replace") as f:
                raise AssertionError("nginx exited: " + f.read()[-2000:])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_mtls_nginx():
    if not shutil.which("nginx"):
        raise AssertionError("nginx is not installed (deploy/deps.sh)")
    ca, other = Pki("ca"), Pki("other")
    srv = ca.issue("app.test", "DNS:app.test")  # no IP: only server_name verifies it
    client = ca.issue("probed-client", "DNS:probed-client")
    stranger = other.issue("stranger", "DNS:stranger")
    port = free_port()
    n = Nginx([(port, srv[0], srv[1], ca.ca)])
    try:
        url = "https://127.0.0.1:%d/" % port
        named = dict(ca_file=ca.ca, server_name="app.test")
        d = start_daemon(config(
            http("nocert", url, **named),
            http("mtls", url, cert_file=client[0], key_file=client[1], **named),
            # a host name: its addresses (resolved by probed) reach libcurl beside server_name
            http("mtls_localhost", "https://localhost:%d/" % port, cert_file=client[0], key_file=client[1],
                 **named),
            http("strangercert", url, cert_file=stranger[0], key_file=stranger[1], **named),
            http("wrongca", url, ca_file=other.ca, server_name="app.test", cert_file=client[0],
                 key_file=client[1]),
            http("noname", url, ca_file=ca.ca, cert_file=client[0], key_file=client[1]),
            http("unverified", url, cert_file=client[0], key_file=client[1])))
        passing(d, "mtls")
        passing(d, "mtls_localhost")
        passing(d, "unverified")  # tls_verify defaults to false, as kubelet
        failing(d, "nocert", "status 400")  # nginx: "No required SSL certificate was sent"
        failing(d, "strangercert", "status 400")  # nginx: "The SSL certificate error"
        failing(d, "wrongca", "certificate verify failed: unable to get local issuer certificate")
        failing(d, "noname", "certificate verify failed: the certificate does not name the server")
        # a key that is not the certificate's is a config error naming both files
        r = run_probed(["--check-config", "--http", "x=" + url], env={})
        eq(r.rc, 0, "plain check-config")
        path = os.path.join(tmpdir(), "c.json")
        with open(path, "w") as f:
            json.dump(config(http("x", url, cert_file=client[0], key_file=stranger[1])), f)
        r = run_probed(["--check-config", "-c", path])
        eq(r.rc, 2, "mismatched key")
        eq(r.stderr, 'probed: config: probes[0].key_file: "%s" is not the key of cert_file "%s"\n'
           % (stranger[1], client[0]), "mismatched key error")
    finally:
        n.stop()


def test_cert_expires_while_running():
    ca = Pki("ca")
    # valid for 3 s from now (openssl ca -enddate), seconds resolution
    end = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + 3 * harness.SCALE))
    srv = ca.issue("app.test", "DNS:app.test", enddate=end)
    port = free_port()
    n = Nginx([(port, srv[0], srv[1], None)])
    try:
        d = start_daemon(config(http("soon", "https://127.0.0.1:%d/" % port, ca_file=ca.ca,
                                     server_name="app.test", period="200ms")))
        passing(d, "soon")
        failing(d, "soon", "certificate verify failed: certificate has expired")
    finally:
        n.stop()


@with_peers
def test_tls_grpc_and_wss():
    ca, other = Pki("ca"), Pki("other")
    cert, key = ca.issue("app.test", "DNS:app.test")
    client = ca.issue("probed-client", "DNS:probed-client")
    g = peer("grpc", "health", cert, key)
    gm = peer("grpc", "health", cert, key, ca.ca)  # requires a client certificate from ca
    w = peer("ws", "echo", cert, key)
    addr = "127.0.0.1:%d" % g.port
    d = start_daemon(config(
        grpc("grpc", addr, tls=True, ca_file=ca.ca, server_name="app.test"),
        grpc("grpc_wrongca", addr, tls=True, ca_file=other.ca, server_name="app.test"),
        grpc("grpc_mtls", "127.0.0.1:%d" % gm.port, tls=True, ca_file=ca.ca, server_name="app.test",
             cert_file=client[0], key_file=client[1]),
        grpc("grpc_nocert", "127.0.0.1:%d" % gm.port, tls=True, ca_file=ca.ca, server_name="app.test"),
        ws("wss", "wss://127.0.0.1:%d/" % w.port, ca_file=ca.ca, server_name="app.test", send="hi", expect="hi"),
        ws("wss_wrongca", "wss://127.0.0.1:%d/" % w.port, ca_file=other.ca, server_name="app.test")))
    passing(d, "grpc")
    passing(d, "grpc_mtls")
    passing(d, "wss")
    # TLS 1.3: the server's "certificate required" alert comes after the handshake, and
    # libcurl reports whichever write or read meets it ("broken pipe", "Transferred a
    # partial file"): only the failure is certain
    p = wait_probe(d, "grpc_nocert", lambda p: p["last_outcome"] is not None, "grpc_nocert to end")
    eq((p["last_outcome"], p["successes"]), ("failure", 0), "grpc_nocert outcome")
    failing(d, "grpc_wrongca", "certificate verify failed: unable to get local issuer certificate")
    failing(d, "wss_wrongca", "connect: certificate verify failed: unable to get local issuer certificate")


if __name__ == "__main__":
    harness.main()
