"""The images of deploy/Dockerfile, run by a real container runtime (podman).

Run by tests/image/run.sh (make image-test, part of make test), which builds the images
first and exports IMAGE (the name `make image` tagged: IMAGE:latest and IMAGE:exec),
CONTAINERS_CONF (the podman settings deploy/image.sh wrote) and TOOLS.

- The runtime image's content: no shell, no package manager, at most 30 MB; the
  HEALTHCHECK and the non-root USER survive the build.
- Alone: tini is PID 1, probed runs as a non-root uid, /livez answers, `podman
  healthcheck run` says healthy, `podman stop` ends it in under 1 s with exit status 0
  after logging draining and shutdown.
- The exec target runs an exec probe (its commands have a shell and tools).
- TLS in the scratch image: an https probe with ca_file passes; one verified against the
  image's CA bundle fails on the self-signed certificate, not on a missing bundle.
- A pod like a Cloud Run instance: the app (tests/tools/target) and probed share one
  localhost and nothing else; /startup turns 200 once the app listens; the app hanging
  (SIGSTOP) or dying turns /livez 503. Asked from inside the pod with `probed check`.
- The manifests under `podman kube play`: a Pod made of the containers of
  deploy/knative/service.yaml and deploy/cloudrun/service.yaml (env, args, probes,
  securityContext kept; images replaced by the local ones; the config a ConfigMap).
  The app's livenessProbe, as podman runs it (curl -f inside the app container), passes
  while the app is healthy and fails once it hangs.

Network: every container runs in a network namespace with only its loopback
(`--network none`, or a pod created so); the host talks to them only through `podman
exec`, so no test traffic leaves loopback and no iptables chain is made. Every
container, pod, volume and image a test makes is removed at its end; the base images and
the images `make image` built are kept.
"""

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import yaml  # noqa: E402

import harness  # noqa: E402
from harness import eq, wait_until  # noqa: E402

IMAGE = os.environ.get("IMAGE", "probed")
RUNTIME = "localhost/%s:latest" % IMAGE
EXEC = "localhost/%s:exec" % IMAGE
KNATIVE = os.path.join(ROOT, "deploy", "knative", "service.yaml")
CLOUDRUN = os.path.join(ROOT, "deploy", "cloudrun", "service.yaml")
CHAT_CONFIG = os.path.join(ROOT, "deploy", "examples", "chat-websocket.json")
PROBED_BIN = "/usr/local/bin/probed"
PREFIX = "probed-it-%d" % os.getpid()
MAX_RUNTIME_BYTES = 30 * 1000 * 1000

# What the current test made (removed by cleanup()), and the app image (made once for
# the file, removed at its end).
_made = {"pods": [], "containers": [], "volumes": []}
_app_image = []


def podman(*args, check=True, timeout=60):
    r = subprocess.run(["podman"] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout * harness.SCALE)
    if check:
        assert r.returncode == 0, "podman %s: exit %d: %s" % (
            " ".join(str(a) for a in args[:4]), r.returncode, (r.stderr or r.stdout).strip()[-1500:])
    return r


def name(what):
    return "%s-%s" % (PREFIX, what)


def cleanup():
    for p in _made["pods"]:
        podman("pod", "rm", "-f", "-t", "0", p, check=False)
    for c in _made["containers"]:
        podman("rm", "-f", "-t", "0", c, check=False)
    for v in _made["volumes"]:
        podman("volume", "rm", "-f", v, check=False)
    for k in _made:
        _made[k] = []


def run_container(cname, *args):
    """podman run -d --name cname args...; removed at the end of the test."""
    _made["containers"].append(cname)
    podman("run", "-d", "--name", cname, *args)


def host_pid(container):
    pid = int(podman("inspect", "--format", "{{.State.Pid}}", container).stdout.strip())
    assert pid > 0, "%s is not running" % container
    return pid


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(x) for x in f.read().split()]


def check_in(container, url, timeout="1s"):
    """`probed check URL` run inside container (with the probed of `binary`): its exit status."""
    return podman("exec", container, PROBED_BIN, "check", url, "--timeout", timeout,
                  check=False).returncode


def check_rc(container, url, want, timeout=15, msg=None):
    return wait_until(lambda: check_in(container, url) == want, timeout=timeout, interval=0.1,
                      msg=msg or "probed check %s in %s exits %d" % (url, container, want))


def healthcheck(container):
    """`podman healthcheck run`: (exit status, output)."""
    r = podman("healthcheck", "run", container, check=False)
    return r.returncode, (r.stdout + r.stderr).strip()


def only_loopback(container):
    """The container's network namespace holds only lo (read from the host)."""
    with open("/proc/%d/net/dev" % host_pid(container)) as f:
        ifaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    eq(ifaces, ["lo"], "network interfaces of %s" % container)


def app_image():
    """A tiny app image: tests/tools/target (serves /healthz, port 8080 unless told
    otherwise) on the exec target (which has sh, libcurl and libssl), plus this machine's
    curl CLI, because `podman kube play` runs an httpGet probe as `curl -f` inside the
    container, and its openssl CLI (a TLS server). Built without network, once per file."""
    if _app_image:
        return _app_image[0]
    d = harness.tmpdir()
    subprocess.run(["cp", os.path.join(harness.TOOLS, "target"), "/usr/bin/curl", "/usr/bin/openssl",
                    d], check=True)
    with open(os.path.join(d, "Containerfile"), "w") as f:
        f.write("FROM %s\nCOPY curl openssl /usr/bin/\nCOPY target /usr/local/bin/target\n"
                "HEALTHCHECK NONE\nENTRYPOINT [\"/usr/local/bin/target\"]\n"
                "CMD [\"--port\", \"8080\"]\n" % EXEC)
    tag = "localhost/%s-app:latest" % PREFIX
    _app_image.append(tag)
    podman("build", "--format", "docker", "--network", "none", "--pull=never", "-q", "-t", tag,
           d, timeout=120)
    return tag


# ---------------------------------------------------------------- the image itself

def test_runtime_image_holds_only_the_runtime():
    info = json.loads(podman("image", "inspect", RUNTIME).stdout)[0]
    size = info["Size"]
    assert size <= MAX_RUNTIME_BYTES, "%s is %.1f MB (at most 30 MB)" % (RUNTIME, size / 1e6)
    cfg = info["Config"]
    eq(cfg.get("User"), "65532:65532", "USER")
    eq(cfg.get("Entrypoint"), ["/usr/bin/tini", "--", PROBED_BIN], "ENTRYPOINT")
    hc = info.get("Healthcheck") or {}
    eq(hc.get("Test"), ["CMD", PROBED_BIN, "check", "http://127.0.0.1:8081/livez"],
       "HEALTHCHECK (kept by --format docker)")
    assert "8081/tcp" in (cfg.get("ExposedPorts") or {}), "EXPOSE: %r" % cfg.get("ExposedPorts")

    c = name("files")
    _made["containers"].append(c)
    podman("create", "--name", c, RUNTIME)
    r = subprocess.run("podman export %s | tar -t" % c, shell=True, capture_output=True,
                       text=True, timeout=60)
    eq(r.returncode, 0, "podman export | tar -t (%s)" % r.stderr.strip())
    files = {f.lstrip("./").rstrip("/") for f in r.stdout.split()}
    for need in ("usr/local/bin/probed", "usr/bin/tini", "etc/ssl/certs/ca-certificates.crt",
                     "etc/passwd", "etc/group", "lib64/ld-linux-x86-64.so.2"):
        assert need in files, "%s is not in the image" % need
    for banned in ("bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/bash", "usr/bin/apt-get",
                   "usr/bin/dpkg", "bin/busybox", "usr/bin/env"):
        assert banned not in files, "the runtime image holds %s" % banned
    libs = [f for f in files if re.search(r"\.so(\.\d+)*$", f)]
    assert any("libcurl.so" in f for f in libs), "no libcurl in %r" % sorted(libs)
    r = podman("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", RUNTIME, "-c", "true",
               check=False)
    assert r.returncode != 0, "a shell ran in the runtime image"
    r = podman("run", "--rm", "--network", "none", RUNTIME, "--version")
    assert "probed" in r.stdout + r.stderr, "probed --version: %r" % (r.stdout + r.stderr)


# ---------------------------------------------------------------- alone

def test_alone_tini_healthcheck_stop():
    c = name("alone")
    # The HEALTHCHECK asks 127.0.0.1:8081: the default listen port, inside a network
    # namespace of its own (only lo), so it cannot clash with anything on the host.
    run_container(c, "--network", "none", RUNTIME)
    only_loopback(c)
    check_rc(c, "http://127.0.0.1:8081/livez", 0, msg="/livez 200 (default config: not started)")

    init = host_pid(c)
    st = proc_status(init)
    eq(st["Name"], "tini", "PID 1 of the container")
    eq(st["NSpid"].split()[-1], "1", "tini's pid inside the container")
    kids = children(init)
    eq(len(kids), 1, "children of tini")
    pst = proc_status(kids[0])
    eq(pst["Name"], "probed", "tini's child")
    uid = int(pst["Uid"].split()[0])
    assert uid != 0, "probed runs as root"
    eq(uid, 65532, "probed's uid")

    rc, out = healthcheck(c)
    eq(rc, 0, "podman healthcheck run (%s)" % out)
    eq(podman("inspect", "--format", "{{.State.Health.Status}}", c).stdout.strip(), "healthy",
       "health status")

    t0 = time.monotonic()
    podman("stop", "-t", "10", c)
    took = time.monotonic() - t0
    assert took < 1.0, "podman stop took %.2f s" % took
    eq(podman("inspect", "--format", "{{.State.ExitCode}}", c).stdout.strip(), "0",
       "exit status after SIGTERM")
    logs = podman("logs", c).stderr + podman("logs", c).stdout
    events = [json.loads(line).get("event") for line in logs.splitlines()
              if line.startswith("{")]
    assert "draining" in events and "shutdown" in events, "events logged: %r" % events
    assert events.index("draining") < events.index("shutdown"), "events: %r" % events
    print("  podman stop: %.2f s" % took)


def test_exec_target_runs_exec_probes():
    c = name("exec")
    run_container(c, "--network", "none", EXEC, "-l", "127.0.0.1:8081",
                  "--exec", "shell=/bin/sh -c true")
    check_rc(c, "http://127.0.0.1:8081/readyz", 0, msg="/readyz 200 with an exec probe")
    pst = proc_status(children(host_pid(c))[0])
    eq(int(pst["Uid"].split()[0]), 65532, "probed's uid in the exec image")
    rc, out = healthcheck(c)
    eq(rc, 0, "podman healthcheck run of the exec image (%s)" % out)


# ---------------------------------------------------------------- a pod

def test_pod_like_cloud_run():
    app = app_image()
    pod = name("pod")
    _made["pods"].append(pod)
    # --network none: the pod's namespace has only lo; its containers share it.
    podman("pod", "create", "--name", pod, "--network", "none")
    app_port, port = harness.free_port(), harness.free_port()
    cfg = os.path.join(harness.tmpdir(), "probed.json")
    with open(cfg, "w") as f:
        json.dump({"listen": "0.0.0.0:%d" % port,
                   "defaults": {"period": "200ms", "timeout": "300ms", "startup_period": "50ms",
                                "failure_threshold": 2},
                   "probes": [
                       {"name": "port", "type": "tcp",
                        "address": "127.0.0.1:${PROBED_TARGET_PORT}", "scopes": ["startup"]},
                       {"name": "app", "type": "http",
                        "url": "http://127.0.0.1:${PROBED_TARGET_PORT}/healthz",
                        "scopes": ["liveness", "readiness"]}]}, f)
    os.chmod(cfg, 0o644)
    probed = pod + "-probed"
    _made["containers"].append(probed)
    podman("run", "-d", "--pod", pod, "--name", probed,
           "-v", "%s:/etc/probed/probed.json:ro" % cfg,
           "-e", "PROBED_CONFIG=/etc/probed/probed.json", "-e", "PROBED_TARGET_PORT=%d" % app_port,
           RUNTIME)
    only_loopback(probed)
    url = lambda p: "http://127.0.0.1:%d%s" % (port, p)  # noqa: E731
    check_rc(probed, url("/livez"), 0, msg="probed answering in the pod")
    eq(check_in(probed, url("/startup")), 1, "/startup before the app listens")

    a = pod + "-app"
    _made["containers"].append(a)
    t0 = time.monotonic()
    podman("run", "-d", "--pod", pod, "--name", a, app, "--port", app_port)
    check_rc(probed, url("/startup"), 0, msg="/startup 200 once the app listens")
    print("  /startup 200 %.2f s after podman run of the app" % (time.monotonic() - t0))
    check_rc(probed, url("/readyz"), 0, msg="/readyz 200 with the app healthy")
    # The app answers on the shared localhost (asked from inside the app container).
    r = podman("exec", a, "curl", "-s", "-f", "http://127.0.0.1:%d/livez" % port, check=False)
    eq(r.returncode, 0, "curl from the app container to probed (%s)" % r.stderr.strip())

    # Hung: the app's process stopped, its socket still accepts connections.
    app_pid = host_pid(a)
    os.kill(app_pid, signal.SIGSTOP)
    try:
        check_rc(probed, url("/livez"), 1, msg="/livez 503 with the app hung")
        eq(check_in(probed, url("/startup")), 0, "/startup stays 200 (latched)")
    finally:
        os.kill(app_pid, signal.SIGCONT)
    check_rc(probed, url("/livez"), 0, msg="/livez 200 again once the app resumes")

    # Dead: the app container killed.
    podman("kill", a)
    check_rc(probed, url("/livez"), 1, msg="/livez 503 with the app dead")


def test_runtime_image_tls():
    """TLS works in the scratch image: an https probe with ca_file is healthy, and one
    verified against the image's CA bundle fails on the self-signed certificate itself
    (so the bundle loaded; a missing bundle fails before any handshake)."""
    app = app_image()
    d = harness.tmpdir()
    os.chmod(d, 0o755)
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out",
                        "cert.pem", "-days", "1", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=IP:127.0.0.1"], cwd=d, capture_output=True, text=True)
    eq(r.returncode, 0, "openssl req (%s)" % r.stderr.strip())
    for f in ("key.pem", "cert.pem"):
        os.chmod(os.path.join(d, f), 0o644)
    pod = name("tls")
    _made["pods"].append(pod)
    podman("pod", "create", "--name", pod, "--network", "none")
    app_port, port = harness.free_port(), harness.free_port()
    srv = pod + "-app"
    _made["containers"].append(srv)
    podman("run", "-d", "--pod", pod, "--name", srv, "-v", "%s:/tls:ro" % d,
           "--entrypoint", "/usr/bin/openssl", app, "s_server", "-accept",
           "127.0.0.1:%d" % app_port, "-cert", "/tls/cert.pem", "-key", "/tls/key.pem", "-www",
           "-quiet")
    url = "https://127.0.0.1:%d/" % app_port
    with open(os.path.join(d, "probed.json"), "w") as f:
        json.dump({"defaults": {"period": "300ms", "timeout": "1s"},
                   "probes": [{"name": "ca_file", "type": "http", "url": url,
                               "ca_file": "/tls/cert.pem"},
                              {"name": "bundle", "type": "http", "url": url, "tls_verify": True}]},
                  f)
    os.chmod(os.path.join(d, "probed.json"), 0o644)
    probed = pod + "-probed"
    _made["containers"].append(probed)
    podman("run", "-d", "--pod", pod, "--name", probed, "-v", "%s:/tls:ro" % d, RUNTIME,
           "-c", "/tls/probed.json", "-l", "127.0.0.1:%d" % port)

    def probes():
        r = podman("exec", srv, "curl", "-s", "--max-time", "2",
                   "http://127.0.0.1:%d/status" % port, check=False)
        try:
            ps = {p["name"]: p for p in json.loads(r.stdout)["probes"]}
        except ValueError:
            return None
        return ps if all(p["healthy"] is not None for p in ps.values()) else None
    ps = wait_until(probes, timeout=15, interval=0.2, msg="both https probes judged")
    eq(ps["ca_file"]["healthy"], True, "https with ca_file (%s)" % ps["ca_file"].get("last_error"))
    eq(ps["bundle"]["healthy"], False, "https verified against the image's CA bundle")
    err = ps["bundle"].get("last_error") or ""
    assert "self-signed" in err or "self signed" in err, \
        "the bundle probe failed for another reason than the certificate: %r" % err


# ---------------------------------------------------------------- kube play

def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def knative_service(docs):
    return [d for d in docs if d.get("kind") == "Service"
            and d.get("apiVersion", "").startswith("serving.knative.dev/")][0]


def fast_config(text):
    """The manifest's probed config with short probe timings (same listen, URLs, scopes
    and env expansion), so that a hang is seen in about a second rather than 30."""
    cfg = json.loads(text)
    cfg.setdefault("defaults", {}).update({"period": "300ms", "timeout": "300ms",
                                           "startup_period": "50ms", "failure_threshold": 2})
    for p in cfg["probes"]:
        for k in ("period", "timeout", "failure_threshold"):
            p.pop(k, None)
    return json.dumps(cfg, indent=2)


def pod_from(svc, pod, app_img, configmaps, keep=("app", "probed")):
    """A v1 Pod from a Knative Service's containers: images replaced by the local ones,
    everything else as written; secret volumes become ConfigMaps of the same items."""
    spec = copy.deepcopy(svc["spec"]["template"]["spec"])
    containers = []
    for c in spec["containers"]:
        if c["name"] not in keep:
            continue
        c["image"] = RUNTIME if c["name"] == "probed" else app_img
        c["imagePullPolicy"] = "Never"
        # A declared port becomes a port mapping under kube play, which needs a bridge
        # network; the pod has only its loopback, so the ports go (check_kube_pod checks
        # them against what probed is told the app listens on).
        c.pop("ports", None)
        containers.append(c)
    volumes = []
    for v in spec.get("volumes", []):
        if not any(m["name"] == v["name"] for c in containers for m in c.get("volumeMounts", [])):
            continue
        if "configMap" in v:
            cm = "%s-%s" % (pod, v["configMap"]["name"])
            configmaps[cm] = configmaps.pop(v["configMap"]["name"])
            v = dict(v, configMap=dict(v["configMap"], name=cm))
        elif "secret" in v:
            items = v["secret"].get("items") or []
            cm = "%s-%s" % (pod, v["name"])
            configmaps[cm] = {i["path"]: configmaps.pop(v["secret"]["secretName"])
                              for i in items}
            v = {"name": v["name"], "configMap": {"name": cm}}
        volumes.append(v)
    pod_spec = {"containers": containers, "volumes": volumes, "restartPolicy": "Never"}
    docs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}, "data": d}
            for n, d in configmaps.items()]
    docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod}, "spec": pod_spec})
    return docs


def play(docs, pod):
    path = os.path.join(harness.tmpdir(), "pod.yaml")
    with open(path, "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)
    _made["pods"].append(pod)
    before = set(podman("volume", "ls", "-q").stdout.split())
    r = podman("kube", "play", "--network", "none", path, check=False, timeout=120)
    _made["volumes"] += [v for v in podman("volume", "ls", "-q").stdout.split() if v not in before]
    assert r.returncode == 0, "podman kube play: %s\n%s" % (r.stderr.strip()[-1500:], open(path).read())
    return path


def app_probe_urls(app):
    """{kind: (url, probe)} of the app container's httpGet probes (to localhost)."""
    out = {}
    for key in ("startupProbe", "livenessProbe", "readinessProbe"):
        p = app.get(key)
        if p and "httpGet" in p:
            out[key] = "http://127.0.0.1:%d%s" % (int(p["httpGet"]["port"]),
                                                  p["httpGet"].get("path", "/"))
    return out


def curl_status(container, url):
    r = podman("exec", container, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
               "--max-time", "2", url, check=False)
    return r.stdout.strip()


def check_kube_pod(svc, pod):
    cs = {c["name"]: c for c in svc["spec"]["template"]["spec"]["containers"]}
    app, probed = pod + "-app", pod + "-probed"
    only_loopback(app)
    urls = app_probe_urls(cs["app"])
    assert "startupProbe" in urls, "the app has no httpGet startupProbe"
    # The probes' ports and paths reach probed, as the kubelet (from the app container's
    # network namespace, which is the pod's) would ask them.
    wait_until(lambda: curl_status(app, urls["startupProbe"]) == "200", timeout=20,
               interval=0.1, msg="the app's startupProbe %s answering 200" % urls["startupProbe"])
    for key, u in urls.items():
        st = curl_status(app, u)
        assert st in ("200", "503"), "the app's %s %s answers %r (not a probed endpoint)" % (
            key, u, st)
    # probed runs as the manifest says (securityContext.runAsUser / the image's USER).
    pst = proc_status(children(host_pid(probed))[0])
    want = cs["probed"].get("securityContext", {}).get("runAsUser", 65532)
    eq(int(pst["Uid"].split()[0]), want, "probed's uid in the pod")
    env = dict(e.split("=", 1) for e in json.loads(podman(
        "inspect", "--format", "{{json .Config.Env}}", probed).stdout))
    for e in cs["probed"].get("env", []):
        eq(env.get(e["name"]), str(e["value"]), "env %s of probed" % e["name"])
    declared = [p["containerPort"] for p in cs["app"].get("ports", [])]
    eq(declared, [int(env.get("PROBED_TARGET_PORT", 8080))],
       "the app's declared port vs probed's PROBED_TARGET_PORT")

    live = cs["app"].get("livenessProbe") or {}
    if "httpGet" in live:
        # podman runs it: the healthcheck kube play made of it (curl -f in the app container).
        def liveness():
            rc, out = healthcheck(app)
            assert rc == 0 or "unhealthy" in out, "podman healthcheck run: %r" % out
            return rc == 0
        how = "podman healthcheck run"
    elif "grpc" in live:
        # podman 4.3 kube play makes no healthcheck of a grpc probe (it runs httpGet,
        # tcpSocket and exec ones): asked as the kubelet does, a grpc.health.v1 Check of
        # the service on the port, from the app container (`probed check grpc://`).
        url = "grpc://127.0.0.1:%d/%s" % (int(live["grpc"]["port"]), live["grpc"].get("service", ""))
        liveness = lambda: check_in(app, url) == 0  # noqa: E731
        how = "probed check %s (podman 4.3 kube play does not run grpc probes)" % url
    else:
        raise AssertionError("the app's livenessProbe %r is neither httpGet nor grpc" % live)
    wait_until(liveness, timeout=10, interval=0.2,
               msg="the app's livenessProbe (%s) passing" % how)
    app_pid = host_pid(app)
    os.kill(app_pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        wait_until(lambda: not liveness(), timeout=20, interval=0.2,
                   msg="the app's livenessProbe (%s) failing with the app hung" % how)
        print("  %s: livenessProbe (%s) failed %.1f s after the app hung"
              % (pod, how, time.monotonic() - t0))
    finally:
        os.kill(app_pid, signal.SIGCONT)


def test_kube_play_knative():
    docs = load_docs(KNATIVE)
    svc = knative_service(docs)
    cms = {d["metadata"]["name"]: dict(d["data"]) for d in docs if d.get("kind") == "ConfigMap"}
    for d in cms.values():
        for k, v in d.items():
            if k.endswith(".json"):
                d[k] = fast_config(v)
    pod = name("knative")
    play(pod_from(svc, pod, app_image(), cms), pod)
    check_kube_pod(svc, pod)


def test_kube_play_cloudrun():
    docs = load_docs(CLOUDRUN)
    svc = knative_service(docs)
    # The secret the manifest mounts holds deploy/examples/chat-websocket.json (its
    # header says so); the collector (an image from a registry) is left out.
    with open(CHAT_CONFIG) as f:
        secrets = {"probed-config": fast_config(f.read())}
    pod = name("cloudrun")
    play(pod_from(svc, pod, app_image(), secrets), pod)
    check_kube_pod(svc, pod)


def test_left_nothing_behind():
    """Runs last: every container, pod, volume and image the file made is gone (the app
    image is removed here), and no iptables chain appeared (no network was made)."""
    cleanup()
    for tag in _app_image:
        podman("rmi", "-f", tag)
    del _app_image[:]
    eq(podman("ps", "-a", "-q", "--filter", "name=" + PREFIX).stdout.split(), [], "containers left")
    eq(podman("pod", "ps", "-q", "--filter", "name=" + PREFIX).stdout.split(), [], "pods left")
    eq([v for v in podman("volume", "ls", "-q").stdout.split() if PREFIX in v], [], "volumes left")
    eq([i for i in podman("images", "--format", "{{.Repository}}").stdout.split() if PREFIX in i],
       [], "images left")
    eq(iptables_chains() - _chains_at_start, set(), "iptables chains made")


def iptables_chains():
    try:
        r = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30)
    except OSError:
        return set()
    return {line.split()[0] for line in r.stdout.splitlines() if line.startswith(":")}


_chains_at_start = iptables_chains()


if __name__ == "__main__":
    harness_teardown = harness._teardown

    def _teardown():
        cleanup()
        return harness_teardown()
    harness._teardown = _teardown
    try:
        harness.main()
    finally:
        cleanup()
        for tag in _app_image:
            podman("rmi", "-f", tag, check=False)
