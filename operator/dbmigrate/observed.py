"""What the operator saw in the cluster, as plain data (built by kube.py, read by the planner).

Secret values never enter these structures: only the key names of the credentials Secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .podstatus import PodProblem
from .redact import redact


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    image: str
    # {"requests": {"cpu": "500m", ...}, "limits": {...}}: what the container asks for.
    resources: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class StatefulSetInfo:
    name: str
    containers: tuple[ContainerInfo, ...]
    pod_labels: dict[str, str] = field(default_factory=dict)
    # spec.selector.matchLabels: exactly this StatefulSet's pods (the source Service's selector
    # moves to the new server at the point of no return; this one never does).
    selector: dict[str, str] = field(default_factory=dict)
    replicas: int = 1
    ready_replicas: int = 0
    # Requested size of the first volumeClaimTemplate ("20Gi"), used to size the target.
    volume_size: str | None = None
    storage_class_name: str | None = None


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    selector: dict[str, str]
    ports: tuple[int, ...]
    # port -> targetPort (a number or a container port name), as the Service maps them.
    target_ports: dict[int, int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretInfo:
    name: str
    keys: frozenset[str]


@dataclass(frozen=True)
class SourceObservation:
    """The three source objects; None means not found."""

    namespace: str
    statefulset: StatefulSetInfo | None
    service: ServiceInfo | None
    secret: SecretInfo | None


@dataclass(frozen=True)
class JobObservation:
    """The copy Job: `result` is the JSON its pod left in the termination message."""

    active: int = 0
    succeeded: bool = False
    failed: bool = False
    failure: str = ""
    result: dict[str, object] | None = None
    # Why its running pod does not start (image, inputs, scheduling), while the Job is active.
    pod_problem: PodProblem | None = None
    # While the Job is active after a failed attempt (its backoff retries): what that attempt
    # reported, e.g. a source without room for the copy's connections.
    last_attempt: dict[str, object] | None = None

    @property
    def retrying(self) -> str:
        """Why the last attempt failed, fit for status ("" when none did, or it said nothing)."""
        return redact(str((self.last_attempt or {}).get("error") or ""))

    @property
    def error(self) -> str:
        """Why the Job failed, fit for status and events: its own report (redacted again: an
        older worker image may have written it), else the Job's Failed condition; "" if neither."""
        return redact(str((self.result or {}).get("error") or self.failure or ""))


@dataclass(frozen=True)
class TargetObservation:
    """The target children Provisioning creates; `present` holds the kinds found."""

    present: frozenset[str] = frozenset()
    ready_replicas: int = 0
    job: JobObservation | None = None
    smoke_job: JobObservation | None = None
    # Bytes in the target's databases (progress while copying); None when not measured.
    bytes_copied: int | None = None
    # The wal_level the StatefulSet's server command line sets, and whether its pod runs the
    # current template (a changed command line restarts the server).
    wal_level: str | None = None
    rolled_out: bool = True
    # Why its pod is not ready, when its status says (podstatus.py).
    pod_problem: PodProblem | None = None

    @property
    def complete(self) -> bool:
        return {"Secret", "Service", "Service/headless", "NetworkPolicy", "StatefulSet"} <= self.present


@dataclass(frozen=True)
class ReplicationObservation:
    """Logical replication of every source database into the target, as last measured."""

    databases: int = 0
    subscribed: int = 0          # databases whose subscription exists
    initial_sync_done: bool = False
    lag_bytes: int = 0
    lag_seconds: float = 0.0
    # The initial copy: tables done of all, bytes in the target databases (status.progress).
    tables_synced: int = 0
    tables_total: int = 0
    bytes_copied: int = 0


@dataclass(frozen=True)
class ExecuteObservation:
    """What an execute needs to see besides the target: the schema Job, the source Service's
    selector (the repoint is the point of no return) and replication."""

    schema_job: JobObservation | None = None
    service_selector: dict[str, str] = field(default_factory=dict)
    replication: ReplicationObservation | None = None
    # The Migration carries the approve-switchover annotation (spec.execute.switchover=Manual).
    switchover_approved: bool = False


@dataclass(frozen=True)
class PeerMigration:
    """Another Migration of the same namespace (for the one-active-Migration-per-source rule)."""

    name: str
    source: str
    phase: str
    created: str  # RFC 3339, sorts chronologically
    target_version: str = ""
    test_passed_at: str = ""  # when its test reached Ready ("" if never)
