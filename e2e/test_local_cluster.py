"""The local cluster itself (hack/cluster): isolation rules, DNS, storage, service routing.

The isolation checks read routes, sysctls, iptables rules and the CNI config; they never send a
packet towards a non-local address to prove anything. The other checks only talk between pods on
this machine's bridge.

Scenarios, in order:
  1. network isolation, from the host's routing table and firewall rules;
  2. a pod's own routing table holds no default route (read from /proc/net/route);
  3. postgres:15 reached from another pod through a Service name resolved by cluster DNS,
     and cluster DNS refuses names outside the cluster;
  4. the default StorageClass provisions a local volume and deletes it with its claim.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import LOCAL_RUN, Kubectl

POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
SERVICE_CIDR = "10.96.0.0/16"
BRIDGE = "dbm0"
CHAIN = "DBMIGRATE-FWD"


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def default_route_iface() -> str | None:
    routes = json.loads(sh("ip", "-j", "-4", "route", "show", "default"))
    return routes[0]["dev"] if routes else None


# -- 1. isolation, read from the host -------------------------------------------------------


@pytest.mark.localcluster
def test_forward_chain_drops_pod_traffic_towards_the_outside(local_cluster: Kubectl) -> None:
    """Step 1a: our chain is jumped to first in filter and mangle FORWARD, and drops pod-CIDR
    traffic to the external interface and to anything but the bridge."""
    ext = default_route_iface()
    for table in ("filter", "mangle"):
        forward = sh("iptables", "-t", table, "-S", "FORWARD").splitlines()
        jumps = [r for r in forward if r.startswith("-A FORWARD")]
        assert jumps and jumps[0] == f"-A FORWARD -j {CHAIN}", f"{table} FORWARD: {jumps}"
        chain = sh("iptables", "-t", table, "-S", CHAIN)
        assert f"-A {CHAIN} -s {POD_CIDR} ! -o {BRIDGE} " in chain and "-j DROP" in chain, chain
        assert f"-A {CHAIN} -i {BRIDGE} ! -o {BRIDGE} " in chain, chain
        if ext:
            assert f"-A {CHAIN} -s {POD_CIDR} -o {ext} " in chain, chain
        # nothing in our chain accepts anything
        assert "-j ACCEPT" not in chain


@pytest.mark.localcluster
def test_no_outward_masquerade(local_cluster: Kubectl) -> None:
    """Step 1b: no NAT rule rewrites pod traffic to leave through another interface: no CNI
    masquerade chains (ipMasq false) and every MASQUERADE/SNAT is kube-proxy's mark-based one."""
    nat = sh("iptables", "-t", "nat", "-S").splitlines()
    assert not [r for r in nat if "CNI-" in r], "the CNI bridge masquerades (ipMasq must be false)"
    for rule in nat:
        if "-j MASQUERADE" in rule or "-j SNAT" in rule:
            # kube-proxy's only masquerade: packets it marked itself (service hairpin / external
            # clients of a service), all of which are DNATed to endpoints on this machine.
            assert rule.startswith("-A KUBE-POSTROUTING"), rule
    conflist = json.loads((LOCAL_RUN / "cni/net.d/10-dbmigrate.conflist").read_text())
    bridge = next(p for p in conflist["plugins"] if p["type"] == "bridge")
    assert bridge["ipMasq"] is False
    # pods get routes to the cluster and service CIDRs only: no default route
    assert {r["dst"] for r in bridge["ipam"]["routes"]} == {str(POD_CIDR), SERVICE_CIDR}


@pytest.mark.localcluster
def test_service_cidr_is_routed_onto_the_bridge(local_cluster: Kubectl) -> None:
    """Step 1c: an address of the service CIDR never follows the default route, even without
    kube-proxy's rules; the node IP is the bridge's, not the external interface's."""
    routes = json.loads(sh("ip", "-j", "-4", "route", "show", SERVICE_CIDR))
    assert routes and routes[0]["dev"] == BRIDGE, routes
    get = json.loads(sh("ip", "-j", "route", "get", "10.96.0.1"))  # a lookup: sends nothing
    assert get[0]["dev"] == BRIDGE, get
    node = local_cluster.json("get", "nodes")["items"][0]
    addrs = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert ipaddress.ip_address(addrs["InternalIP"]) in POD_CIDR, addrs
    assert "ExternalIP" not in addrs


@pytest.mark.localcluster
def test_ipv6_is_not_forwarded_from_the_bridge(local_cluster: Kubectl) -> None:
    chain = sh("ip6tables", "-S", CHAIN)
    assert f"-A {CHAIN} -i {BRIDGE} -j DROP" in chain
    assert Path(f"/proc/sys/net/ipv6/conf/{BRIDGE}/disable_ipv6").read_text().strip() == "1"


# -- 2..4. pods ------------------------------------------------------------------------------

PG_POD = """
apiVersion: v1
kind: Pod
metadata: {name: pg, labels: {app: pg}}
spec:
  containers:
  - name: postgres
    image: postgres:15
    imagePullPolicy: Never
    env:
    - {name: POSTGRES_PASSWORD, value: e2e-secret}
    - {name: POSTGRES_DB, value: smoke}
    ports: [{containerPort: 5432}]
    readinessProbe:
      exec: {command: [pg_isready, -U, postgres, -h, 127.0.0.1]}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: pg}
spec:
  selector: {app: pg}
  ports: [{port: 5432, targetPort: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: postgres:15
    imagePullPolicy: Never
    command: [sleep, infinity]
"""


@pytest.fixture
def pg_pods(local_cluster: Kubectl, ns: str) -> str:
    local_cluster.apply(PG_POD, ns)
    local_cluster.wait("pod/pg", "condition=Ready", ns, timeout=180)
    local_cluster.wait("pod/client", "condition=Ready", ns, timeout=120)
    return ns


@pytest.mark.localcluster
def test_pod_has_no_default_route(local_cluster: Kubectl, pg_pods: str) -> None:
    """Step 2: the pod's routing table (read, not probed) has no 0.0.0.0/0 entry."""
    table = local_cluster.exec(pg_pods, "client", "cat", "/proc/net/route").splitlines()[1:]
    dests = {line.split()[1] for line in table if line.strip()}
    assert "00000000" not in dests, table


@pytest.mark.localcluster
def test_postgres_reachable_through_service_name(local_cluster: Kubectl, pg_pods: str) -> None:
    """Step 3: cluster DNS resolves the Service; a second pod connects through it."""
    ns = pg_pods
    host = f"pg.{ns}.svc.cluster.local"
    resolved = local_cluster.exec(ns, "client", "getent", "hosts", host).split()
    svc_ip = local_cluster.json("-n", ns, "get", "service", "pg")["spec"]["clusterIP"]
    assert resolved[0] == svc_ip
    deadline = time.monotonic() + 60
    while True:
        out = local_cluster.run(
            "-n",
            ns,
            "exec",
            "client",
            "--",
            "env",
            "PGPASSWORD=e2e-secret",
            "PGCONNECT_TIMEOUT=5",
            "psql",
            "-h",
            f"pg.{ns}",
            "-U",
            "postgres",
            "-d",
            "smoke",
            "-tAc",
            "select current_database(), version()",
            check=False,
        )
        if out.startswith("smoke|PostgreSQL 15"):
            break
        assert time.monotonic() < deadline, out
        time.sleep(1)
    # the short name works through the pod's search path too, and the server runs as uid 999
    assert local_cluster.exec(ns, "pg", "id", "-u", "postgres").strip() == "999"


@pytest.mark.localcluster
def test_cluster_dns_answers_cluster_names_only(local_cluster: Kubectl, pg_pods: str) -> None:
    """Step 3b: a name outside the cluster does not resolve (CoreDNS has no forward plugin);
    the query goes to the CoreDNS pod on this machine and stops there."""
    r = subprocess.run(
        [
            local_cluster.binary,
            "--kubeconfig",
            local_cluster.kubeconfig,
            "-n",
            pg_pods,
            "exec",
            "client",
            "--",
            "getent",
            "hosts",
            "example.com.",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and r.stdout.strip() == "", r.stdout


PVC_POD = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsUser: 999, runAsGroup: 999, fsGroup: 999}
  containers:
  - name: w
    image: postgres:15
    imagePullPolicy: Never
    command: [sh, -c, "echo hello > /data/file && sleep infinity"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
"""


@pytest.mark.localcluster
def test_default_storageclass_provisions_and_deletes(local_cluster: Kubectl, ns: str) -> None:
    """Step 4: a claim without a class gets a local volume from the default class; deleting
    the claim deletes the directory."""
    local_cluster.apply(PVC_POD, ns)
    local_cluster.wait("pod/writer", "condition=Ready", ns, timeout=120)
    pvc = local_cluster.json("-n", ns, "get", "pvc", "data")
    assert pvc["status"]["phase"] == "Bound"
    pv = local_cluster.json("get", "pv", pvc["spec"]["volumeName"])
    path = Path(pv["spec"]["local"]["path"])
    deadline = time.monotonic() + 30
    while not (path / "file").exists():
        assert time.monotonic() < deadline, f"{path}/file never appeared"
        time.sleep(0.5)
    assert (path / "file").read_text() == "hello\n"
    local_cluster.run("-n", ns, "delete", "pod", "writer", "--grace-period=1")
    local_cluster.run("-n", ns, "delete", "pvc", "data")
    deadline = time.monotonic() + 60
    while path.exists():
        assert time.monotonic() < deadline, f"{path} not deleted with its claim"
        time.sleep(0.5)


def test_cluster_answers(cluster: Kubectl) -> None:
    """Any cluster: one Ready node, kube-dns endpoints, a default StorageClass."""
    nodes = cluster.json("get", "nodes")["items"]
    assert nodes
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True"
    classes = cluster.json("get", "storageclasses")["items"]
    assert any(
        c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"
        for c in classes
    )
    # cluster DNS is the kube-dns Service on the local cluster as on kind
    assert cluster.run("-n", "kube-system", "get", "service", "kube-dns", "-o", "name", check=False).strip()
