"""A real single-node Kubernetes cluster for the tests, from the binaries ./scripts/ensure-node.sh caches.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) runs on the host. The node
(containerd, the kubelet, kube-proxy in iptables mode and CoreDNS as a process) runs in a network namespace of
its own, joined to the host by a veth pair with private addresses, and in a mount namespace of its own, so that
nothing the node mounts (image layers, volumes, pods' network namespaces) shows on the host. The kernel
settings the kubelet insists on (``vm.overcommit_memory=1``, ``kernel.panic=10``, ...) are read there from
files bound over ``/proc/sys`` instead of being written to the host's kernel. Pods' cgroups live under a cgroup
root of their own. The host gets routes to the pod and service ranges through the veth (so a test reaches a
Service's cluster IP directly); they go with the veth. Teardown removes every one of these.

Needs root, iproute2, util-linux (nsenter, unshare, findmnt), iptables, conntrack, runc and the CNI plugins
(./scripts/ensure-node.sh installs the Debian packages).
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from tests.servers import (
    K8S_BIN_DIR_ENV,
    _log_tail,
    _process,
    _wait_ok,
    _write_rsa_key,
    etcd_command,
    free_port,
    kubernetes_bin_dir,
)

PAUSE_IMAGE = "registry.k8s.io/pause:3.10.2"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/24"
DNS_IP = "10.96.0.10"
CNI_BIN_DIR = Path("/usr/lib/cni")
RUNC = Path("/usr/sbin/runc")
# What the kubelet's setupKernelTunables wants; those that differ on the host are faked in the node's mount ns.
KERNEL_TUNABLES = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
NODE_BINARIES = (
    "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
    "containerd", "containerd-shim-runc-v2", "ctr", "crictl", "coredns", "pause.tar",
)  # fmt: skip
USERS = ("admin", "node", "controller-manager", "scheduler", "proxy")

Log = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class NodeCluster:
    """A running single-node cluster.

    Attributes:
        url: The API server, ``https://<host veth address>:PORT``.
        token: Bearer token of a user in ``system:masters``.
        ca_file: PEM bundle the API server's self-signed certificate verifies against.
        kubeconfig: An admin kubeconfig (for kubectl and helm).
        node_name: The node's name.
        node_ip: The node's address (the netns side of the veth).
        netns: The node's network namespace (``/run/netns/<netns>``).
        mount_ns: The node's mount namespace (a bind-mounted nsfs file).
        containerd_socket: containerd's gRPC socket (``ctr``, ``crictl``).
        bin_dir: Where the binaries are.
        timings: Seconds from the start to each milestone (``apiserver``, ``containerd``, ``node_ready``,
            ``ready``).
    """

    url: str
    token: str
    ca_file: Path
    kubeconfig: Path
    node_name: str
    node_ip: str
    netns: str
    mount_ns: Path
    containerd_socket: Path
    bin_dir: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def host_ip(self) -> str:
        """The host's veth address, which pods reach (the API server listens there)."""
        return str(urlsplit(self.url).hostname)

    def in_node(self, *command: str) -> list[str]:
        """``command`` prefixed to run in the node's network and mount namespaces."""
        return _in_node(self.mount_ns, self.netns, list(command))

    def volume_dir(self, name: str) -> Path:
        """A new folder on the node for a hostPath volume, writable by any pod's user (as a fresh disk would be)."""
        folder = self.containerd_socket.parent / "volumes" / name
        folder.mkdir(parents=True)
        folder.chmod(0o777)
        return folder

    def import_docker_image(self, image: str) -> None:
        """Copy an image from the local Docker engine (``docker save``) into the node's containerd, unless it holds it.

        Args:
            image: A tag the Docker engine has, e.g. ``driftpilot-components:0.1.0``.

        Raises:
            RuntimeError: ``docker save`` or ``ctr images import`` failed.
        """
        docker_id = _run("docker", "image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
        crictl = [str(self.bin_dir / "crictl"), "--image-endpoint", f"unix://{self.containerd_socket}"]
        held = _run(*crictl, "inspecti", "--output", "json", image, check=False)
        if held.returncode == 0 and json.loads(held.stdout)["status"]["id"] == docker_id:
            return
        ctr = [str(self.bin_dir / "ctr"), "--address", str(self.containerd_socket), "-n", "k8s.io"]
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        assert save.stdout is not None
        try:
            done = subprocess.run([*ctr, "images", "import", "-"], stdin=save.stdout, capture_output=True, timeout=600)
        finally:
            save.stdout.close()
            save.wait(timeout=60)
        if save.returncode != 0 or done.returncode != 0:
            raise RuntimeError(f"importing {image}: docker save {save.returncode}, ctr {done.stderr.decode()}")


@contextmanager
def run_node_cluster(work_dir: Path, *, timeout: float = 240.0) -> Iterator[NodeCluster]:
    """Run a single-node Kubernetes cluster until the block exits, then remove every trace of it.

    Args:
        work_dir: Empty folder for the logs, certificates, tokens, kubeconfigs and etcd's data (the node's own
            state lives in a short ``/tmp/n.*`` folder: containerd's shim sockets need short paths).
        timeout: Seconds to wait for the whole cluster: node Ready, kube-proxy and CoreDNS serving, the
            default ServiceAccount made.

    Yields:
        The cluster: its API server, an admin token and kubeconfig, the node and its namespaces.

    Raises:
        PermissionError: Not root.
        FileNotFoundError: A binary or tool is missing; the message says how to get it.
        RuntimeError: A part exited or was not ready in time; the message ends with its log.
    """
    start = time.monotonic()
    deadline = start + timeout
    bin_dir = kubernetes_bin_dir()
    _check_prerequisites(bin_dir)
    name = f"driftpilot-{secrets.token_hex(4)}"
    teardown_log = work_dir / "teardown.log"

    def log(message: str) -> None:
        with teardown_log.open("a") as out:
            out.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    timings: dict[str, float] = {}
    with ExitStack() as stack:
        short = Path(tempfile.mkdtemp(prefix="n.", dir="/tmp"))
        stack.callback(shutil.rmtree, short, ignore_errors=True)
        host_ip, node_ip = stack.enter_context(_node_network(name, f"dp{name[-8:]}", log))
        stack.enter_context(_cgroup_root(name, log))
        mount_ns = stack.enter_context(_mount_namespace(short, log))
        node = _Node(name, name, node_ip, mount_ns, bin_dir, short, work_dir, deadline)

        url, kubeconfigs = stack.enter_context(_control_plane(node, host_ip))
        timings["apiserver"] = time.monotonic() - start
        ca_file = work_dir / "certs" / "apiserver.crt"
        admin = _Api(url, _token(kubeconfigs["admin"]), ca_file)

        stack.enter_context(_containerd(node, log))
        timings["containerd"] = time.monotonic() - start
        stack.enter_context(_kubelet(node, kubeconfigs["node"], admin))
        timings["node_ready"] = time.monotonic() - start
        stack.enter_context(_kube_proxy(node, kubeconfigs["proxy"]))
        stack.enter_context(_coredns(node, kubeconfigs["admin"], admin))
        node.wait_for(
            "the default ServiceAccount",
            lambda: admin.get("/api/v1/namespaces/default/serviceaccounts/default").ok,
            [work_dir / "kube-controller-manager.log"],
        )
        timings["ready"] = time.monotonic() - start
        stack.callback(lambda: log("teardown starts"))
        yield NodeCluster(
            url=url, token=admin.token, ca_file=ca_file, kubeconfig=kubeconfigs["admin"], node_name=name,
            node_ip=node_ip, netns=name, mount_ns=mount_ns, containerd_socket=short / "containerd.sock",
            bin_dir=bin_dir, timings=timings,
        )  # fmt: skip


@dataclass(frozen=True)
class _Node:
    """What the node's parts share while they start."""

    name: str
    netns: str
    ip: str
    mount_ns: Path
    bin_dir: Path
    short: Path  # containerd's root, state and sockets; the kubelet's root; pods' logs
    work_dir: Path  # configurations and logs
    deadline: float

    def command(self, binary: str, *args: str) -> list[str]:
        return _in_node(self.mount_ns, self.netns, [str(self.bin_dir / binary), *args])

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"}

    def start(self, stack: ExitStack, binary: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        """Start ``binary`` in the node's namespaces with its output in ``<binary>.log``; stop it on exit."""
        log = self.work_dir / f"{binary}.log"
        return stack.enter_context(_process(self.command(binary, *args), log, self.env)), log

    def wait_for(self, what: str, check: Callable[[], bool], logs: list[Path]) -> None:
        """Poll ``check`` until it holds; past the deadline, fail with the tails of ``logs``."""
        while time.monotonic() < self.deadline:
            with suppress(OSError, ValueError, KeyError):
                if check():
                    return
            time.sleep(0.5)
        tails = "\n".join(f"--- {log}:\n{_log_tail(log, 25)}" for log in logs)
        raise RuntimeError(f"{what} not reached in time\n{tails}")


@dataclass(frozen=True)
class _Api:
    url: str
    token: str
    ca_file: Path

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return requests.request(
            method, f"{self.url}{path}", json=body, headers={"Authorization": f"Bearer {self.token}"},
            verify=str(self.ca_file), timeout=10,
        )  # fmt: skip

    def get(self, path: str) -> requests.Response:
        return self._call("GET", path)

    def create(self, path: str, body: dict[str, Any]) -> None:
        response = self._call("POST", path, body)
        if response.status_code != 201:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")


def _in_node(mount_ns: Path, netns: str, command: list[str]) -> list[str]:
    return ["nsenter", f"--mount={mount_ns}", f"--net=/run/netns/{netns}", "--", *command]


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _check_prerequisites(bin_dir: Path) -> None:
    if os.geteuid() != 0:
        raise PermissionError("a node cluster needs root (network namespaces, mounts, cgroups)")
    for binary in NODE_BINARIES:
        if not (bin_dir / binary).is_file():
            raise FileNotFoundError(
                f"{binary} not found in {bin_dir}: run ./scripts/ensure-k8s.sh and ./scripts/ensure-node.sh "
                f"(or set {K8S_BIN_DIR_ENV} to the folder they print)"
            )
    for tool in ("ip", "nsenter", "unshare", "findmnt", "iptables", "conntrack"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            raise FileNotFoundError(f"{tool} not found: install iproute2, util-linux, iptables and conntrack")
    for needed in (RUNC, CNI_BIN_DIR / "bridge", CNI_BIN_DIR / "host-local", CNI_BIN_DIR / "portmap"):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} not found: ./scripts/ensure-node.sh installs runc and the CNI plugins")


@contextmanager
def _node_network(netns: str, veth: str, log: Log) -> Iterator[tuple[str, str]]:
    """A network namespace joined to the host by a veth pair; yields (host address, node address)."""
    routes = _run("ip", "-4", "route", "show").stdout
    for cidr in (POD_CIDR, SERVICE_CIDR):
        if cidr in routes:
            raise RuntimeError(f"the host already routes {cidr} (another node cluster running?): {routes}")
    host_ip, node_ip = _free_veth_addresses()
    _run("ip", "netns", "add", netns)
    try:
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", veth)
        _run("ip", "link", "set", veth, "up")
        for cidr in (POD_CIDR, SERVICE_CIDR):
            _run("ip", "route", "add", cidr, "via", node_ip, "dev", veth)
        _run("ip", "-n", netns, "link", "set", "lo", "up")
        _run("ip", "-n", netns, "addr", "add", f"{node_ip}/30", "dev", "eth0")
        _run("ip", "-n", netns, "link", "set", "eth0", "up")
        # No default route, so nothing leaves the machine; locally sent packets to a Service need a route
        # before kube-proxy's OUTPUT rules rewrite them.
        _run("ip", "-n", netns, "route", "add", SERVICE_CIDR, "dev", "eth0")
        for setting in ("net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"):
            _run("ip", "netns", "exec", netns, "sysctl", "-qw", setting)
        yield host_ip, node_ip
    finally:
        log(f"ip netns del {netns}; ip link del {veth}")
        _run("ip", "netns", "del", netns, check=False)
        if _run("ip", "link", "show", veth, check=False).returncode == 0:
            _run("ip", "link", "del", veth, check=False)


def _free_veth_addresses() -> tuple[str, str]:
    """Two addresses of a random 10.254.X.Y/30 no host interface uses: (host, node)."""
    used = _run("ip", "-4", "-o", "addr", "show").stdout
    for _ in range(100):
        prefix, base = f"10.254.{secrets.randbelow(256)}.", secrets.randbelow(64) * 4
        if not any(f"{prefix}{base + i}/" in used for i in range(4)):
            return f"{prefix}{base + 1}", f"{prefix}{base + 2}"
    raise RuntimeError("no free /30 in 10.254.0.0/16")


@contextmanager
def _cgroup_root(name: str, log: Log) -> Iterator[None]:
    """A cgroup ``/<name>`` in every mounted hierarchy for the pods; on exit, kill what is left and remove it."""
    made = []
    try:
        for hierarchy in _cgroup_hierarchies():
            path = hierarchy / name
            path.mkdir()
            made.append(path)
            if (hierarchy / "cpuset.cpus").exists():  # a new v1 cpuset has no cpus or memory nodes until told
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((hierarchy / knob).read_text())
        yield
    finally:
        log(f"removing the cgroups {name}")
        _remove_cgroups(made, log)


def _cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies (every v1 controller's, and the v2 one)."""
    mounts = (line.split() for line in Path("/proc/self/mounts").read_text().splitlines())
    return [Path(target) for _, target, fstype, *_ in mounts if fstype in ("cgroup", "cgroup2")]


def _remove_cgroups(paths: list[Path], log: Log) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pids = {int(pid) for path in paths for procs in path.rglob("cgroup.procs") for pid in _read(procs).split()}
        if not pids:
            break
        log(f"killing {len(pids)} processes left in the pods' cgroups: {sorted(pids)}")
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
    for path in paths:
        for directory in [*sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), path]:
            try:
                directory.rmdir()
            except OSError as exc:
                log(f"rmdir {directory}: {exc}")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # a cgroup removed while we walk
        return ""


@contextmanager
def _mount_namespace(short: Path, log: Log) -> Iterator[Path]:
    """A mount namespace kept by a bind mount of its nsfs file, with the kubelet's kernel settings faked in it."""
    ns_dir = short / "ns"
    ns_dir.mkdir()
    _run("mount", "--bind", str(ns_dir), str(ns_dir))
    try:
        _run("mount", "--make-private", str(ns_dir))
        mount_ns = ns_dir / "mnt"
        mount_ns.touch()
        _run("unshare", f"--mount={mount_ns}", "--propagation", "private", "true")
        fakes = short / "sysctl"
        fakes.mkdir()
        for setting, wanted in KERNEL_TUNABLES.items():
            real = Path("/proc/sys") / setting
            if real.exists() and real.read_text().strip() != wanted:
                fake = fakes / setting.replace("/", ".")
                fake.write_text(wanted + "\n")
                _run("nsenter", f"--mount={mount_ns}", "--", "mount", "--bind", "-o", "ro", str(fake), str(real))
        yield mount_ns
    finally:
        targets = _run("findmnt", "-rn", "-o", "TARGET", check=False).stdout.splitlines()
        for target in sorted((t for t in targets if t.startswith(f"{short}/")), key=len, reverse=True):
            log(f"umount {target}")
            _run("umount", "-l", target, check=False)


@contextmanager
def _control_plane(node: _Node, host_ip: str) -> Iterator[tuple[str, dict[str, Path]]]:
    """etcd, the API server (on the host's veth address), the controller manager and the scheduler.

    Yields:
        The API server's URL and a kubeconfig per user of ``USERS``.
    """
    work_dir = node.work_dir
    tokens = {user: secrets.token_urlsafe(32) for user in USERS}
    (work_dir / "tokens.csv").write_text(
        f'{tokens["admin"]},driftpilot-admin,driftpilot-admin,"system:masters"\n'
        f'{tokens["node"]},system:node:{node.name},system:node:{node.name},"system:nodes"\n'
        f"{tokens['controller-manager']},system:kube-controller-manager,system:kube-controller-manager\n"
        f"{tokens['scheduler']},system:kube-scheduler,system:kube-scheduler\n"
        f"{tokens['proxy']},system:kube-proxy,system:kube-proxy\n"
    )
    sa_key = work_dir / "service-account.key"
    _write_rsa_key(sa_key)
    certs = work_dir / "certs"
    url = f"https://{host_ip}:{free_port()}"
    kubeconfigs = {user: _write_kubeconfig(work_dir / f"{user}.kubeconfig", url, certs / "apiserver.crt", user, token)
                   for user, token in tokens.items()}  # fmt: skip
    bin_dir = node.bin_dir
    with ExitStack() as stack:
        etcd, etcd_url = etcd_command(bin_dir / "etcd", work_dir / "etcd")
        etcd_process = stack.enter_context(_process(etcd, work_dir / "etcd.log"))
        _wait_ok("etcd", etcd_process, work_dir / "etcd.log", node.deadline,
                 lambda: requests.get(f"{etcd_url}/health", timeout=1))  # fmt: skip
        apiserver = [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={host_ip}",
            f"--advertise-address={host_ip}",
            f"--secure-port={url.rsplit(':', 1)[1]}",
            f"--cert-dir={certs}",
            f"--token-auth-file={work_dir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            # The node's name resolves nowhere: logs, exec and port-forward dial its InternalIP.
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
        ]
        apiserver_process = stack.enter_context(_process(apiserver, work_dir / "kube-apiserver.log"))
        admin = _Api(url, tokens["admin"], certs / "apiserver.crt")
        _wait_ok("kube-apiserver", apiserver_process, work_dir / "kube-apiserver.log", node.deadline,
                 lambda: admin.get("/readyz"))  # fmt: skip
        # The generated file holds the serving certificate and its CA; pods (kube-root-ca.crt) get the CA alone.
        root_ca = work_dir / "ca.crt"
        root_ca.write_text(_ca_certificates((certs / "apiserver.crt").read_text()))
        controller_manager = [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kubeconfigs['controller-manager']}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--leader-elect=false",
            f"--service-account-private-key-file={sa_key}",
            f"--root-ca-file={root_ca}",
            "--use-service-account-credentials",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cluster-name={node.name}",
        ]
        stack.enter_context(_process(controller_manager, work_dir / "kube-controller-manager.log"))
        scheduler = [str(bin_dir / "kube-scheduler"), f"--kubeconfig={kubeconfigs['scheduler']}"]
        scheduler += ["--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--leader-elect=false"]
        stack.enter_context(_process(scheduler, work_dir / "kube-scheduler.log"))
        yield url, kubeconfigs


def _write_kubeconfig(path: Path, server: str, ca_file: Path, user: str, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "driftpilot", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "driftpilot", "context": {"cluster": "driftpilot", "user": user}}],
        "current-context": "driftpilot",
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    path.chmod(0o600)
    return path


def _token(kubeconfig: Path) -> str:
    token: str = json.loads(kubeconfig.read_text())["users"][0]["user"]["token"]
    return token


def _ca_certificates(bundle: str) -> str:
    """The CA certificates of a PEM bundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cas = []
    for certificate in x509.load_pem_x509_certificates(bundle.encode()):
        with suppress(x509.ExtensionNotFound):
            if certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                cas.append(certificate.public_bytes(Encoding.PEM).decode())
    if not cas:
        raise RuntimeError("the API server's certificate bundle holds no CA certificate")
    return "".join(cas)


def _containerd_config(short: Path) -> str:
    return f"""version = 4
root = "{short}/root"
state = "{short}/state"
temp = "{short}/tmp"
[plugins]
  [plugins."io.containerd.server.v1.grpc"]
    address = "{short}/containerd.sock"
  [plugins."io.containerd.server.v1.ttrpc"]
    address = "{short}/containerd.sock.ttrpc"
  [plugins."io.containerd.server.v1.debug"]
    address = ""
  [plugins."io.containerd.server.v1.metrics"]
    address = ""
  [plugins."io.containerd.shim.v1.manager"]
    socket_dir = "{short}/s"
  [plugins."io.containerd.internal.v1.opt"]
    path = "{short}/opt"
  [plugins."io.containerd.nri.v1.nri"]
    disable = true
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = "{PAUSE_IMAGE}"
  [plugins."io.containerd.cri.v1.runtime"]
    netns_mounts_under_state_dir = true
    restrict_oom_score_adj = true
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = ["{CNI_BIN_DIR}"]
      conf_dir = "{short}/cni/net.d"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = "{RUNC}"
      Root = "{short}/runc"
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
"""


def _cni_config(short: Path) -> dict[str, Any]:
    ipam = {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]], "routes": [{"dst": "0.0.0.0/0"}]}
    bridge = {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True}
    plugins = [{**bridge, "ipam": {**ipam, "dataDir": str(short / "cni" / "ipam")}}]
    plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    return {"cniVersion": "1.0.0", "name": "driftpilot", "plugins": plugins}


@contextmanager
def _containerd(node: _Node, log: Log) -> Iterator[None]:
    """containerd with the CRI and the bridge CNI, the pause image imported; on exit, pods and shims removed."""
    short = node.short
    for sub in ("cni/net.d", "cni/ipam", "pod-logs", "kubelet"):
        (short / sub).mkdir(parents=True)
    (short / "containerd.toml").write_text(_containerd_config(short))
    (short / "cni" / "net.d" / "10-driftpilot.conflist").write_text(json.dumps(_cni_config(short), indent=2))
    socket = short / "containerd.sock"
    ctr = [str(node.bin_dir / "ctr"), "--address", str(socket), "-n", "k8s.io"]
    crictl = [str(node.bin_dir / "crictl"), "--runtime-endpoint", f"unix://{socket}", "--timeout", "30s"]
    with ExitStack() as stack:
        stack.callback(_kill_processes_mentioning, str(short), log)  # shims outlive containerd
        process, containerd_log = node.start(stack, "containerd", "--config", str(short / "containerd.toml"))

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"containerd exited with {process.returncode}:\n{_log_tail(containerd_log)}")
            return subprocess.run([*ctr, "version"], capture_output=True, timeout=5).returncode == 0

        node.wait_for("containerd", up, [containerd_log])

        def remove_pods() -> None:  # after the kubelet stopped, before containerd stops
            done = subprocess.run([*crictl, "rmp", "--force", "--all"], capture_output=True, text=True, timeout=120)
            log(f"crictl rmp --force --all: {done.returncode} {done.stdout.strip()} {done.stderr.strip()}")

        stack.callback(remove_pods)
        with (node.bin_dir / "pause.tar").open("rb") as stream:
            subprocess.run([*ctr, "images", "import", "-"], stdin=stream, check=True, capture_output=True, timeout=120)
        yield


def _kill_processes_mentioning(text: str, log: Log) -> None:
    """Stop processes whose command line holds ``text`` (a unique temporary path: only this cluster's)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _processes_mentioning(text)
        if not pids:
            return
        log(f"sending {sig.name} to leftover processes {pids}")
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(2)


def _processes_mentioning(text: str) -> list[int]:
    """Processes (but this one) whose command line holds ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


@contextmanager
def _kubelet(node: _Node, kubeconfig: Path, admin: _Api) -> Iterator[None]:
    """The kubelet, in the node's namespaces, until the node is Ready."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{node.name}",
        "containerRuntimeEndpoint": f"unix://{node.short / 'containerd.sock'}",
        "address": node.ip,
        "healthzBindAddress": node.ip,
        "readOnlyPort": 0,
        # Only the host reaches the node's address; the API server calls it without a client certificate.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [DNS_IP],
        "clusterDomain": "cluster.local",
        "resolvConf": "",
        "failSwapOn": False,
        "podLogsDir": str(node.short / "pod-logs"),
        # The host's disks are shared with everything else: evict on memory, not on disk use.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
    }
    config_file = node.work_dir / "kubelet.yaml"
    config_file.write_text(json.dumps(config, indent=2))
    with ExitStack() as stack:
        process, log = node.start(
            stack, "kubelet", f"--config={config_file}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={node.short / 'kubelet'}", f"--hostname-override={node.name}", f"--node-ip={node.ip}",
        )  # fmt: skip

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"kubelet exited with {process.returncode}:\n{_log_tail(log)}")
            response = admin.get(f"/api/v1/nodes/{node.name}")
            conditions = (response.json().get("status") or {}).get("conditions") or [] if response.ok else []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        node.wait_for("node Ready", ready, [log, node.work_dir / "containerd.log"])
        yield


@contextmanager
def _kube_proxy(node: _Node, kubeconfig: Path) -> Iterator[None]:
    """kube-proxy in iptables mode, in the node's network namespace, until its healthz answers."""
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": node.name,
        "clusterCIDR": POD_CIDR,
        # The conntrack table sizes are the host kernel's: leave them alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "nodePortAddresses": ["primary"],
        "healthzBindAddress": f"{node.ip}:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "oomScoreAdj": 0,
    }
    config_file = node.work_dir / "kube-proxy.yaml"
    config_file.write_text(json.dumps(config, indent=2))
    with ExitStack() as stack:
        process, log = node.start(stack, "kube-proxy", f"--config={config_file}")
        node.wait_for("kube-proxy healthz", _serving(process, log, f"http://{node.ip}:10256/healthz"), [log])
        yield


@contextmanager
def _coredns(node: _Node, kubeconfig: Path, admin: _Api) -> Iterator[None]:
    """CoreDNS as a process on the node's address, behind the ``kube-dns`` Service (one without a selector)."""
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
    service = {"metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns"}}}
    admin.create("/api/v1/namespaces/kube-system/services", {**service, "spec": {"clusterIP": DNS_IP, "ports": ports}})
    admin.create(
        "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
        {
            "metadata": {"name": "kube-dns-node", "labels": {"kubernetes.io/service-name": "kube-dns"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [node.ip], "conditions": {"ready": True}, "nodeName": node.name}],
            "ports": ports,
        },
    )
    corefile = node.work_dir / "Corefile"
    corefile.write_text(
        f""".:53 {{
    bind {node.ip}
    errors
    ready {node.ip}:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"""
    )
    with ExitStack() as stack:
        process, log = node.start(stack, "coredns", "-conf", str(corefile))
        node.wait_for("CoreDNS ready", _serving(process, log, f"http://{node.ip}:8181/ready"), [log])
        yield


def _serving(process: subprocess.Popen[bytes], log: Path, probe_url: str) -> Callable[[], bool]:
    def check() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{log.stem} exited with {process.returncode}:\n{_log_tail(log)}")
        return requests.get(probe_url, timeout=2).status_code == 200

    return check


def diagnosis(core: Any, namespace: str) -> str:
    """Pods' phases and container states, warning events and each container's last log lines in a namespace.

    Args:
        core: A ``kubernetes.client.CoreV1Api``.
        namespace: The namespace.
    """
    from kubernetes import client

    lines = []
    for pod in core.list_namespaced_pod(namespace).items:
        states = [
            f"{s.name}: ready={s.ready} restarts={s.restart_count} {s.state.to_dict()}"
            for s in pod.status.container_statuses or []
        ]
        lines.append(f"pod {pod.metadata.name} {pod.status.phase} {states}")
        for container in pod.spec.containers:
            try:
                log = core.read_namespaced_pod_log(
                    pod.metadata.name, namespace, container=container.name, tail_lines=15
                )
            except client.ApiException as error:
                log = f"(no log: {error.reason})"
            lines.append(f"--- {pod.metadata.name}/{container.name}:\n{log}")
    for event in core.list_namespaced_event(namespace).items:
        if event.type != "Normal":
            lines.append(
                f"event {event.involved_object.kind}/{event.involved_object.name}: {event.reason} {event.message}"
            )
    return "\n".join(lines)


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 120.0) -> T:
    """Poll ``probe`` (every half second, at most ``timeout`` seconds) until it returns something truthy.

    Raises:
        AssertionError: ``what`` did not happen in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := probe():
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def leftovers(cluster: NodeCluster) -> list[str]:
    """What a stopped cluster left on the host (empty when teardown removed everything)."""
    short = cluster.containerd_socket.parent
    found = []
    if Path("/run/netns", cluster.netns).exists():
        found.append(f"network namespace {cluster.netns}")
    if short.exists():
        found.append(f"folder {short}")
    mounts = _run("findmnt", "-rn", "-o", "TARGET").stdout.splitlines()
    found += [f"mount {target}" for target in mounts if target.startswith(f"{short}/")]
    routes = _run("ip", "-4", "route", "show").stdout
    found += [f"route to {cidr}" for cidr in (POD_CIDR, SERVICE_CIDR) if cidr in routes]
    found += [f"cgroup {h / cluster.node_name}" for h in _cgroup_hierarchies() if (h / cluster.node_name).exists()]
    found += [f"process {pid}" for pid in _processes_mentioning(str(short))]
    return found
