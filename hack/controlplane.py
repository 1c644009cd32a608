"""An embedded Kubernetes control plane on loopback: etcd + kube-apiserver + kube-controller-manager.

Used by the integration tests (as a pytest session fixture) and by `make run` (when no cluster
answers through $KUBECONFIG). Standard library only, so it runs before any venv exists.

Steps, in order:
  1. Find the binaries (`hack/k8s-bins.sh`: $KUBEBUILDER_ASSETS or a cached Go build).
  2. Make a work dir: a service-account signing key (openssl), a static admin token, free ports.
  3. Start etcd, wait for /health.
  4. Start kube-apiserver (RBAC, ServiceAccount tokens, default admission incl.
     ValidatingAdmissionPolicy), wait for /readyz.
  5. Start kube-controller-manager (garbage collector, StatefulSet, Job, ServiceAccount ...).
  6. Write an admin kubeconfig.
`stop()` terminates the three processes (TERM, then KILL) and keeps the logs for diagnosis.

CLI: `python hack/controlplane.py up --dir DIR` runs in the foreground until interrupted.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HACK = Path(__file__).resolve().parent
SERVICE_CIDR = "10.96.0.0/16"


def stop_process(proc: subprocess.Popen[bytes] | None, kill: bool = False, timeout: float = 20) -> None:
    """End a child process: SIGKILL at once (kill=True: a crash) or SIGTERM, then SIGKILL after
    `timeout` seconds; reaped either way."""
    if proc is None or proc.poll() is not None:
        return
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def k8s_bin_dir() -> Path:
    """Build (or find) the pinned binaries; the script prints the directory last."""
    out = subprocess.run(
        ["bash", str(HACK / "k8s-bins.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


class ControlPlane:
    def __init__(self, workdir: Path | None = None, bin_dir: Path | None = None) -> None:
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="dbmigrate-cp-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.bin = bin_dir or k8s_bin_dir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.token = secrets.token_hex(16)
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.api_port = free_port()
        self.kcm_port = free_port()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> ControlPlane:
        try:
            self._prepare()
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig(self.kubeconfig, token=self.token)
            self._start_controller_manager()
        except Exception:
            self.print_logs()
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            p = self.procs[name]
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def print_logs(self, tail: int = 60) -> None:
        for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
            log = self.dir / f"{name}.log"
            if log.exists():
                lines = log.read_text(errors="replace").splitlines()[-tail:]
                print(f"----- {name} (last {len(lines)} lines of {log}) -----", file=sys.stderr)
                print("\n".join(lines), file=sys.stderr)

    # -- steps -----------------------------------------------------------------------------
    def _prepare(self) -> None:
        key = self.dir / "sa.key"
        if not key.exists():
            subprocess.run(
                ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
            )
            subprocess.run(
                ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(self.dir / "sa.pub")],
                check=True,
                capture_output=True,
            )
        # A static token for the admin (system:masters) keeps the loopback setup free of a PKI.
        (self.dir / "tokens.csv").write_text(f'{self.token},admin,admin-uid,"system:masters"\n')
        (self.dir / "certs").mkdir(exist_ok=True)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        self.procs[name] = subprocess.Popen(
            [str(self.bin / name), *args], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait(self, name: str, check: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        last = ""
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}; see {self.dir}")
            try:
                req = urllib.request.Request(check, headers={"Authorization": f"Bearer {self.token}"})  # noqa: S310
                with urllib.request.urlopen(req, timeout=2, context=ctx) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except Exception as e:  # not up yet: keep polling until the deadline
                last = str(e)
            time.sleep(0.25)
        raise TimeoutError(f"{name} not ready after {timeout}s ({last}); logs in {self.dir}")

    def _start_etcd(self) -> None:
        data = self.dir / "etcd"
        self._spawn("etcd", [
            f"--data-dir={data}",
            f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{self.etcd_peer_port}",
            "--unsafe-no-fsync",  # throw-away test data: durability buys nothing here
            "--log-level=warn",
        ])
        self._wait("etcd", f"http://127.0.0.1:{self.etcd_port}/health")

    def _start_apiserver(self) -> None:
        self._spawn("kube-apiserver", [
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--cert-dir={self.dir / 'certs'}",
            f"--token-auth-file={self.dir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.dir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.dir / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=false",
            "--enable-priority-and-fairness=false",
            "--v=1",
        ])
        self._wait("kube-apiserver", f"{self.url}/readyz", timeout=90)

    def _start_controller_manager(self) -> None:
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.kcm_port}",
            "--leader-elect=false",
            f"--service-account-private-key-file={self.dir / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The node-facing controllers have nothing to do without nodes.
            "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service",
            "--v=1",
        ])

    def _write_kubeconfig(self, path: Path, token: str, namespace: str = "default") -> None:
        # JSON is valid YAML; kubectl, kopf and the Python client all read it.
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {
                "server": self.url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "local", "context": {
                "cluster": "local", "user": "user", "namespace": namespace}}],
            "current-context": "local",
        }
        path.write_text(json.dumps(cfg, indent=1))
        path.chmod(0o600)

    def kubeconfig_for_token(self, path: Path, token: str) -> Path:
        """A kubeconfig for another identity (e.g. the operator's ServiceAccount)."""
        self._write_kubeconfig(path, token)
        return path

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [str(self.bin / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            check=False, capture_output=True, text=True, input=input,
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({r.returncode}):\n{r.stderr or r.stdout}")
        return r


def _cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["up"])
    ap.add_argument("--dir", type=Path, required=True, help="work dir (kubeconfig, logs, etcd data)")
    ap.add_argument("--kubeconfig-out", type=Path, help="also copy the admin kubeconfig here")
    args = ap.parse_args()
    cp = ControlPlane(args.dir)
    t0 = time.monotonic()
    cp.start()
    if args.kubeconfig_out:
        shutil.copy(cp.kubeconfig, args.kubeconfig_out)
    print(f"control plane ready in {time.monotonic() - t0:.1f}s: {cp.url}", flush=True)
    print(f"export KUBECONFIG={args.kubeconfig_out or cp.kubeconfig}", flush=True)
    stop = False

    def _term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    while not stop:
        for name, p in cp.procs.items():
            if p.poll() is not None:
                print(f"{name} exited ({p.returncode}); logs in {cp.dir}", file=sys.stderr)
                stop = True
        time.sleep(1)
    cp.stop()


if __name__ == "__main__":
    _cli()
