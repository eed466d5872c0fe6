"""Deployment artefacts, checked without Docker, Cloud Run or a cluster.

- deploy/Dockerfile: bookworm bases (and scratch), multi-stage; both image targets
  (the default FROM scratch one and "exec") have a non-root USER, EXPOSE 8081, a
  HEALTHCHECK through `probed check`, an ENTRYPOINT whose PID 1 (tini) reaps the
  orphans of exec commands (run as PID 1 of a PID namespace with unshare), and -- the part a typo would break silently --
  every shared library the built binary links (ldd) is provided by a package the
  exec stage installs, by one of their dependencies, or by debian:12-slim itself
  (dpkg -S maps file -> package; apt-cache depends --recurse, which works from the
  local dpkg/apt state, gives the dependency closure). The scratch target copies what
  ldd names at build time; tests/image/test_image.py runs both images for real.
- deploy/cloudrun/service.yaml and deploy/knative/service.yaml: the wiring. Names in
  run.googleapis.com/container-dependencies exist and every depended-on container
  has a startupProbe that does not wait on the app; the app's probes ask probed's
  endpoints on probed's listen port; only the ingress container declares a port.
  The probe paths are also asked of a real probed: none may be a 404.
- deploy/examples/*.json (and the Knative ConfigMap's config) pass --check-config.
- docs/probed.8 renders without warnings and documents what --help lists.
"""

import glob
import json
import os
import re
import subprocess

import yaml

import harness
from harness import eq, run_probed, start_daemon, curl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = os.path.join(ROOT, "deploy", "Dockerfile")
CLOUDRUN = os.path.join(ROOT, "deploy", "cloudrun", "service.yaml")
RUNGMP = os.path.join(ROOT, "deploy", "cloudrun", "rungmp-config.yaml")
KNATIVE = os.path.join(ROOT, "deploy", "knative", "service.yaml")
EXAMPLES = os.path.join(ROOT, "deploy", "examples")
MANPAGE = os.path.join(ROOT, "docs", "probed.8")

# README "HTTP endpoints": the verdict endpoints and their aliases.
STARTUP_PATHS = {"/startup", "/health/startup"}
LIVE_PATHS = {"/livez", "/health", "/healthz"}
READY_PATHS = {"/readyz", "/health/ready"}
ENDPOINT_PATHS = STARTUP_PATHS | LIVE_PATHS | READY_PATHS | {"/status", "/metrics"}

# Packages every debian:12-slim image has (priority required/essential) that a
# binary may link without the Dockerfile installing them.
SLIM_BASE = {"libc6", "libgcc-s1", "gcc-12-base", "zlib1g", "libzstd1", "liblzma5",
             "libbz2-1.0", "libselinux1", "libpcre2-8-0", "libacl1", "libattr1",
             "libcrypt1", "libgmp10", "libmd0", "libtinfo6", "libudev1", "libcap2",
             "libsystemd0", "libgcrypt20", "libgpg-error0", "liblz4-1", "libdb5.3",
             "libaudit1", "libcap-ng0", "libpam0g", "libsemanage2", "libsepol2",
             "libsmartcols1", "libuuid1", "libblkid1", "libmount1", "libxxhash0",
             "libseccomp2", "libdebconfclient0", "libhogweed6", "libnettle8",
             "libffi8", "libgnutls30", "libidn2-0", "libp11-kit0", "libtasn1-6",
             "libunistring2"}


# ---------------------------------------------------------------- Dockerfile

def dockerfile_stages():
    """[(from_line_args, [(INSTRUCTION, args), ...]), ...], continuation lines joined."""
    with open(DOCKERFILE) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    stages = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        rest = rest.strip()
        if word == "FROM":
            stages.append((rest, []))
        elif stages:
            stages[-1][1].append((word, rest))
        else:
            assert word == "ARG", "instruction before the first FROM: %r" % line
    return stages


def apt_installed(instructions):
    """Package names given to `apt-get install` in a stage's RUN lines."""
    pkgs = []
    for word, rest in instructions:
        if word != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", rest):
            toks = cmd.split()
            while toks and "=" in toks[0]:
                toks.pop(0)          # VAR=value prefixes (DEBIAN_FRONTEND=...)
            if len(toks) >= 2 and toks[0] in ("apt-get", "apt") and toks[1] == "install":
                pkgs += [t for t in toks[2:] if not t.startswith("-")]
    return pkgs


def stage_named(stages, name):
    for st in stages:
        m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", st[0], re.I)
        if m and m.group(2) and m.group(2).lower() == name.lower():
            return st
    raise AssertionError("no stage named %r in the Dockerfile" % name)


def exec_form(rest):
    assert rest.startswith("["), "not in exec (JSON array) form: %r" % rest
    return json.loads(rest)


def entry_binary(entry):
    """probed's path in an ENTRYPOINT, after an init wrapper (`tini --`) if any."""
    if os.path.basename(entry[0]) == "tini":
        eq(entry[1], "--", "tini's argument separator")
        return entry[2]
    return entry[0]


def entrypoint():
    final = dockerfile_stages()[-1][1]
    return exec_form([r for w, r in final if w == "ENTRYPOINT"][-1])


def stage_names(stages):
    return {m.group(2).lower() for m in (re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", st[0], re.I)
                                         for st in stages) if m and m.group(2)}


def test_dockerfile_bases_are_bookworm():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "not multi-stage: %d FROM line(s)" % len(stages)
    for from_args, _ in stages:
        image = from_args.split()[0]
        if image == "scratch" or image.lower() in stage_names(stages):
            continue
        assert re.match(r"^(docker\.io/)?(library/)?debian:(12|bookworm)([-.@]|$)", image) or \
            re.match(r"^gcr\.io/distroless/\S+-debian12", image), \
            "FROM %s is not a Debian 12 (bookworm) image" % image
    final = stages[-1][0].split()[0]
    assert final == "scratch" or "slim" in final or "distroless" in final, \
        "runtime base %s is not slim" % final
    exec_base = stage_named(stages, "exec")[0].split()[0]
    assert re.match(r"^(docker\.io/)?(library/)?debian:(12|bookworm)-slim$", exec_base), \
        "the exec target's base %s is not debian:12-slim" % exec_base


def test_dockerfile_runtime_stage_contract():
    """Both image targets: the default (last) stage and "exec"."""
    stages = dockerfile_stages()
    for final in (stages[-1][1], stage_named(stages, "exec")[1]):
        check_runtime_stage(stages, final)


def check_runtime_stage(stages, final):
    by = {}
    for word, rest in final:
        by.setdefault(word, []).append(rest)

    users = by.get("USER", [])
    assert users, "runtime stage has no USER (would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), "USER is %r" % users[-1]

    exposed = " ".join(by.get("EXPOSE", [])).split()
    assert "8081" in exposed or "8081/tcp" in exposed, "EXPOSE lists %r" % exposed

    entry = exec_form(by["ENTRYPOINT"][-1])
    binary = entry_binary(entry)
    copied = [r.split()[-1] for r in by.get("COPY", []) if r.startswith("--from=")]
    assert binary in copied, "ENTRYPOINT %s is not a file COPY --from'ed into the image (%r)" \
        % (binary, copied)

    hc = by.get("HEALTHCHECK", [])
    assert hc, "no HEALTHCHECK"
    cmd = hc[-1][hc[-1].index("CMD") + 3:].strip()
    argv = exec_form(cmd)
    eq(argv[:2], [binary, "check"], "HEALTHCHECK command")
    url = argv[2]
    m = re.match(r"^http://127\.0\.0\.1:(\d+)(/\S*)$", url)
    assert m, "HEALTHCHECK URL %r" % url
    eq(m.group(1), "8081", "HEALTHCHECK port")
    assert m.group(2) in LIVE_PATHS, "HEALTHCHECK path %s is not a liveness endpoint" % m.group(2)

    # The build stage runs make and the runtime copies make's output.
    from_copies = [r.split() for w, r in final if w == "COPY" and r.startswith("--from=")]
    assert from_copies, "runtime stage copies nothing from the build stage"
    stage, src = from_copies[0][0][len("--from="):], from_copies[0][1]
    build = stage_named(stages, stage)
    runs = " ".join(r for w, r in build[1] if w == "RUN")
    assert re.search(r"\bmake\b", runs), "build stage never runs make"
    assert src.endswith("build/probed"), "copies %s, but make builds build/probed" % src

    # Every plain COPY source exists in the repository (build context = root).
    for st in stages:
        for word, rest in st[1]:
            if word == "COPY" and not rest.startswith("--from="):
                for s in rest.split()[:-1]:
                    assert os.path.exists(os.path.join(ROOT, s)), "COPY source %s missing" % s


def test_dockerfile_build_steps_in_scratch_root():
    """The build stage replayed without Docker: its (and the exec stage's) apt packages are installed here,
    its COPY lines are enough to build (done in a scratch root, so nothing outside
    the copied files can leak in), its RUN lines succeed, and the runtime stage's
    COPY --from source is then the binary."""
    stages = dockerfile_stages()
    final = stages[-1][1]
    stage, src = [r.split()[:2] for w, r in final
                  if w == "COPY" and r.startswith("--from=")][0]
    build = stage_named(stages, stage[len("--from="):])
    for p in apt_installed(build[1]) + apt_installed(stage_named(stages, "exec")[1]):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        assert "ok installed" in r.stdout, "Dockerfile package %s is not a Debian 12 package " \
            "installed here (dpkg-query: %s)" % (p, (r.stdout + r.stderr).strip())
    root = harness.tmpdir()
    workdir = "/"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    for word, rest in build[1]:
        if word == "WORKDIR":
            workdir = os.path.join(workdir, rest)
            os.makedirs(root + workdir, exist_ok=True)
        elif word == "COPY":
            assert not rest.startswith("--from="), "build stage copies from another stage"
            args = rest.split()
            dst = root + os.path.join(workdir, args[-1])
            for a in args[:-1]:
                srcp = os.path.join(ROOT, a)
                if os.path.isdir(srcp):            # a directory's contents go into dst
                    os.makedirs(dst, exist_ok=True)
                    subprocess.run(["cp", "-a", srcp.rstrip("/") + "/.", dst], check=True)
                else:                              # a file goes into dst/ or becomes dst
                    os.makedirs(dst if args[-1].endswith("/") else os.path.dirname(dst),
                                exist_ok=True)
                    subprocess.run(["cp", "-a", srcp, dst], check=True)
        elif word == "RUN":
            if re.search(r"\bapt-get\b", rest):
                continue   # checked above: the packages are installed on this machine
            r = subprocess.run(["sh", "-ec", rest], cwd=root + workdir, env=env,
                               capture_output=True, text=True, timeout=600)
            eq(r.returncode, 0, "RUN %s (%s)" % (rest, (r.stderr or r.stdout)[-2000:]))
        elif word in ("ENV", "ARG"):
            pass
    binary = root + src
    assert os.access(binary, os.X_OK), "the build stage did not produce %s" % src
    r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    eq(r.returncode, 0, "%s --version" % src)


def test_dockerfile_healthcheck_runs():
    """The image's HEALTHCHECK argv, pointed at a real probed: healthy -> 0; a port
    where nothing listens -> 1 (the binary has the `check` command it relies on)."""
    final = dockerfile_stages()[-1][1]
    hc = [r for w, r in final if w == "HEALTHCHECK"][-1]
    argv = exec_form(hc[hc.index("CMD") + 3:].strip())
    path = re.match(r"^http://[^/]+(/\S*)$", argv[2]).group(1)
    d = start_daemon(args=["--tcp", "app=127.0.0.1:%d" % harness.free_port()])
    r = run_probed(argv[1:2] + [d.url(path)] + argv[3:])
    eq(r.rc, 0, "HEALTHCHECK against a live probed (%s)" % r.stderr.strip())
    r = run_probed(argv[1:2] + ["http://127.0.0.1:%d%s" % (harness.free_port(), path)] + argv[3:])
    eq(r.rc, 1, "HEALTHCHECK with nothing listening")


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _zombie_children(pid):
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % e) as f:
                st = f.read()
        except OSError:
            continue
        state, ppid = st[st.rindex(")") + 2:].split()[:2]
        if state == "Z" and int(ppid) == pid:
            out.append(int(e))
    return out


def _as_pid1(argv, port):
    """argv as PID 1 of a new PID namespace (what a container runtime does with the
    image's ENTRYPOINT); returns (unshare's Popen, the host pid of that PID 1)."""
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"] + argv,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    init = harness.wait_until(lambda: (_children(p.pid) or [None])[0], timeout=10,
                              msg="unshare's child")
    harness.wait_until(lambda: curl("http://127.0.0.1:%d/livez" % port).status == 200,
                       timeout=10, msg="probed answering in the namespace")
    return p, init


def test_entrypoint_init_reaps_exec_orphans():
    """An exec command that detaches a child (setsid ... &) leaves an orphan, which the
    kernel re-parents to PID 1. With the image's ENTRYPOINT (tini -- probed) PID 1 reaps
    it; probed alone as PID 1 would collect zombies (shown too, so this test can tell)."""
    entry = entrypoint()
    binary = entry_binary(entry)
    argv_of = lambda port, cfg: [a if a != binary else harness.PROBED for a in entry] + \
        ["-c", cfg, "-l", "127.0.0.1:%d" % port]
    cmd = ["sh", "-c", "setsid sleep 0.05 &"]
    cfg = os.path.join(harness.tmpdir(), "orphans.json")
    with open(cfg, "w") as f:
        json.dump({"probes": [{"name": "orphans", "type": "exec", "command": cmd,
                               "period": "100ms", "timeout": "1s"}]}, f)
    for with_init in (True, False):
        port = harness.free_port()
        argv = argv_of(port, cfg) if with_init else [harness.PROBED, "-c", cfg, "-l",
                                                       "127.0.0.1:%d" % port]
        p, init = _as_pid1(argv, port)
        try:
            attempts = lambda: [x for x in json.loads(curl(
                "http://127.0.0.1:%d/status" % port).body)["probes"]][0]["attempts"]
            harness.wait_until(lambda: attempts() >= 10, timeout=20, msg="10 exec attempts")
            if with_init:
                harness.wait_until(lambda: not _zombie_children(init), timeout=5,
                                   msg="no zombie under the image's PID 1 (%s)" % entry[0])
            else:
                harness.wait_until(lambda: len(_zombie_children(init)) >= 5, timeout=10,
                                   msg="zombies under probed as PID 1 (the hazard tini removes)")
        finally:
            p.kill()  # unshare ignores SIGTERM while it waits; --kill-child ends the namespace
            p.wait(timeout=10)


def test_make_install_layout():
    """`make install` puts the binary, the man page and the example configs in place
    (run into a DESTDIR, with BUILD a scratch dir holding a link to the binary under
    test; -o keeps make from trying to rebuild it)."""
    build = harness.tmpdir()
    os.symlink(harness.PROBED, os.path.join(build, "probed"))
    dest = harness.tmpdir()
    r = subprocess.run(["make", "-s", "-C", ROOT, "-o", os.path.join(build, "probed"),
                        "install", "BUILD=" + build, "DESTDIR=" + dest, "PREFIX=/usr/local"],
                       capture_output=True, text=True, timeout=120 * harness.SCALE)
    eq(r.returncode, 0, "make install (%s)" % (r.stderr.strip() or r.stdout.strip()))
    pre = os.path.join(dest, "usr", "local")
    binary = os.path.join(pre, "bin", "probed")
    assert os.access(binary, os.X_OK), "%s not installed/executable" % binary
    man = os.path.join(pre, "share", "man", "man8", "probed.8")
    assert os.path.exists(man), "man page not installed at share/man/man8/probed.8"
    with open(man) as f, open(MANPAGE) as g:
        eq(f.read(), g.read(), "installed man page content")
    ex = glob.glob(os.path.join(pre, "share", "doc", "probed", "examples", "*.json"))
    assert ex, "no example config installed in share/doc/probed/examples/"
    for path in ex:
        r = run_probed(["--check-config", "-c", path])
        eq(r.rc, 0, "--check-config of installed %s (%s)" % (os.path.basename(path),
                                                            r.stderr.strip()))


def dpkg_owner(path):
    """The package owning a library path; tries the /usr-merged spellings too."""
    cands = []
    for p in (path, os.path.realpath(path)):
        cands.append(p)
        cands.append(p[4:] if p.startswith("/usr/") else "/usr" + p)
    for c in cands:
        r = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            line = r.stdout.strip().splitlines()[0]
            return line.split(":")[0].split(",")[0].strip()
    return None


def dependency_closure(pkgs):
    r = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                        "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"]
                       + list(pkgs), capture_output=True, text=True)
    assert r.returncode == 0, "apt-cache depends failed: %s" % r.stderr
    out = set()
    for line in r.stdout.splitlines():
        name = line.strip()
        if ":" in name and not line.startswith(" "):
            name = name.split(":")[0]
        elif line.startswith(" "):
            name = name.split(":", 1)[1].strip() if ":" in name else name
        name = name.strip("<>").split(":")[0]
        if name:
            out.add(name)
    return out


def ldd(path):
    """{soname: resolved path} of everything ldd lists for path (transitively)."""
    r = subprocess.run(["ldd", path], capture_output=True, text=True)
    assert r.returncode == 0, "ldd %s failed: %s" % (path, r.stderr)
    out = {}
    for line in r.stdout.splitlines():
        assert "not found" not in line, "%s: library not found: %s" % (path, line.strip())
        m = re.match(r"\s*(\S+)\s*=>\s*(/\S+)\s*\(", line) or re.match(r"\s*(/\S+)\s*\(", line)
        if m:
            out[os.path.basename(m.group(1))] = m.group(m.lastindex)
    return out


def test_dockerfile_build_stage_has_dev_packages():
    stages = dockerfile_stages()
    build = stages[0]
    pkgs = set(apt_installed(build[1]))
    for need in ("gcc", "make", "pkg-config"):
        assert need in pkgs, "build stage does not install %s" % need
    # The .pc files the Makefile's pkg-config call reads (its PKGS), and libcrypto for -lcrypto.
    with open(os.path.join(ROOT, "Makefile")) as f:
        pkgs_line = re.search(r"^PKGS\s*:?=(.*)$", f.read(), re.M)
    assert pkgs_line, "no PKGS line in the Makefile"
    for module in pkgs_line.group(1).split() + ["libcrypto"]:
        r = subprocess.run(["pkg-config", "--variable=pcfiledir", module],
                           capture_output=True, text=True)
        assert r.returncode == 0, "pkg-config does not know %s here" % module
        pc = os.path.join(r.stdout.strip(), module + ".pc")
        owner = dpkg_owner(pc)
        assert owner, "no package owns %s" % pc
        assert owner in pkgs, "%s comes from %s, which the build stage does not install (%s)" \
            % (pc, owner, sorted(pkgs))


def test_dockerfile_runtime_packages_cover_ldd():
    """The exec target installs its libraries by package (the default target copies
    what ldd names in the build stage instead)."""
    stages = dockerfile_stages()
    runtime = set(apt_installed(stage_named(stages, "exec")[1]))
    assert runtime, "exec stage installs no packages"
    for p in runtime:
        assert not p.endswith("-dev"), "runtime stage installs a -dev package: %s" % p
    allowed = dependency_closure(sorted(runtime)) | runtime | SLIM_BASE
    deps = ldd(harness.PROBED)
    # A SANITIZER build also links libasan/libubsan and what they pull in (libstdc++):
    # never part of the image, so left out, unless the binary needs them by itself.
    r = subprocess.run(["readelf", "-d", harness.PROBED], capture_output=True, text=True)
    assert r.returncode == 0, "readelf -d failed: %s" % r.stderr
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout))
    sanitizer = set()
    for name, path in deps.items():
        if re.match(r"^lib(asan|ubsan|lsan|tsan)\.", name):
            sanitizer.add(name)
            sanitizer |= set(ldd(path)) - needed
    libs = []
    for name, path in deps.items():
        if re.match(r"^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl|librt)", name):
            continue   # glibc itself: in every Debian image
        if name in sanitizer:
            continue
        libs.append(path)
    assert libs, "ldd listed no libraries beyond libc: %r" % deps
    missing = []
    for path in libs:
        owner = dpkg_owner(path)
        assert owner, "no Debian package owns %s" % path
        if owner not in allowed:
            missing.append("%s (%s)" % (path, owner))
    assert not missing, "runtime stage lacks the package(s) for: %s" % ", ".join(missing)
    # And the direct libraries must be named, not only reached by luck through others.
    owners = {dpkg_owner(p) for p in libs}
    for direct in ("libcurl4", "libmicrohttpd12", "libcjson1", "libc-ares2", "libnghttp2-14"):
        if direct in owners:
            assert direct in runtime, "%s is linked but not installed by name" % direct


# ---------------------------------------------------------------- manifests

def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def ksvc(docs):
    svcs = [d for d in docs if d.get("kind") == "Service"
            and d.get("apiVersion") == "serving.knative.dev/v1"]
    eq(len(svcs), 1, "serving.knative.dev/v1 Services")
    return svcs[0]


def containers_of(svc):
    cs = svc["spec"]["template"]["spec"]["containers"]
    names = [c.get("name") for c in cs]
    assert all(names), "a container has no name"
    eq(len(set(names)), len(names), "unique container names")
    return {c["name"]: c for c in cs}


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def probed_container(cs):
    hits = [c for c in cs.values() if "probed" in c.get("image", "") or c["name"] == "probed"]
    eq(len(hits), 1, "probed sidecars")
    return hits[0]


def listen_of(probed, config_text=None):
    """(host, port) probed listens on: -l/--listen args, then PROBED_LISTEN, then the
    config's listen, then the default (README "Command line")."""
    args = [str(a) for a in probed.get("args", [])] + [str(a) for a in probed.get("command", [])]
    val = None
    for i, a in enumerate(args):
        if a in ("-l", "--listen") and i + 1 < len(args):
            val = args[i + 1]
        elif a.startswith("--listen="):
            val = a.split("=", 1)[1]
    if val is None:
        val = env_of(probed).get("PROBED_LISTEN")
    if val is None and config_text:
        val = json.loads(config_text).get("listen")
    if val is None:
        val = "0.0.0.0:8081"
    host, _, port = val.rpartition(":")
    return host.strip("[]"), int(port)


def probe_target(probe):
    """(kind, path, port) of a k8s probe."""
    if "httpGet" in probe:
        return "http", probe["httpGet"].get("path", "/"), probe["httpGet"].get("port")
    if "tcpSocket" in probe:
        return "tcp", None, probe["tcpSocket"].get("port")
    if "grpc" in probe:
        return "grpc", None, probe["grpc"].get("port")
    return "exec", None, None


def check_app_probes(app, listen_port, require_readiness, grpc_liveness=False):
    """The app's probes ask probed's endpoints on its listen port; with grpc_liveness the
    liveness probe is gRPC health (service "liveness"). Returns the HTTP paths and the
    gRPC services asked, for probe_paths_answered."""
    kinds = {"startupProbe": STARTUP_PATHS, "livenessProbe": LIVE_PATHS,
             "readinessProbe": READY_PATHS}
    seen = []
    for key, paths in kinds.items():
        probe = app.get(key)
        if probe is None:
            assert key != "readinessProbe" or not require_readiness, "app has no %s" % key
            assert key == "readinessProbe", "app has no %s" % key
            continue
        kind, path, port = probe_target(probe)
        if grpc_liveness and key == "livenessProbe":
            eq(kind, "grpc", "app %s kind" % key)
            eq(probe["grpc"].get("service"), "liveness", "app %s gRPC service" % key)
            seen.append("grpc:liveness")
        else:
            eq(kind, "http", "app %s kind" % key)
            assert path in paths, "app %s asks %s, not one of probed's %s" % (key, path, sorted(paths))
            seen.append(path)
        eq(port, listen_port, "app %s port (probed's listen port)" % key)
        if probe.get("periodSeconds") and probe.get("timeoutSeconds"):
            assert probe["timeoutSeconds"] <= probe["periodSeconds"], \
                "%s timeoutSeconds > periodSeconds" % key
    return seen


def probe_paths_answered(paths):
    """Asks a real probed for every path the manifests use: each must be a probed
    endpoint (200 or 503), never a 404; a "grpc:SERVICE" is asked with `probed check
    grpc://` and must be SERVING or NOT_SERVING, never NOT_FOUND."""
    d = start_daemon(args=["--tcp", "app=127.0.0.1:%d" % harness.free_port()])
    for p in sorted(set(paths)):
        if p.startswith("grpc:"):
            r = run_probed(["check", "grpc://127.0.0.1:%d/%s" % (d.port, p[5:])])
            assert r.rc == 0 or "status NOT_SERVING" in r.stderr, \
                "gRPC Check %s -> %d %r (not a probed service?)" % (p[5:], r.rc, r.stderr)
            continue
        status, body, _ = curl(d.url(p))
        assert status in (200, 503), "GET %s -> %d %r (not a probed endpoint?)" % (p, status, body)


def test_cloudrun_wiring():
    docs = load_yaml_docs(CLOUDRUN)
    svc = ksvc(docs)
    tmpl = svc["spec"]["template"]
    ann = tmpl["metadata"]["annotations"]
    cs = containers_of(svc)

    # Exactly one ingress container (the only one with ports), port 8080.
    with_ports = [c for c in cs.values() if c.get("ports")]
    eq(len(with_ports), 1, "containers declaring ports")
    app = with_ports[0]
    eq(len(app["ports"]), 1, "ports of the ingress container")
    eq(app["ports"][0]["containerPort"], 8080, "ingress port")

    probed = probed_container(cs)
    assert probed is not app, "probed must be a sidecar, not the ingress container"
    assert not probed.get("ports"), "probed declares ports (only the ingress container may)"
    host, port = listen_of(probed)
    assert host in ("0.0.0.0", "", "::"), "probed listens on %s, not all addresses" % host

    paths = check_app_probes(app, port, require_readiness=False)

    # container-dependencies: names exist, no cycle, depended-on ones have a startupProbe.
    deps = json.loads(ann["run.googleapis.com/container-dependencies"])
    assert isinstance(deps, dict) and deps, "container-dependencies: %r" % deps
    for who, needs in deps.items():
        assert who in cs, "container-dependencies names unknown container %r" % who
        assert isinstance(needs, list), "container-dependencies[%r] is not a list" % who
        for n in needs:
            assert n in cs, "container-dependencies: %r depends on unknown %r" % (who, n)
            assert "startupProbe" in cs[n], \
                "%r is depended on but has no startupProbe (Cloud Run rejects that)" % n
    assert probed["name"] in deps.get(app["name"], []), \
        "the app does not wait for probed (its startupProbe asks probed)"

    def reaches(a, b, seen=()):
        return any(n == b or (n not in seen and reaches(n, b, seen + (n,)))
                   for n in deps.get(a, []))
    for c in cs:
        assert not reaches(c, c), "container-dependencies has a cycle through %r" % c

    # probed's own startupProbe must not wait on the app (which starts after it).
    sp = probed["startupProbe"]
    kind, path, sport = probe_target(sp)
    eq(sport, port, "probed startupProbe port")
    assert kind in ("tcp", "http"), "probed startupProbe kind %s" % kind
    if kind == "http":
        assert path in ENDPOINT_PATHS, "probed's startupProbe asks %s, not an endpoint" % path
        assert path not in STARTUP_PATHS | READY_PATHS, \
            "probed's startupProbe asks %s, which waits on the app: start-order deadlock" % path
        paths.append(path)
    assert "livenessProbe" not in probed, \
        "probed has a livenessProbe: /livez judges the app, restarting probed cures nothing"

    # Cloud Run limits (Cloud Run's documented limits): startup budget <= 240 s; timeout <= period.
    for c in cs.values():
        for key in ("startupProbe", "livenessProbe", "readinessProbe"):
            p = c.get(key)
            if not p:
                continue
            period = p.get("periodSeconds", 10)
            assert p.get("timeoutSeconds", 1) <= period, "%s.%s timeout > period" % (c["name"], key)
            if key == "startupProbe":
                assert period * p.get("failureThreshold", 3) <= 240, \
                    "%s.startupProbe budget exceeds 240 s" % c["name"]
            assert "exec" not in p, "exec probes are not supported by Cloud Run"
            if key == "livenessProbe":
                assert "tcpSocket" not in p, "Cloud Run has no TCP liveness probe"

    eq(ann.get("run.googleapis.com/execution-environment"), "gen2", "execution environment")
    # request-based billing by default: probed is truthful under it (test_throttle.py);
    # instance-based billing stays a documented option
    assert ann.get("run.googleapis.com/cpu-throttling") in (None, "true"), "cpu-throttling %r" % ann.get(
        "run.googleapis.com/cpu-throttling")
    eq(ann.get("run.googleapis.com/sessionAffinity"), "true", "session affinity")
    assert tmpl["spec"].get("timeoutSeconds", 300) >= 3600, "request timeout too short for WebSockets"

    # Config delivery: PROBED_CONFIG lies in a mounted volume that exists.
    volumes = {v["name"]: v for v in tmpl["spec"].get("volumes", [])}
    cfg = env_of(probed).get("PROBED_CONFIG")
    if cfg:
        mounts = [m for m in probed.get("volumeMounts", [])
                  if cfg.startswith(m["mountPath"].rstrip("/") + "/")]
        assert mounts, "PROBED_CONFIG %s is not under a volumeMount" % cfg
        vol = volumes.get(mounts[0]["name"])
        assert vol, "volume %r is not defined" % mounts[0]["name"]
        rel = cfg[len(mounts[0]["mountPath"].rstrip("/")) + 1:]
        items = (vol.get("secret") or vol.get("configMap") or {}).get("items")
        if items:
            assert rel in [i["path"] for i in items], "%s is not an item of volume %r" \
                % (rel, mounts[0]["name"])
    for c in cs.values():
        for m in c.get("volumeMounts", []):
            assert m["name"] in volumes, "%s mounts undefined volume %r" % (c["name"], m["name"])

    # The metrics collector scrapes probed's listen port.
    with open(RUNGMP) as f:
        rm = yaml.safe_load(f)
    eq(rm.get("kind"), "RunMonitoring", "collector config kind")
    eps = rm["spec"]["endpoints"]
    assert any(int(e["port"]) == port and e.get("path", "/metrics") == "/metrics" for e in eps), \
        "RunMonitoring scrapes %r, not :%d/metrics" % (eps, port)
    paths.append("/metrics")

    probe_paths_answered(paths)


def test_knative_wiring():
    docs = load_yaml_docs(KNATIVE)
    svc = ksvc(docs)
    tmpl = svc["spec"]["template"]
    cs = containers_of(svc)
    with_ports = [c for c in cs.values() if c.get("ports")]
    eq(len(with_ports), 1, "containers declaring ports")
    app = with_ports[0]
    probed = probed_container(cs)
    assert probed is not app, "probed must be a sidecar"
    assert not probed.get("ports"), "probed declares ports"

    # The config comes from a ConfigMap in the same file: find its text.
    volumes = {v["name"]: v for v in tmpl["spec"].get("volumes", [])}
    cfg = env_of(probed).get("PROBED_CONFIG")
    config_text = None
    if cfg:
        mount = [m for m in probed.get("volumeMounts", [])
                 if cfg.startswith(m["mountPath"].rstrip("/") + "/")]
        assert mount, "PROBED_CONFIG %s is not under a volumeMount" % cfg
        vol = volumes[mount[0]["name"]]
        cm_name = vol["configMap"]["name"]
        cms = [d for d in docs if d.get("kind") == "ConfigMap"
               and d["metadata"]["name"] == cm_name]
        eq(len(cms), 1, "ConfigMap %s in the file" % cm_name)
        key = os.path.basename(cfg)
        config_text = cms[0]["data"][key]
        d = harness.tmpdir()
        path = os.path.join(d, key)
        with open(path, "w") as f:
            f.write(config_text)
        r = run_probed(["--check-config", "-c", path])
        eq(r.rc, 0, "--check-config of the Knative ConfigMap's config (%s)" % r.stderr.strip())
    host, port = listen_of(probed, config_text)
    # The kubelet runs startup/liveness probes against the pod IP, not 127.0.0.1.
    assert host in ("0.0.0.0", "", "::"), "probed listens on %s: the kubelet cannot reach it" % host
    if config_text and "PROBED_LISTEN" in env_of(probed):
        cfg_listen = json.loads(config_text).get("listen")
        if cfg_listen:
            eq(int(cfg_listen.rpartition(":")[2]), port, "config listen vs PROBED_LISTEN port")

    paths = check_app_probes(app, port, require_readiness=True, grpc_liveness=True)
    probe_paths_answered(paths)


def knative_min_version(text):
    """The minimum Knative Serving version the manifest's header states."""
    import re as _re
    m = _re.search(r"Needs Knative Serving (\d+)\.(\d+) or later", text)
    assert m, "the header of %s states no minimum Knative Serving version" % KNATIVE
    return int(m.group(1)), int(m.group(2))


def test_knative_manifest_rules():
    """What Knative's webhook and reconciler do with the manifest, rule by rule (no
    Knative runs here; the pod test under podman covers the runtime side)."""
    with open(KNATIVE) as f:
        text = f.read()
    docs = load_yaml_docs(KNATIVE)
    svc = ksvc(docs)
    cs = containers_of(svc)
    app = [c for c in cs.values() if c.get("ports")][0]
    probed = probed_container(cs)
    user_port = app["ports"][0].get("containerPort", 8080)
    _, listen_port = listen_of(probed)

    # validateReadinessProbe (pkg/apis/serving/k8s_validation.go): with periodSeconds 0
    # or absent (aggressive probing), timeoutSeconds and failureThreshold are refused
    # ("timeoutSeconds is disallowed when periodSeconds is zero"); successThreshold >= 1.
    for c in cs.values():
        rp = c.get("readinessProbe")
        if not rp:
            continue
        if not rp.get("periodSeconds"):
            for field in ("timeoutSeconds", "failureThreshold"):
                assert field not in rp, "%s.readinessProbe sets %s without periodSeconds: " \
                    "validateReadinessProbe refuses it" % (c["name"], field)
        assert rp.get("successThreshold", 1) >= 1, "%s.readinessProbe successThreshold" % c["name"]
    eq(app["readinessProbe"].get("periodSeconds", 0), 0, "app readinessProbe periodSeconds (aggressive probing)")

    # rewriteUserLivenessProbe (pkg/reconciler/revision/resources/deploy.go): the serving
    # container's httpGet or tcpSocket liveness port becomes the user port (without
    # multi-container-probing on 1.22+), a grpc one is left alone. So liveness must be
    # grpc to reach probed, on probed's port, service "liveness".
    lp = app["livenessProbe"]
    for kind in ("httpGet", "tcpSocket"):
        if kind in lp:
            eq(lp[kind].get("port"), user_port, "an %s liveness port is rewritten to %d: it" % (kind, user_port))
    assert "grpc" in lp, "the app's livenessProbe is not grpc: rewriteUserLivenessProbe moves it to the app"
    eq(lp["grpc"].get("port"), listen_port, "liveness gRPC port (probed's)")
    eq(lp["grpc"].get("service"), "liveness", "liveness gRPC service")

    # The minimum version stated covers what the manifest uses: startupProbe (1.15, PR
    # #15309), grpc probes (1.12, PR #14134), allowPrivilegeEscalation and seccompProfile
    # in a securityContext (1.8).
    need = (1, 0)
    for c in cs.values():
        if "startupProbe" in c:
            need = max(need, (1, 15))
        if any("grpc" in (c.get(k) or {}) for k in ("startupProbe", "livenessProbe", "readinessProbe")):
            need = max(need, (1, 12))
        sc = c.get("securityContext") or {}
        if "allowPrivilegeEscalation" in sc or "seccompProfile" in sc:
            need = max(need, (1, 8))
    stated = knative_min_version(text)
    assert stated >= need, "the header states Knative %d.%d, the manifest needs %d.%d" % (stated + need)
    for why in ("startupProbe", "grpc", "allowPrivilegeEscalation", "seccompProfile",
                "multi-container-probing", "1.22"):
        assert why in text, "the header does not mention %s" % why
    # the comment must not claim liveness escapes the rewrite
    assert "livenessProbe are NOT rewritten" not in text and "startupProbe and livenessProbe are not" not in text


# ---------------------------------------------------------------- examples

def example_files():
    files = sorted(glob.glob(os.path.join(EXAMPLES, "*.json")))
    assert len(files) >= 3, "expected the web API, WebSocket and gRPC examples, got %r" % files
    return files


def test_examples_pass_check_config():
    kinds = set()
    for path in example_files():
        with open(path) as f:
            src = json.load(f)
        r = run_probed(["--check-config", "-c", path])
        eq(r.rc, 0, "--check-config -c %s (stderr: %s)" % (os.path.basename(path), r.stderr.strip()))
        eff = json.loads(r.stdout)
        names = [p["name"] for p in eff["probes"]]
        eq(names, [p["name"] for p in src["probes"]], "%s probe names" % os.path.basename(path))
        kinds |= {p["type"] for p in src["probes"]}
        if "listen" in src:
            eq(src["listen"].rpartition(":")[2], "8081", "%s listen port" % path)
    for k in ("http", "websocket", "grpc"):
        assert k in kinds, "no example uses a %s probe" % k


# ---------------------------------------------------------------- man page

def test_manpage_renders_without_warnings():
    assert os.path.exists(MANPAGE), "docs/probed.8 is missing"
    r = subprocess.run(["groff", "-ww", "-z", "-man", "-Tutf8", MANPAGE],
                       capture_output=True, text=True)
    eq(r.returncode, 0, "groff exit status (%s)" % r.stderr)
    eq(r.stderr.strip(), "", "groff warnings")
    r = subprocess.run(["man", "--warnings", "-l", MANPAGE], capture_output=True, text=True,
                       env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80"))
    eq(r.returncode, 0, "man exit status (%s)" % r.stderr)
    eq(r.stderr.strip(), "", "man --warnings output")
    text = r.stdout
    for needle in ("--check-config", "PROBED_CONFIG", "PROBED_LISTEN", "PROBED_TARGET_PORT",
                   "/startup", "/livez", "/readyz", "/status", "/metrics", "SIGHUP", "SIGTERM",
                   "SIGUSR1", "EXIT STATUS"):
        assert needle in text, "the man page does not mention %s" % needle


def test_manpage_documents_help_options():
    r = run_probed(["--help"])
    eq(r.rc, 0, "probed --help exit status")
    opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", r.stdout + r.stderr))
    assert opts, "--help lists no long options: %r" % r.stdout
    with open(MANPAGE) as f:
        page = f.read().replace("\\-", "-").replace("\\fB", "").replace("\\fR", "") \
            .replace("\\fI", "")
    missing = sorted(o for o in opts if o not in page)
    assert not missing, "options in --help but not in docs/probed.8: %s" % ", ".join(missing)


if __name__ == "__main__":
    harness.main()
