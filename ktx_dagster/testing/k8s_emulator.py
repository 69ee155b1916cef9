"""A small Kubernetes API emulator with a process "kubelet", for tests and laptops.

It serves a subset of the Kubernetes REST API over real HTTP on loopback, so the
official ``kubernetes`` Python client (and therefore dagster-k8s's
``DagsterKubernetesClient``, ``kubectl``-less scripts, etc.) can talk to it through a
generated kubeconfig. A built-in Job controller and "kubelet" turn every
``batch/v1`` Job into Pods and every Pod into a local subprocess.

Why not kmock's ``KubernetesEmulator``? It is an asyncio in-memory object store; it
has no label/field selectors, no server-set metadata (uid, resourceVersion), no
status/log subresources and no validation, and everything here would have to be
layered on top of it from inside its event loop. A threaded stdlib server with these
pieces built in is smaller and easier to reason about.

What it does
------------
* Resources: namespaces, pods (+ ``/status``, ``/log``, ``/eviction``), configmaps, secrets,
  serviceaccounts, services, persistentvolumeclaims, events (core/v1); jobs
  (+ ``/status``) (batch/v1); roles and rolebindings (rbac/v1, stored only).
* Verbs: get, list, watch (chunked stream, ``resourceVersion``, ``timeoutSeconds``),
  create, replace (PUT), patch (merge, strategic-as-merge, JSON patch), delete,
  deletecollection; ``labelSelector`` (equality and set-based) and ``fieldSelector``
  (dotted-path equality/inequality) on list/watch/deletecollection.
* Server-side metadata (uid, resourceVersion, creationTimestamp, generation) and a
  few validations a real API server performs: namespace must exist, names must be
  RFC 1123 (Jobs <= 63 chars), labels must be valid, containers need a name and an
  image, resource quantities must parse and requests must not exceed limits,
  409 on duplicates, 404 on missing objects.
* Job controller: creates Pods from ``spec.template`` (labels incl. ``job-name``,
  ``controller-uid`` and the ``batch.kubernetes.io/*`` ones, owner reference),
  honours ``parallelism``, ``completions``, ``completionMode: Indexed``
  (``JOB_COMPLETION_INDEX``), ``backoffLimit`` (a failed Pod is replaced by a new
  one until the limit is exceeded), ``activeDeadlineSeconds``, ``suspend`` and
  ``ttlSecondsAfterFinished``, ``podFailurePolicy`` (``onExitCodes``/``onPodConditions``;
  ``FailJob``, ``Ignore``, ``Count``); keeps ``status.active/ready/succeeded/failed``,
  ``startTime``/``completionTime`` and the ``Complete``/``Failed`` conditions; emits
  events. Deleting a Job orphans its Pods unless ``propagationPolicy`` is
  ``Background``/``Foreground`` (the batch/v1 default, as in a real cluster).
* Kubelet: every Pod (from a Job or created directly) runs its init containers
  and then its first container as a local subprocess: ``command + args`` (with
  ``$(VAR)`` expansion), env from ``value``/``configMapKeyRef``/``secretKeyRef``/
  ``fieldRef``/``resourceFieldRef`` and ``envFrom``. Output (stdout + stderr) is served
  on ``/api/v1/namespaces/{ns}/pods/{name}/log`` (``tailLines``, ``timestamps``,
  ``follow``, ``limitBytes``). Phase goes Pending -> Running -> Succeeded/Failed with
  ``containerStatuses[].state.terminated.exitCode``. A Pod that references a missing
  ConfigMap/Secret waits in ``CreateContainerConfigError`` until it appears, like a
  real kubelet.
* Disruptions: ``POST .../pods/{name}/eviction`` (policy/v1 Eviction, what ``kubectl
  drain`` sends) and :meth:`KubeEmulator.disrupt` (any reason: ``PreemptionByScheduler``,
  ``DeletionByTaintManager``, ...) give the pod the ``DisruptionTarget`` condition, SIGTERM
  then SIGKILL after the grace period, phase ``Failed``; the Job counts it, then the pod
  object is gone, as on a real cluster.
* Volumes are mapped to local directories under a per-Pod root: ``hostPath`` via the
  ``host_paths`` mapping (e.g. ``{"/mnt/data": "<repo>/data"}``; unmapped host paths
  get a scratch dir), ``configMap``/``secret`` are materialised as files (``items``
  and ``subPath`` supported), ``emptyDir`` and ``persistentVolumeClaim`` are scratch
  dirs. Since a local process cannot see ``/mnt/data``, env values, args and
  ``workingDir`` that are absolute paths at or under a ``mountPath`` (or a parent of
  one, like ``DAGSTER_HOME`` when only ``dagster.yaml`` is mounted) are rewritten to
  the Pod root, where every mount is a symlink to its local directory. Mount paths
  embedded in longer args (``sh -c "ls /mnt/data"``) are rewritten too; paths that a
  program builds itself at run time (``"/mnt" + "/data"``) are not.

Container pods (``runtime="docker"``)
------------------------------------
With a Docker daemon, each container of a Pod runs as a container of the Pod's image
(``ktx_dagster/testing/docker_pods.py``): memory and cpu limits become cgroup limits, so a
step over its memory limit is OOM-killed for real and its status says ``OOMKilled`` (exit
137); the security context applies (user, group, non-root, read-only root filesystem,
capabilities, no privilege escalation); every volume is a bind mount of the directory
prepared for it; env, ``workingDir``, ``command`` and ``args`` follow Kubernetes' rules, and
nothing of this machine's environment leaks in. An image that is not present leaves the Pod
waiting in ``ErrImageNeverPull`` (there is no registry). Containers use the host network, so
pods reach loopback services (the emulated API, PostgreSQL, S3) as the tests do. The limits
below that concern resources, images and isolation apply to the default ``runtime="process"``.

Limits (plainly)
----------------
* No scheduling, nodes, node selectors, tolerations, affinity or priorities: every
  Pod starts at once on "this machine". ``nodeName`` is ``emulator``.
* No resource enforcement: cpu/memory/GPU/ephemeral-storage requests and limits are
  validated and stored, never enforced; there is no OOM kill, no eviction of its own
  (only the Eviction API and ``disrupt``), and a
  ``nvidia.com/gpu`` request does not give the process a GPU.
* No images: the ``image`` field is required but ignored; no pulls, no
  ``imagePullPolicy``, no entrypoint. The command runs with *this* Python
  environment (the emulator prepends the running interpreter's ``bin`` directory to
  ``PATH`` so ``dagster`` resolves) and in ``cwd`` (default: the emulator's cwd).
* No isolation: no containers, namespaces, users, securityContext, network policy or
  service networking; pods share this machine's filesystem, network and processes.
  ``readOnlyRootFilesystem`` is not enforced.
* Only ``containers[0]`` runs (sidecars are ignored); ``restartPolicy`` other than
  ``Never`` is treated as ``Never`` (a failed container fails the Pod; the Job
  controller then creates a new Pod while within ``backoffLimit``).
* No RBAC or authentication: any token is accepted, Roles are stored only.
* No in-cluster config: pods get ``KUBECONFIG`` pointing at the emulator instead of a
  service-account token (``inject_kubeconfig=True``, the default).
* No admission webhooks, quotas, LimitRanges, ``podReplacementPolicy``, finalizer controllers or garbage collection beyond Job->Pod deletion.
* State lives in memory and is lost when the emulator stops.

Use ``python -m ktx_dagster.testing.k8s_emulator --kubeconfig /tmp/kubeconfig.yaml
--host-path /mnt/data=./data`` to run one in the foreground (e.g. to point a local
``dagster dev`` at it).
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import http.server
import itertools
import json
import os
import queue
import random
import re
import shutil
import signal
import socketserver
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from ktx_dagster.testing.k8s_rules import label_errors, name_errors

__all__ = ["KubeEmulator", "ApiError", "parse_label_selector", "match_label_selector"]

# plural -> (groupVersion, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "namespaces": ("v1", "Namespace", False),
    "pods": ("v1", "Pod", True),
    "configmaps": ("v1", "ConfigMap", True),
    "secrets": ("v1", "Secret", True),
    "serviceaccounts": ("v1", "ServiceAccount", True),
    "services": ("v1", "Service", True),
    "persistentvolumeclaims": ("v1", "PersistentVolumeClaim", True),
    "events": ("v1", "Event", True),
    "jobs": ("batch/v1", "Job", True),
    "roles": ("rbac.authorization.k8s.io/v1", "Role", True),
    "rolebindings": ("rbac.authorization.k8s.io/v1", "RoleBinding", True),
}
_SUBRESOURCES = {("pods", "status"), ("pods", "log"), ("pods", "eviction"), ("jobs", "status"), ("namespaces", "status")}
_DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_WATCH_HISTORY = 20000


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_precise() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rand_suffix(n: int = 5) -> str:
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


class ApiError(Exception):
    """An error rendered as a Kubernetes ``Status`` object."""

    REASONS = {
        400: "BadRequest",
        404: "NotFound",
        405: "MethodNotAllowed",
        409: "AlreadyExists",
        410: "Expired",
        422: "Invalid",
        500: "InternalError",
    }

    def __init__(self, code: int, message: str, reason: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or self.REASONS.get(code, "Unknown")

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


# --------------------------------------------------------------------------- selectors


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s+\((.*)\)$")


def parse_label_selector(selector: str | None) -> list[tuple[str, str, Any]]:
    """Parse ``a=b,c!=d,e in (x,y),!f,g`` into (key, op, value) requirements."""
    reqs: list[tuple[str, str, Any]] = []
    for part in _split_top_level(selector or ""):
        m = _SET_RE.match(part)
        if m:
            values = {v.strip() for v in m.group(3).split(",") if v.strip()}
            reqs.append((m.group(1), m.group(2), values))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), "!=", v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif part.startswith("!"):
            reqs.append((part[1:].strip(), "!exists", None))
        else:
            reqs.append((part, "exists", None))
    return reqs


def match_label_selector(labels: Mapping[str, str] | None, selector: str | None) -> bool:
    labels = labels or {}
    for key, op, value in parse_label_selector(selector):
        have = key in labels
        cur = labels.get(key)
        if op == "=" and cur != value:
            return False
        if op == "!=" and have and cur == value:
            return False
        if op == "in" and (not have or cur not in value):
            return False
        if op == "notin" and have and cur in value:
            return False
        if op == "exists" and not have:
            return False
        if op == "!exists" and have:
            return False
    return True


def _dig(obj: Any, dotted: str) -> Any:
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def match_field_selector(obj: Mapping[str, Any], selector: str | None) -> bool:
    for part in _split_top_level(selector or ""):
        if "!=" in part:
            k, v = part.split("!=", 1)
            if str(_dig(obj, k.strip()) or "") == v.strip():
                return False
        else:
            k, v = part.split("==", 1) if "==" in part else part.split("=", 1)
            if str(_dig(obj, k.strip()) or "") != v.strip():
                return False
    return True


# --------------------------------------------------------------------------- patches


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _json_pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def _json_patch(doc: Any, ops: list[Mapping[str, Any]]) -> Any:
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _json_pointer(op["path"])
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if cur != op.get("value"):
                raise ApiError(422, f"test operation failed at {op['path']}")
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                parent.pop(last, None)
        else:
            raise ApiError(422, f"unsupported JSON patch op {kind!r}")
    return doc


# --------------------------------------------------------------------------- quantities


def _parse_quantity(value: Any) -> Decimal:
    from kubernetes.utils.quantity import parse_quantity

    return parse_quantity(value)


def _resource_errors(container: Mapping[str, Any], where: str) -> list[str]:
    errors = []
    resources = container.get("resources") or {}
    parsed: dict[str, dict[str, Decimal]] = {}
    for section in ("requests", "limits"):
        parsed[section] = {}
        for name, qty in (resources.get(section) or {}).items():
            try:
                parsed[section][name] = _parse_quantity(qty)
            except Exception:
                errors.append(f"{where}.resources.{section}[{name}]: Invalid value: {qty!r}")
    for name, req in parsed["requests"].items():
        lim = parsed["limits"].get(name)
        if lim is not None and req > lim:
            errors.append(
                f"{where}.resources.requests[{name}]: Invalid value: "
                f"{resources['requests'][name]!r}: must be less than or equal to {name} limit"
            )
    return errors


# --------------------------------------------------------------------------- pod runtime


@dataclass
class _PodRuntime:
    key: tuple[str, str]
    lines: list[tuple[str, str]] = field(default_factory=list)  # (timestamp, line)
    proc: subprocess.Popen | None = None
    container: str | None = None  # the running container's name (runtime "docker")
    started: bool = False
    finished: bool = False
    deleted: bool = False
    disrupted: bool = False  # evicted or preempted: the kubelet must not start it any more
    cond: threading.Condition = field(default_factory=threading.Condition)


class KubeEmulator:
    """See the module docstring. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        workdir: str | None = None,
        *,
        host_paths: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        inherit_env: Iterable[str] = (
            "PATH",
            "HOME",
            "LANG",
            "LC_ALL",
            "TMPDIR",
            "PYTHONPATH",
            "VIRTUAL_ENV",
            "TZ",
        ),
        cwd: str | None = None,
        namespaces: Iterable[str] = (),
        inject_kubeconfig: bool = True,
        pod_start_delay: float = 0.0,
        max_termination_grace: float = 5.0,
        host: str = "127.0.0.1",
        port: int = 0,
        runtime: str = "process",
        docker: str = "docker",
        container_mounts: Iterable[tuple[str, str, bool]] = (),
    ):
        if runtime not in ("process", "docker"):
            raise ValueError(f"runtime={runtime!r}: 'process' (local processes) or 'docker' (containers)")
        self.runtime = runtime
        self.docker = docker
        # (local path, path in the container, read-only) added to every container pod
        self.container_mounts = tuple(container_mounts)
        self._own_workdir = workdir is None
        self.workdir = os.path.abspath(workdir or tempfile.mkdtemp(prefix="ktx-kube-emulator-"))
        os.makedirs(self.workdir, exist_ok=True)
        self.host_paths = {k.rstrip("/") or "/": os.path.abspath(v) for k, v in (host_paths or {}).items()}
        self.extra_env = dict(extra_env or {})
        self.inherit_env = tuple(inherit_env)
        self.cwd = os.path.abspath(cwd or os.getcwd())
        self.inject_kubeconfig = inject_kubeconfig
        self.pod_start_delay = pod_start_delay
        self.max_termination_grace = max_termination_grace
        self._host, self._port = host, port

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self._rv = itertools.count(1)
        self._last_rv = 0
        self._history: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, plural, type, obj)
        self._runtimes: dict[tuple[str, str], _PodRuntime] = {}
        # finished pods deleted while their Job lives on: job uid -> phase -> count
        self._gone_pods: dict[str, dict[str, int]] = {}
        # failed pods that a Job's podFailurePolicy Ignore rule matched: never counted
        self._ignored_pods: set[str] = set()
        self._work: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self.requests: list[tuple[str, str]] = []  # (method, path?query) log for assertions
        self.kubeconfig_path = os.path.join(self.workdir, "kubeconfig.yaml")
        for ns in (*_DEFAULT_NAMESPACES, *namespaces):
            self.ensure_namespace(ns)
        self.ensure_object("default", "serviceaccounts", {"metadata": {"name": "default"}})

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> KubeEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "emulator not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> KubeEmulator:
        handler = _make_handler(self)
        self._server = _Server((self._host, self._port), handler)
        for target, name in ((self._server.serve_forever, "http"), (self._controller_loop, "ctl")):
            t = threading.Thread(target=target, name=f"kube-emulator-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.write_kubeconfig(self.kubeconfig_path)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._changed.notify_all()
            runtimes = list(self._runtimes.values())
        for rt in runtimes:
            self._kill(rt, grace=0.5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._work.put(None)
        for t in self._threads:
            t.join(timeout=5)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "ktx-emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "ktx-emulator", "user": {"token": "emulator"}}],
            "contexts": [
                {
                    "name": "ktx-emulator",
                    "context": {
                        "cluster": "ktx-emulator",
                        "user": "ktx-emulator",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "ktx-emulator",
            "preferences": {},
        }

    def write_kubeconfig(self, path: str, namespace: str = "default") -> str:
        with open(path, "w") as f:
            yaml.safe_dump(self.kubeconfig(namespace), f)
        return path

    # ------------------------------------------------------------------ direct (test) API

    def ensure_namespace(self, name: str) -> dict[str, Any]:
        return self.ensure_object(None, "namespaces", {"metadata": {"name": name}})

    def ensure_object(self, namespace: str | None, plural: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            key = (plural, namespace, obj["metadata"]["name"])
            if key in self._objects:
                return copy.deepcopy(self._objects[key])
            return self.create(plural, namespace, obj)

    def list(self, plural: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._select(plural, namespace, label_selector, field_selector)]

    def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self._objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def jobs(self, namespace: str | None = None, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.list("jobs", namespace, label_selector)

    def pods(self, namespace: str | None = None, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.list("pods", namespace, label_selector)

    def pod_log(self, namespace: str, name: str) -> str:
        rt = self._runtimes.get((namespace, name))
        if rt is None:
            return ""
        with rt.cond:
            return "".join(line for _, line in rt.lines)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met within %.1fs" % timeout)
            time.sleep(interval)

    # ------------------------------------------------------------------ store primitives

    def _select(self, plural, namespace, label_selector=None, field_selector=None) -> list[dict[str, Any]]:
        out = []
        for (p, ns, _name), obj in sorted(self._objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])):
            if p != plural or (namespace is not None and ns != namespace):
                continue
            if label_selector and not match_label_selector(obj["metadata"].get("labels"), label_selector):
                continue
            if field_selector and not match_field_selector(obj, field_selector):
                continue
            out.append(obj)
        return out

    def _record(self, plural: str, event_type: str, obj: dict[str, Any]) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        self._history.append((rv, plural, event_type, copy.deepcopy(obj)))
        if len(self._history) > _WATCH_HISTORY:
            del self._history[: len(self._history) - _WATCH_HISTORY]
        self._changed.notify_all()

    def _bump(self, obj: dict[str, Any]) -> None:
        rv = next(self._rv)
        self._last_rv = rv
        obj["metadata"]["resourceVersion"] = str(rv)

    def _validate(self, plural: str, namespace: str | None, obj: dict[str, Any]) -> None:
        gv, kind, namespaced = RESOURCES[plural]
        errors = name_errors(kind, obj["metadata"].get("name"))
        errors += label_errors(obj["metadata"].get("labels"))
        pod_spec = None
        if plural == "pods":
            pod_spec = obj.get("spec") or {}
            where = "spec"
        elif plural == "jobs":
            template = (obj.get("spec") or {}).get("template") or {}
            errors += label_errors((template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels")
            pod_spec = template.get("spec") or {}
            where = "spec.template.spec"
            if pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
                errors.append(
                    f"{where}.restartPolicy: Unsupported value: {pod_spec.get('restartPolicy')!r}: "
                    'supported values: "OnFailure", "Never"'
                )
            if (obj.get("spec") or {}).get("podFailurePolicy") and pod_spec.get("restartPolicy") != "Never":
                errors.append(f"{where}.restartPolicy: Invalid value: only \"Never\" is supported when "
                              "podFailurePolicy is specified")
        if pod_spec is not None:
            containers = pod_spec.get("containers") or []
            if not containers:
                errors.append(f"{where}.containers: Required value")
            for group in ("initContainers", "containers"):
                for i, c in enumerate(pod_spec.get(group) or []):
                    cwhere = f"{where}.{group}[{i}]"
                    if not c.get("name"):
                        errors.append(f"{cwhere}.name: Required value")
                    if not c.get("image"):
                        errors.append(f"{cwhere}.image: Required value")
                    errors += _resource_errors(c, cwhere)
                    for e in c.get("env") or []:
                        if not e.get("name"):
                            errors.append(f"{cwhere}.env.name: Required value")
            volume_names = {v.get("name") for v in pod_spec.get("volumes") or []}
            for c in [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]:
                for m in c.get("volumeMounts") or []:
                    if m.get("name") not in volume_names:
                        errors.append(f"{where}.containers.volumeMounts.name: Not found: {m.get('name')!r}")
        if errors:
            raise ApiError(422, f'{kind} "{obj["metadata"].get("name")}" is invalid: ' + "; ".join(errors))

    def create(self, plural: str, namespace: str | None, obj: Mapping[str, Any]) -> dict[str, Any]:
        gv, kind, namespaced = RESOURCES[plural]
        obj = copy.deepcopy(dict(obj))
        meta = obj.setdefault("metadata", {})
        if namespaced:
            namespace = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") not in (None, namespace):
                raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
        else:
            namespace = None
        with self._lock:
            if namespaced and (("namespaces", None, namespace) not in self._objects):
                raise ApiError(404, f'namespaces "{namespace}" not found')
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = (meta["generateName"][:58] + _rand_suffix()).lower()
            self._validate(plural, namespace, obj)
            key = (plural, namespace, meta["name"])
            if key in self._objects:
                raise ApiError(409, f'{plural}{"." + gv.split("/")[0] if "/" in gv else ""} "{meta["name"]}" already exists')
            obj["apiVersion"], obj["kind"] = gv, kind
            if namespaced:
                meta["namespace"] = namespace
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
            self._defaults(plural, obj)
            self._bump(obj)
            self._objects[key] = obj
            self._record(plural, "ADDED", obj)
            result = copy.deepcopy(obj)
        if plural == "jobs":
            self._work.put(("job", namespace, meta["name"]))
        elif plural == "pods":
            self._start_pod(namespace, meta["name"])
        elif plural in ("configmaps", "secrets"):
            self._work.put(("config", namespace, meta["name"]))
        return result

    def _defaults(self, plural: str, obj: dict[str, Any]) -> None:
        if plural == "namespaces":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif plural == "jobs":
            spec = obj.setdefault("spec", {})
            spec.setdefault("parallelism", 1)
            spec.setdefault("completions", 1 if spec.get("parallelism", 1) else None)
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("suspend", False)
            uid = obj["metadata"]["uid"]
            name = obj["metadata"]["name"]
            selector_labels = {"batch.kubernetes.io/controller-uid": uid}
            spec.setdefault("selector", {"matchLabels": selector_labels})
            tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
            tmeta.setdefault("labels", {}).update(
                {
                    "batch.kubernetes.io/controller-uid": uid,
                    "batch.kubernetes.io/job-name": name,
                    "controller-uid": uid,
                    "job-name": name,
                }
            )
            obj["status"] = {}
        elif plural == "pods":
            spec = obj.setdefault("spec", {})
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("serviceAccountName", "default")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            spec["nodeName"] = "emulator"
            obj["status"] = {
                "phase": "Pending",
                "qosClass": _qos_class(spec),
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()}],
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "image": c.get("image"),
                        "imageID": "",
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ContainerCreating"}},
                    }
                    for c in spec.get("containers", [])
                ],
            }
        elif plural == "secrets":
            for k, v in (obj.pop("stringData", None) or {}).items():
                obj.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
            obj.setdefault("type", "Opaque")

    def replace(self, plural: str, namespace: str | None, name: str, obj: Mapping[str, Any], subresource: str | None = None) -> dict[str, Any]:
        with self._lock:
            key = (plural, namespace, name)
            cur = self._objects.get(key)
            if cur is None:
                raise ApiError(404, f'{plural} "{name}" not found')
            new = copy.deepcopy(dict(obj))
            if subresource == "status":
                updated = copy.deepcopy(cur)
                updated["status"] = new.get("status", {})
            else:
                updated = new
                updated["status"] = cur.get("status", {})
                keep = {k: cur["metadata"][k] for k in ("uid", "creationTimestamp", "namespace", "name") if k in cur["metadata"]}
                updated.setdefault("metadata", {}).update(keep)
                updated["apiVersion"], updated["kind"] = cur["apiVersion"], cur["kind"]
                if plural == "secrets":  # stringData is write-only, on an update as on a create
                    for k, v in (updated.pop("stringData", None) or {}).items():
                        updated.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
                if updated.get("spec") != cur.get("spec"):
                    updated["metadata"]["generation"] = cur["metadata"].get("generation", 1) + 1
                self._validate(plural, namespace, updated)
            return self._store_update(plural, key, updated)

    def patch(self, plural: str, namespace: str | None, name: str, body: Any, content_type: str, subresource: str | None = None) -> dict[str, Any]:
        with self._lock:
            key = (plural, namespace, name)
            cur = self._objects.get(key)
            if cur is None:
                raise ApiError(404, f'{plural} "{name}" not found')
            if "json-patch" in content_type:
                patched = _json_patch(cur, body)
            else:
                patched = _merge_patch(cur, body)
            if subresource == "status":
                updated = copy.deepcopy(cur)
                updated["status"] = patched.get("status", {})
            else:
                updated = patched
                updated["status"] = cur.get("status", {})
                for k in ("uid", "creationTimestamp", "namespace", "name"):
                    if k in cur["metadata"]:
                        updated["metadata"][k] = cur["metadata"][k]
                self._validate(plural, namespace, updated)
            return self._store_update(plural, key, updated)

    def _store_update(self, plural: str, key, updated: dict[str, Any]) -> dict[str, Any]:
        self._bump(updated)
        self._objects[key] = updated
        self._record(plural, "MODIFIED", updated)
        if plural == "jobs":
            self._work.put(("job", key[1], key[2]))
        return copy.deepcopy(updated)

    def delete(self, plural: str, namespace: str | None, name: str, propagation: str | None = None) -> dict[str, Any]:
        with self._lock:
            key = (plural, namespace, name)
            obj = self._objects.pop(key, None)
            if obj is None:
                raise ApiError(404, f'{plural} "{name}" not found')
            obj = copy.deepcopy(obj)
            obj["metadata"]["deletionTimestamp"] = _now()
            self._bump(obj)
            self._record(plural, "DELETED", obj)
            if plural == "jobs":
                # batch/v1 Jobs default to orphaning their pods, like a real API server.
                if (propagation or "Orphan") in ("Background", "Foreground"):
                    for pod in self._owned_pods(obj):
                        self.delete("pods", namespace, pod["metadata"]["name"])
            elif plural == "pods":
                phase = (obj.get("status") or {}).get("phase")
                for ref in obj["metadata"].get("ownerReferences") or []:
                    if ref.get("kind") == "Job" and phase in ("Succeeded", "Failed") \
                            and obj["metadata"].get("uid") not in self._ignored_pods:
                        counts = self._gone_pods.setdefault(ref["uid"], {})
                        counts[phase] = counts.get(phase, 0) + 1
            elif plural == "namespaces":
                for k in [k for k in self._objects if k[1] == name]:
                    if k in self._objects:
                        self.delete(k[0], k[1], k[2], "Background")
        if plural == "pods":
            rt = self._runtimes.get((namespace, name))
            if rt is not None:
                rt.deleted = True
                threading.Thread(target=self._kill, args=(rt,), daemon=True).start()
            for ref in obj["metadata"].get("ownerReferences") or []:
                if ref.get("kind") == "Job":
                    self._work.put(("job", namespace, ref["name"]))
        return obj

    def disrupt(self, namespace: str, name: str, reason: str = "EvictionByEvictionAPI",
                message: str = "Eviction API: evicting", grace: float | None = None) -> dict[str, Any]:
        """What an eviction (node drain, the Eviction API), a preemption or a taint does to a pod.

        As a real control plane and kubelet do: the pod gets the ``DisruptionTarget``
        condition (``reason``: ``EvictionByEvictionAPI``, ``PreemptionByScheduler``,
        ``TerminationByKubelet``, ``DeletionByTaintManager``) and a ``deletionTimestamp``;
        its container gets SIGTERM and, after the grace period (``grace``, else the pod's
        ``terminationGracePeriodSeconds``, at most ``max_termination_grace``), SIGKILL; the
        pod ends ``Failed`` (unless its container exited 0 in time), its Job counts it (and
        applies its ``podFailurePolicy``), then the pod object goes away. Returns the pod as
        marked; the rest happens in the background.
        """
        pod = self.get("pods", namespace, name)
        if pod is None:
            raise ApiError(404, f'pods "{name}" not found')
        if grace is None:
            grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        grace = max(0.0, min(float(grace), self.max_termination_grace))
        rt = self._runtimes.get((namespace, name))
        if rt is not None:
            rt.disrupted = True

        def mark(o: dict[str, Any]) -> None:
            conditions = [c for c in o["status"].get("conditions") or [] if c["type"] != "DisruptionTarget"]
            o["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True", "reason": reason,
                                          "message": message, "lastTransitionTime": _now()}, *conditions]
            o["metadata"]["deletionTimestamp"] = _now()
            o["metadata"]["deletionGracePeriodSeconds"] = int(grace)

        marked = self._update_status("pods", namespace, name, mark) or pod
        threading.Thread(target=self._end_disrupted, args=(namespace, name, rt, grace), daemon=True).start()
        return copy.deepcopy(marked)

    def _end_disrupted(self, namespace: str, name: str, rt: _PodRuntime | None, grace: float) -> None:
        if rt is not None:
            self._kill(rt, grace)
            with rt.cond:
                rt.cond.wait_for(lambda: rt.finished, timeout=grace + 30)

        def failed(o: dict[str, Any]) -> None:  # it never ran, or never got to finish
            if o["status"].get("phase") in ("Succeeded", "Failed"):
                return
            o["status"]["phase"] = "Failed"
            for cs in o["status"].get("containerStatuses") or []:
                if "terminated" not in cs.get("state", {}):
                    cs["state"] = {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": _now(),
                                                  "finishedAt": _now()}}
                cs["ready"] = False

        self._update_status("pods", namespace, name, failed)
        pod = self.get("pods", namespace, name)
        if pod is None:
            return
        # The Job controller counts the pod (its finalizer) before the pod object is removed.
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "Job":
                self._reconcile_job(namespace, ref["name"])
        try:
            self.delete("pods", namespace, name)
        except ApiError:
            pass

    def _owned_pods(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        uid = job["metadata"]["uid"]
        return [
            o
            for (p, ns, _n), o in list(self._objects.items())
            if p == "pods"
            and ns == job["metadata"]["namespace"]
            and any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
        ]

    def _update_status(self, plural: str, namespace: str, name: str, mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
        with self._lock:
            key = (plural, namespace, name)
            cur = self._objects.get(key)
            if cur is None:
                return None
            new = copy.deepcopy(cur)
            mutate(new)
            if new == cur:
                return cur
            return self._store_update(plural, key, new)

    def _event(self, namespace: str, involved: Mapping[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
        meta = involved["metadata"]
        try:
            self.create(
                "events",
                namespace,
                {
                    "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}"},
                    "involvedObject": {
                        "apiVersion": involved.get("apiVersion"),
                        "kind": involved.get("kind"),
                        "name": meta["name"],
                        "namespace": namespace,
                        "uid": meta.get("uid"),
                    },
                    "reason": reason,
                    "message": message,
                    "type": type_,
                    "count": 1,
                    "firstTimestamp": _now(),
                    "lastTimestamp": _now(),
                    "source": {"component": "ktx-kube-emulator"},
                },
            )
        except ApiError:
            pass

    # ------------------------------------------------------------------ job controller

    def _controller_loop(self) -> None:
        last_sweep = 0.0
        while not self._stopping.is_set():
            try:
                item = self._work.get(timeout=0.25)
            except queue.Empty:
                item = ()
            if item is None:
                return
            try:
                if item and item[0] == "job":
                    self._reconcile_job(item[1], item[2])
                elif item and item[0] == "config":
                    pass  # waiting pods poll for their config themselves
                if time.monotonic() - last_sweep > 0.5:
                    last_sweep = time.monotonic()
                    with self._lock:
                        keys = [(ns, n) for (p, ns, n) in self._objects if p == "jobs"]
                    for ns, n in keys:
                        self._reconcile_job(ns, n)
            except Exception as exc:  # keep the controller alive; surface in stderr
                print(f"[kube-emulator] controller error: {exc!r}", file=sys.stderr)

    def _reconcile_job(self, namespace: str, name: str) -> None:
        with self._lock:
            job = self._objects.get(("jobs", namespace, name))
            if job is None:
                return
            job = copy.deepcopy(job)
            status = job.get("status") or {}
            spec = job["spec"]
            now = time.time()
            finished_types = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
            if finished_types & {"Complete", "Failed"}:
                ttl = spec.get("ttlSecondsAfterFinished")
                done_at = status.get("completionTime") or (status.get("conditions") or [{}])[-1].get("lastTransitionTime")
                if ttl is not None and done_at and now - _parse_ts(done_at) >= ttl:
                    self.delete("jobs", namespace, name, "Background")
                return
            if spec.get("suspend"):
                return
            pods = self._owned_pods(job)
            active = [p for p in pods if p["status"].get("phase") in ("Pending", "Running")]
            ready = [p for p in active if p["status"].get("phase") == "Running"]
            succeeded = [p for p in pods if p["status"].get("phase") == "Succeeded"]
            failed = [p for p in pods if p["status"].get("phase") == "Failed"]
            # Pods that were deleted after failing still count (the real controller uses finalizers).
            gone = self._gone_pods.get(job["metadata"]["uid"], {})
            fail_job, ignored = None, 0
            for p in failed:
                matched = pod_failure_policy_match(spec.get("podFailurePolicy"), p)
                if matched is not None and matched[0] == "FailJob" and fail_job is None:
                    fail_job = matched[1]
                elif matched is not None and matched[0] == "Ignore":
                    ignored += 1
                    self._ignored_pods.add(p["metadata"]["uid"])
            n_failed = len(failed) - ignored + gone.get("Failed", 0)
            n_succeeded_prev = gone.get("Succeeded", 0)
            completions = spec.get("completions") or 1
            parallelism = spec.get("parallelism", 1)
            indexed = spec.get("completionMode") == "Indexed"
            start_time = status.get("startTime") or _now()
            conditions = list(status.get("conditions") or [])
            new_status: dict[str, Any] = {
                "startTime": start_time,
                "active": len(active) or None,
                "ready": len(ready),
                "terminating": 0,
                "succeeded": (len(succeeded) + n_succeeded_prev) or None,
                "failed": n_failed or None,
                "uncountedTerminatedPods": {},
            }
            if indexed:
                done_idx = sorted({_pod_index(p) for p in succeeded} - {None})
                new_status["completedIndexes"] = _format_indexes(done_idx) or None
            else:
                done_idx = []

            def finish(ctype: str, reason: str, message: str) -> None:
                ts = _now()
                if ctype == "Complete":
                    conditions.append({"type": "SuccessCriteriaMet", "status": "True", "reason": reason, "message": message, "lastProbeTime": ts, "lastTransitionTime": ts})
                    new_status["completionTime"] = ts
                else:
                    conditions.append({"type": "FailureTarget", "status": "True", "reason": reason, "message": message, "lastProbeTime": ts, "lastTransitionTime": ts})
                conditions.append({"type": ctype, "status": "True", "reason": reason, "message": message, "lastProbeTime": ts, "lastTransitionTime": ts})
                for p in active:
                    self.delete("pods", namespace, p["metadata"]["name"])
                new_status["active"] = None
                new_status["ready"] = 0
                self._event(namespace, job, reason, message, "Normal" if ctype == "Complete" else "Warning")

            deadline = spec.get("activeDeadlineSeconds")
            to_create: list[int | None] = []
            if fail_job is not None:
                finish("Failed", "PodFailurePolicy", fail_job)
            elif n_failed > spec.get("backoffLimit", 6):
                finish("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
            elif deadline is not None and now - _parse_ts(start_time) > deadline:
                finish("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
            elif (indexed and len(done_idx) >= completions) or (not indexed and len(succeeded) + n_succeeded_prev >= completions):
                finish("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
            else:
                slots = max(0, parallelism - len(active))
                if indexed:
                    busy = {_pod_index(p) for p in active} | set(done_idx)
                    to_create = [i for i in range(completions) if i not in busy][:slots]
                else:
                    remaining = completions - len(succeeded) - n_succeeded_prev - len(active)
                    to_create = [None] * max(0, min(slots, remaining))
            new_status["conditions"] = conditions or None
            new_status = {k: v for k, v in new_status.items() if v is not None}
            if new_status != status:
                self._update_status("jobs", namespace, name, lambda o: o.__setitem__("status", new_status))
        for index in to_create:
            self._create_job_pod(job, index)

    def _create_job_pod(self, job: Mapping[str, Any], index: int | None) -> None:
        template = copy.deepcopy(job["spec"]["template"])
        meta = template.get("metadata") or {}
        name = job["metadata"]["name"]
        base = f"{name}-{index}-" if index is not None else f"{name}-"
        labels = dict(meta.get("labels") or {})
        annotations = dict(meta.get("annotations") or {})
        spec = template.get("spec") or {}
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
            for c in spec.get("containers") or []:
                c.setdefault("env", []).append({"name": "JOB_COMPLETION_INDEX", "value": str(index)})
        pod = {
            "metadata": {
                "generateName": base,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": name,
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
        }
        try:
            created = self.create("pods", job["metadata"]["namespace"], pod)
        except ApiError as exc:
            self._event(job["metadata"]["namespace"], job, "FailedCreate", exc.message, "Warning")
            return
        self._event(job["metadata"]["namespace"], job, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    # ------------------------------------------------------------------ kubelet

    def _start_pod(self, namespace: str, name: str) -> None:
        rt = _PodRuntime(key=(namespace, name))
        self._runtimes[(namespace, name)] = rt
        t = threading.Thread(target=self._run_pod, args=(rt,), name=f"pod-{name}", daemon=True)
        t.start()

    def _log(self, rt: _PodRuntime, line: str) -> None:
        with rt.cond:
            rt.lines.append((_now_precise(), line if line.endswith("\n") else line + "\n"))
            rt.cond.notify_all()

    def _set_pod(self, rt: _PodRuntime, mutate: Callable[[dict[str, Any]], None]) -> None:
        if not rt.deleted:
            self._update_status("pods", rt.key[0], rt.key[1], mutate)

    def _run_pod(self, rt: _PodRuntime) -> None:
        ns, name = rt.key
        try:
            if self.pod_start_delay:
                time.sleep(self.pod_start_delay)
            pod = self.get("pods", ns, name)
            if pod is None or rt.deleted:
                return
            spec = pod["spec"]
            # Resolve volumes and env; wait like a kubelet while config objects are missing.
            while True:
                if rt.deleted or rt.disrupted or self._stopping.is_set():
                    return
                try:
                    pod = self.get("pods", ns, name) or pod
                    root, mounts = self._prepare_volumes(pod)
                    containers = [*(spec.get("initContainers") or []), spec["containers"][0]]
                    if self.runtime == "docker":
                        prepared = [self._prepare_docker(pod, c, root, i) for i, c in enumerate(containers)]
                    else:
                        prepared = [self._prepare_container(pod, c, root, mounts) for c in containers]
                    break
                except _ConfigError as exc:
                    msg, reason = str(exc), exc.reason

                    def waiting(o: dict[str, Any], msg: str = msg, reason: str = reason) -> None:
                        for cs in o["status"].get("containerStatuses") or []:
                            cs["state"] = {"waiting": {"reason": reason, "message": msg}}

                    self._set_pod(rt, waiting)
                    time.sleep(0.5)
            start_ts = _now()
            n_init = len(spec.get("initContainers") or [])
            init_statuses = []
            exit_code = 0
            main_term: dict[str, Any] | None = None
            for i, (argv, env, cwd) in enumerate(prepared):
                is_main = i == n_init
                cname = containers[i]["name"]
                if is_main:
                    def running(o: dict[str, Any]) -> None:
                        o["status"].update(
                            {
                                "phase": "Running",
                                "startTime": start_ts,
                                "podIP": "127.0.0.1",
                                "hostIP": "127.0.0.1",
                                "initContainerStatuses": init_statuses or None,
                            }
                        )
                        o["status"] = {k: v for k, v in o["status"].items() if v is not None}
                        o["status"]["conditions"] = [
                            {"type": t, "status": "True", "lastTransitionTime": start_ts}
                            for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                        ]
                        for cs in o["status"].get("containerStatuses") or []:
                            if cs["name"] == cname:
                                cs.update({"ready": True, "started": True, "containerID": self._container_id(ns, name),
                                           "state": {"running": {"startedAt": _now()}}})

                    self._set_pod(rt, running)
                if rt.disrupted:
                    return
                exit_code, reason, t0 = self._exec(rt, argv, env, cwd)
                if rt.deleted:
                    return
                term = {"exitCode": exit_code, "reason": reason, "startedAt": t0, "finishedAt": _now(),
                        "containerID": self._container_id(ns, name)}
                if exit_code != 0:
                    term["message"] = "".join(line for _, line in rt.lines[-10:])[-1024:]
                if not is_main:
                    init_statuses.append({"name": cname, "ready": exit_code == 0, "restartCount": 0,
                                          "image": containers[i].get("image"), "imageID": "",
                                          "state": {"terminated": term}})
                    if exit_code != 0:
                        break
                else:
                    main_term = term
            phase = "Succeeded" if exit_code == 0 else "Failed"

            def finished(o: dict[str, Any]) -> None:
                o["status"]["phase"] = phase
                o["status"].setdefault("startTime", start_ts)
                if init_statuses:
                    o["status"]["initContainerStatuses"] = init_statuses
                disruption = [c for c in o["status"].get("conditions") or [] if c["type"] == "DisruptionTarget"]
                o["status"]["conditions"] = disruption + [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": start_ts},
                    {"type": "Initialized", "status": "True" if exit_code == 0 or len(init_statuses) < n_init else "False", "lastTransitionTime": _now()},
                    {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": _now()},
                    {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": _now()},
                ]
                for cs in o["status"].get("containerStatuses") or []:
                    cs["ready"] = False
                    cs["started"] = False
                    if cs["name"] == containers[n_init]["name"] and main_term is not None:
                        cs["state"] = {"terminated": main_term}
                        cs["containerID"] = self._container_id(ns, name)
                    elif "terminated" not in cs.get("state", {}):
                        cs["state"] = {"waiting": {"reason": "PodInitializing"}}

            self._set_pod(rt, finished)
            pod_now = self.get("pods", ns, name)
            if pod_now is not None:
                self._event(ns, pod_now, "Completed" if exit_code == 0 else "Failed",
                            f"Container exited with code {exit_code}", "Normal" if exit_code == 0 else "Warning")
        except Exception as exc:  # never leave a pod hanging silently
            self._log(rt, f"[kube-emulator] kubelet error: {exc!r}")

            def errored(o: dict[str, Any]) -> None:
                o["status"]["phase"] = "Failed"
                o["status"]["message"] = f"kube-emulator kubelet error: {exc!r}"
                for cs in o["status"].get("containerStatuses") or []:
                    cs["state"] = {"terminated": {"exitCode": 128, "reason": "StartError", "message": repr(exc),
                                                  "startedAt": _now(), "finishedAt": _now()}}

            self._set_pod(rt, errored)
        finally:
            with rt.cond:
                rt.finished = True
                rt.cond.notify_all()
            pod = self.get("pods", ns, name)
            for ref in (pod or {}).get("metadata", {}).get("ownerReferences") or []:
                if ref.get("kind") == "Job":
                    self._work.put(("job", ns, ref["name"]))

    def _container_id(self, ns: str, name: str) -> str:
        return f"docker://{ns}.{name}" if self.runtime == "docker" else f"emulator://{ns}/{name}"

    def _exec(self, rt: _PodRuntime, argv: list[str], env: dict[str, str], cwd: str) -> tuple[int, str, str]:
        if self.runtime == "docker":
            return self._exec_container(rt, argv, container=cwd)
        t0 = _now()
        # The "image" is this virtualenv: its bin dir goes first whatever PATH the pod spec or
        # the caller's environment carried (`make test` runs pytest without activating it).
        bin_dir = os.path.dirname(sys.executable)
        env = {**env, "PATH": bin_dir + os.pathsep + env.get("PATH", os.defpath)}
        try:
            proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError as exc:
            self._log(rt, f"exec {argv[:1]} failed: {exc}")
            return 128, "StartError", t0
        rt.proc = proc
        rt.started = True
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            self._log(rt, raw.decode("utf-8", errors="replace"))
        code = proc.wait()
        if code < 0:  # killed by signal -> shell-style exit code
            code = 128 - code
        return code, ("Completed" if code == 0 else "Error"), t0

    def _exec_container(self, rt: _PodRuntime, argv: list[str], container: str) -> tuple[int, str, str]:
        """Run one container to its end (docker_pods.py); the reason is the kubelet's."""
        from ktx_dagster.testing import docker_pods

        t0 = _now()
        docker_pods.remove(container, self.docker)  # a name left by an earlier emulator
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as exc:
            self._log(rt, f"docker run failed: {exc}")
            return 128, "StartError", t0
        rt.proc, rt.container, rt.started = proc, container, True
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            self._log(rt, raw.decode("utf-8", errors="replace"))
        end = docker_pods.termination(container, proc.wait(), self.docker)
        docker_pods.remove(container, self.docker)
        rt.container = None
        return end.exit_code, end.reason, t0

    def _kill(self, rt: _PodRuntime, grace: float | None = None) -> None:
        if rt.container is not None:
            from ktx_dagster.testing import docker_pods

            docker_pods.stop(rt.container, self.max_termination_grace if grace is None else grace, self.docker)
            return
        proc = rt.proc
        if proc is None or proc.poll() is not None:
            return
        grace = self.max_termination_grace if grace is None else grace
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
            pass

    # ------------------------------------------------------------------ volumes & env

    def _map_host_path(self, path: str) -> str:
        path = path.rstrip("/") or "/"
        best = None
        for prefix in self.host_paths:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                if best is None or len(prefix) > len(best):
                    best = prefix
        if best is not None:
            return self.host_paths[best] + path[len(best):]
        return os.path.join(self.workdir, "hostpath", path.lstrip("/"))

    def _config_data(self, ns: str, plural: str, name: str, optional: bool) -> dict[str, bytes] | None:
        obj = self.get(plural, ns, name)
        if obj is None:
            if optional:
                return None
            kind = "configmap" if plural == "configmaps" else "secret"
            raise _ConfigError(f'{kind} "{name}" not found')
        if plural == "secrets":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def _prepare_volumes(self, pod: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        pod_dir = os.path.join(self.workdir, "pods", ns, name)
        root = os.path.join(pod_dir, "root")
        vol_dirs: dict[str, str] = {}
        for vol in pod["spec"].get("volumes") or []:
            vname = vol["name"]
            vdir = os.path.join(pod_dir, "volumes", vname)
            if "hostPath" in vol:
                vdir = self._map_host_path(vol["hostPath"]["path"])
                os.makedirs(vdir, exist_ok=True)
            elif "persistentVolumeClaim" in vol:
                vdir = os.path.join(self.workdir, "pvc", ns, vol["persistentVolumeClaim"]["claimName"])
                os.makedirs(vdir, exist_ok=True)
            elif "configMap" in vol or "secret" in vol:
                src = vol.get("configMap") or vol.get("secret")
                plural = "configmaps" if "configMap" in vol else "secrets"
                ref = src.get("name") or src.get("secretName")
                data = self._config_data(ns, plural, ref, bool(src.get("optional"))) or {}
                shutil.rmtree(vdir, ignore_errors=True)
                os.makedirs(vdir, exist_ok=True)
                items = src.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] not in data:
                        if src.get("optional"):
                            continue
                        raise _ConfigError(f'key "{item["key"]}" not found in {plural[:-1]} "{ref}"')
                    dest = os.path.join(vdir, item["path"])
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with open(dest, "wb") as f:
                        f.write(data[item["key"]])
            else:  # emptyDir, projected, csi, ... -> scratch dir
                os.makedirs(vdir, exist_ok=True)
                os.chmod(vdir, 0o777)  # as the kubelet makes an emptyDir: any pod user may write
            vol_dirs[vname] = vdir
        mounts: list[tuple[str, str]] = []
        container = pod["spec"]["containers"][0]
        all_mounts = [*(container.get("volumeMounts") or [])]
        for ic in pod["spec"].get("initContainers") or []:
            all_mounts += [m for m in ic.get("volumeMounts") or [] if m["mountPath"] not in {x["mountPath"] for x in all_mounts}]
        for m in sorted(all_mounts, key=lambda m: m["mountPath"].rstrip("/").count("/")):
            src = vol_dirs[m["name"]]
            if m.get("subPath"):
                src = os.path.join(src, m["subPath"])
                if not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)
            mount_path = m["mountPath"].rstrip("/") or "/"
            dest = root + mount_path
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if os.path.islink(dest):
                os.unlink(dest)
            elif os.path.isdir(dest):
                shutil.rmtree(dest)
            os.symlink(src, dest)
            mounts.append((mount_path, dest))
        return root, mounts

    def _rewrite(self, value: str, root: str, mounts: list[tuple[str, str]]) -> str:
        if not value.startswith("/") or value.startswith("//"):
            return value
        norm = value.rstrip("/") or "/"
        for mount_path, _dest in mounts:
            if norm == mount_path or norm.startswith(mount_path + "/") or mount_path.startswith(norm + "/"):
                return root + value
        return value

    def _rewrite_embedded(self, value: str, root: str, mounts: list[tuple[str, str]]) -> str:
        """Rewrite mount paths inside longer strings, e.g. ``sh -c "ls /mnt/data"``."""
        if value.startswith(root):
            return value
        for mount_path, _dest in sorted(mounts, key=lambda m: -len(m[0])):
            if mount_path == "/":
                continue
            pattern = r"(?<![\w/.-])" + re.escape(mount_path) + r"(?=[/\s'\";:,)]|$)"
            value = re.sub(pattern, lambda _m, mp=mount_path: root + mp, value)
        return value

    def _prepare_container(self, pod: Mapping[str, Any], c: Mapping[str, Any], root: str,
                           mounts: list[tuple[str, str]]) -> tuple[list[str], dict[str, str], str]:
        env: dict[str, str] = {k: os.environ[k] for k in self.inherit_env if k in os.environ}
        env.update(self.extra_env)
        env["HOSTNAME"] = pod["metadata"]["name"]
        env["KTX_KUBE_EMULATOR"] = "1"
        if self.inject_kubeconfig:
            env["KUBECONFIG"] = self.kubeconfig_path
        env.update(self._container_env(pod, c, env))
        env = {k: self._rewrite(v, root, mounts) for k, v in env.items()}
        argv = [*(c.get("command") or []), *(c.get("args") or [])]
        if not argv:
            raise RuntimeError(
                "the emulator ignores images, so a container needs `command` or `args`"
            )
        argv = [self._rewrite_embedded(self._rewrite(_expand(a, env), root, mounts), root, mounts) for a in argv]
        cwd = self.cwd
        if c.get("workingDir"):
            wd = self._rewrite(c["workingDir"], root, mounts)
            if os.path.isdir(wd):
                cwd = wd
        return argv, env, cwd

    def _prepare_docker(self, pod: Mapping[str, Any], c: Mapping[str, Any], root: str,
                        index: int) -> tuple[list[str], dict[str, str], str]:
        """A container of the pod's image: its own env only (the image's PATH stays), each
        volume a bind mount; returns (docker run argv, env, container name)."""
        from ktx_dagster.testing import docker_pods

        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if not docker_pods.image_present(c["image"], self.docker):
            raise _ConfigError(f'image "{c["image"]}" is not on this node and no registry is reachable; '
                               "build it first (docker build ...)", reason="ErrImageNeverPull")
        env: dict[str, str] = {"HOSTNAME": name, "KTX_KUBE_EMULATOR": "1"}
        mounts: list[tuple[str, str, bool]] = list(self.container_mounts)
        if self.inject_kubeconfig:
            env["KUBECONFIG"] = self.kubeconfig_path
            mounts.append((self.kubeconfig_path, self.kubeconfig_path, True))
        env.update(self._container_env(pod, c, env))
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for m in c.get("volumeMounts") or []:
            mount_path = m["mountPath"].rstrip("/") or "/"
            vol = volumes.get(m["name"], {})
            read_only = bool(m.get("readOnly")) or "configMap" in vol or "secret" in vol
            mounts.append((os.path.realpath(root + mount_path), mount_path, read_only))
        # $(VAR) in command and args, as the kubelet expands them
        c = {**c, "command": [_expand(a, env) for a in c.get("command") or []],
             "args": [_expand(a, env) for a in c.get("args") or []]}
        run = docker_pods.run_command(f"ktx-{ns}.{name}-{index}", pod["spec"], c, env, mounts, docker=self.docker)
        if run.refused:
            raise _ConfigError(run.refused)
        return run.argv, env, run.name

    def _container_env(self, pod: Mapping[str, Any], c: Mapping[str, Any], base: Mapping[str, str]) -> dict[str, str]:
        """env and envFrom of a container, as the kubelet resolves them (no host env)."""
        ns = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for src in c.get("envFrom") or []:
            prefix = src.get("prefix", "")
            ref = src.get("configMapRef") or src.get("secretRef")
            plural = "configmaps" if "configMapRef" in src else "secrets"
            data = self._config_data(ns, plural, ref["name"], bool(ref.get("optional")))
            for k, v in (data or {}).items():
                env[prefix + k] = v.decode("utf-8", errors="replace")
        for e in c.get("env") or []:
            if "valueFrom" in e:
                val = self._value_from(pod, c, e["valueFrom"])
                if val is None:
                    continue
            else:
                val = _expand(e.get("value", ""), {**base, **env})
            env[e["name"]] = val
        return env

    def _value_from(self, pod: Mapping[str, Any], c: Mapping[str, Any], vf: Mapping[str, Any]) -> str | None:
        ns = pod["metadata"]["namespace"]
        if "configMapKeyRef" in vf or "secretKeyRef" in vf:
            ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef")
            plural = "configmaps" if "configMapKeyRef" in vf else "secrets"
            data = self._config_data(ns, plural, ref["name"], bool(ref.get("optional")))
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise _ConfigError(f'couldn\'t find key {ref["key"]} in {plural[:-1]} {ns}/{ref["name"]}')
            return data[ref["key"]].decode("utf-8", errors="replace")
        if "fieldRef" in vf:
            path = vf["fieldRef"]["fieldPath"]
            m = re.match(r"metadata\.(labels|annotations)\['(.+)'\]", path)
            if m:
                return (pod["metadata"].get(m.group(1)) or {}).get(m.group(2), "")
            return {
                "metadata.name": pod["metadata"]["name"],
                "metadata.namespace": ns,
                "metadata.uid": pod["metadata"].get("uid", ""),
                "spec.nodeName": "emulator",
                "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
                "status.podIP": "127.0.0.1",
                "status.hostIP": "127.0.0.1",
            }.get(path, "")
        if "resourceFieldRef" in vf:
            res = vf["resourceFieldRef"]["resource"]
            section, _, rname = res.partition(".")
            qty = ((c.get("resources") or {}).get(section) or {}).get(rname)
            if qty is None:
                return "0"
            value = _parse_quantity(qty) / _parse_quantity(vf["resourceFieldRef"].get("divisor", "1"))
            return str(int(value.to_integral_value(rounding="ROUND_CEILING")))
        return None


class _ConfigError(Exception):
    """A container the kubelet cannot start yet; `reason` goes into its waiting state."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError"):
        super().__init__(message)
        self.reason = reason


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion; ``$$(VAR)`` escapes."""

    def sub(m: re.Match) -> str:
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$?\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, value)


def pod_failure_policy_match(policy: Mapping[str, Any] | None, pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(action, message) of the first rule of a Job's ``podFailurePolicy`` a failed pod
    matches, worded as the real Job controller words its condition; None if none does."""
    meta = pod["metadata"]
    where = f"{meta.get('namespace')}/{meta['name']}"
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    conditions = (pod.get("status") or {}).get("conditions") or []
    for index, rule in enumerate((policy or {}).get("rules") or []):
        action = rule.get("action", "Count")
        on_codes = rule.get("onExitCodes")
        if on_codes:
            for cs in statuses:
                if on_codes.get("containerName") not in (None, cs["name"]):
                    continue
                code = ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
                if code in (None, 0):
                    continue
                inside = code in (on_codes.get("values") or [])
                if inside == (on_codes.get("operator", "In") == "In"):
                    return action, (f"Container {cs['name']} for pod {where} failed with exit code {code} "
                                    f"matching {action} rule at index {index}")
        for wanted in rule.get("onPodConditions") or []:
            status = wanted.get("status", "True")
            if any(c.get("type") == wanted.get("type") and c.get("status") == status for c in conditions):
                return action, f"Pod {where} has condition {wanted['type']} matching {action} rule at index {index}"
    return None


def _parse_ts(ts: str) -> float:
    return _dt.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.timezone.utc).timestamp()


def _pod_index(pod: Mapping[str, Any]) -> int | None:
    v = (pod["metadata"].get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
    return int(v) if v is not None else None


def _format_indexes(idx: list[int]) -> str:
    out, start, prev = [], None, None
    for i in idx:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else str(start))
    return ",".join(out)


def _qos_class(spec: Mapping[str, Any]) -> str:
    containers = spec.get("containers") or []
    any_set, guaranteed = False, bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or str(req.get(r, lim.get(r))) != str(lim[r]):
                guaranteed = False
    return "Guaranteed" if guaranteed else ("Burstable" if any_set else "BestEffort")


# --------------------------------------------------------------------------- HTTP layer


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def _parse_path(path: str) -> tuple[str, str | None, str | None, str | None] | None:
    """-> (plural, namespace, name, subresource) or None if not a resource path."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        gv, rest = "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] in RESOURCES and RESOURCES[rest[2]][2]:
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    if plural not in RESOURCES or RESOURCES[plural][0] != gv:
        raise ApiError(404, f"the server could not find the requested resource ({gv}/{plural})")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and (plural, sub) not in _SUBRESOURCES:
        raise ApiError(404, f"the server could not find the requested resource ({plural}/{sub})")
    return plural, namespace, name, sub


def _make_handler(emu: KubeEmulator):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ktx-kube-emulator/1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        # -- responses
        def _send_json(self, code: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_text(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _start_chunked(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _end_chunked(self) -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return None
            try:
                return json.loads(raw)
            except ValueError:
                return yaml.safe_load(raw)

        # -- dispatch
        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            emu.requests.append((method, self.path))
            try:
                if method == "GET" and split.path in ("/version", "/version/"):
                    return self._send_json(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-ktx-emulator",
                                                 "gitCommit": "", "gitTreeState": "clean", "buildDate": _now(),
                                                 "goVersion": "", "compiler": "gc", "platform": "linux/amd64"})
                if method == "GET" and split.path in ("/api", "/api/"):
                    return self._send_json(200, {"kind": "APIVersions", "versions": ["v1"]})
                if method == "GET" and split.path in ("/apis", "/apis/"):
                    groups = sorted({gv for gv, _k, _n in RESOURCES.values() if "/" in gv})
                    return self._send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                        {"name": g.split("/")[0], "versions": [{"groupVersion": g, "version": g.split("/")[1]}],
                         "preferredVersion": {"groupVersion": g, "version": g.split("/")[1]}} for g in groups]})
                parsed = _parse_path(split.path)
                if parsed is None:
                    raise ApiError(404, f"the server could not find the requested resource {split.path}")
                plural, ns, name, sub = parsed
                if name is None:
                    return self._collection(method, plural, ns, query)
                if sub == "log":
                    return self._log(ns, name, query)
                return self._object(method, plural, ns, name, sub, query)
            except ApiError as exc:
                self._send_json(exc.code, exc.status())
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as exc:  # pragma: no cover - emulator bug
                self._send_json(500, ApiError(500, f"emulator error: {exc!r}").status())

        do_GET = lambda self: self._handle("GET")  # noqa: E731
        do_POST = lambda self: self._handle("POST")  # noqa: E731
        do_PUT = lambda self: self._handle("PUT")  # noqa: E731
        do_PATCH = lambda self: self._handle("PATCH")  # noqa: E731
        do_DELETE = lambda self: self._handle("DELETE")  # noqa: E731

        def _collection(self, method: str, plural: str, ns: str | None, query: Mapping[str, str]) -> None:
            gv, kind, namespaced = RESOURCES[plural]
            ls, fs = query.get("labelSelector"), query.get("fieldSelector")
            if method == "GET" and query.get("watch") in ("true", "1", "True"):
                return self._watch(plural, ns, query)
            if method == "GET":
                with emu._lock:
                    items = [copy.deepcopy(o) for o in emu._select(plural, ns, ls, fs)]
                    rv = str(emu._last_rv)
                return self._send_json(200, {"apiVersion": gv, "kind": f"{kind}List", "metadata": {"resourceVersion": rv}, "items": items})
            if method == "POST":
                body = self._body()
                if not isinstance(body, Mapping):
                    raise ApiError(400, "request body must be a JSON object")
                if query.get("dryRun"):
                    return self._send_json(201, body)
                return self._send_json(201, emu.create(plural, ns, body))
            if method == "DELETE":
                body = self._body() or {}
                with emu._lock:
                    victims = [o["metadata"]["name"] for o in emu._select(plural, ns, ls, fs)]
                deleted = []
                for n in victims:
                    try:
                        deleted.append(emu.delete(plural, ns, n, body.get("propagationPolicy") or query.get("propagationPolicy")))
                    except ApiError:
                        pass
                return self._send_json(200, {"apiVersion": gv, "kind": f"{kind}List", "metadata": {}, "items": deleted})
            raise ApiError(405, f"method {method} not allowed on a collection")

        def _object(self, method: str, plural: str, ns: str | None, name: str, sub: str | None, query: Mapping[str, str]) -> None:
            gv, kind, namespaced = RESOURCES[plural]
            if not namespaced:
                ns = None
            if method == "GET":
                obj = emu.get(plural, ns, name)
                if obj is None:
                    raise ApiError(404, f'{plural}{"." + gv.split("/")[0] if "/" in gv else ""} "{name}" not found')
                return self._send_json(200, obj)
            if method == "POST" and plural == "pods" and sub == "eviction":
                # policy/v1 Eviction: what `kubectl drain` sends; the grace period may come with it.
                body = self._body() or {}
                grace = (body.get("deleteOptions") or {}).get("gracePeriodSeconds")
                emu.disrupt(ns or "default", name, grace=grace)
                return self._send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                             "status": "Success", "code": 201})
            if method == "PUT":
                return self._send_json(200, emu.replace(plural, ns, name, self._body() or {}, sub))
            if method == "PATCH":
                return self._send_json(200, emu.patch(plural, ns, name, self._body(), self.headers.get("Content-Type", ""), sub))
            if method == "DELETE":
                body = self._body() or {}
                obj = emu.delete(plural, ns, name, body.get("propagationPolicy") or query.get("propagationPolicy"))
                return self._send_json(200, obj)
            raise ApiError(405, f"method {method} not allowed")

        def _log(self, ns: str | None, name: str, query: Mapping[str, str]) -> None:
            pod = emu.get("pods", ns, name)
            if pod is None:
                raise ApiError(404, f'pods "{name}" not found')
            container = query.get("container")
            names = [c["name"] for c in pod["spec"].get("containers") or []]
            if container and container not in names and container not in [c["name"] for c in pod["spec"].get("initContainers") or []]:
                raise ApiError(400, f"container {container} is not valid for pod {name}")
            rt = emu._runtimes.get((ns, name))
            if rt is None or not rt.started:
                cname = container or names[0]
                raise ApiError(400, f'container "{cname}" in pod "{name}" is waiting to start: ContainerCreating')
            timestamps = query.get("timestamps") in ("true", "1", "True")
            tail = int(query["tailLines"]) if "tailLines" in query else None
            limit = int(query["limitBytes"]) if "limitBytes" in query else None

            def render(lines: list[tuple[str, str]]) -> str:
                return "".join((f"{ts} {line}" if timestamps else line) for ts, line in lines)

            with rt.cond:
                lines = list(rt.lines)
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
            if query.get("follow") in ("true", "1", "True"):
                self._start_chunked("text/plain")
                sent = len(rt.lines)
                if lines:
                    self._chunk(render(lines).encode())
                while True:
                    with rt.cond:
                        if len(rt.lines) == sent and not rt.finished:
                            rt.cond.wait(timeout=0.5)
                        new = rt.lines[sent:]
                        sent = len(rt.lines)
                        done = rt.finished and not new
                    if new:
                        self._chunk(render(new).encode())
                    if done or emu._stopping.is_set():
                        break
                return self._end_chunked()
            text = render(lines)
            if limit is not None:
                text = text.encode()[:limit].decode("utf-8", errors="ignore")
            return self._send_text(200, text)

        def _watch(self, plural: str, ns: str | None, query: Mapping[str, str]) -> None:
            ls, fs = query.get("labelSelector"), query.get("fieldSelector")
            timeout = float(query.get("timeoutSeconds") or 1800)
            deadline = time.monotonic() + timeout
            rv_param = query.get("resourceVersion")

            def matches(p: str, obj: Mapping[str, Any]) -> bool:
                return (
                    p == plural
                    and (ns is None or obj["metadata"].get("namespace") == ns)
                    and (not ls or match_label_selector(obj["metadata"].get("labels"), ls))
                    and (not fs or match_field_selector(obj, fs))
                )

            with emu._lock:
                if rv_param not in (None, "", "0"):
                    since = int(rv_param)
                    oldest = emu._history[0][0] if emu._history else emu._last_rv + 1
                    if since < oldest - 1 and since < emu._last_rv:
                        initial = None
                        expired = True
                    else:
                        initial, expired = [], False
                else:
                    since = emu._last_rv
                    initial = [("ADDED", copy.deepcopy(o)) for o in emu._select(plural, ns, ls, fs)]
                    expired = False
            self._start_chunked("application/json")
            if expired:
                self._chunk((json.dumps({"type": "ERROR", "object": ApiError(410, "too old resource version").status()}) + "\n").encode())
                return self._end_chunked()
            for etype, obj in initial or []:
                self._chunk((json.dumps({"type": etype, "object": obj}) + "\n").encode())
            cursor = since
            while not emu._stopping.is_set() and time.monotonic() < deadline:
                with emu._lock:
                    pending = [(rv, p, t, o) for (rv, p, t, o) in emu._history if rv > cursor]
                    if not pending:
                        emu._changed.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
                        continue
                    cursor = pending[-1][0]
                for _rv, p, etype, obj in pending:
                    if matches(p, obj):
                        self._chunk((json.dumps({"type": etype, "object": obj}) + "\n").encode())
            self._end_chunked()

    return Handler


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run the ktx Kubernetes API emulator in the foreground.")
    parser.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--namespace", action="append", default=[], help="namespaces to create")
    parser.add_argument("--host-path", action="append", default=[], metavar="NODE_PATH=LOCAL_DIR",
                        help="map a hostPath volume path to a local directory, e.g. /mnt/data=./data")
    args = parser.parse_args(argv)
    host_paths = dict(hp.split("=", 1) for hp in args.host_path)
    emu = KubeEmulator(args.workdir, host_paths=host_paths, namespaces=args.namespace, port=args.port)
    emu.start()
    emu.write_kubeconfig(args.kubeconfig)
    print(f"kube emulator at {emu.url}; kubeconfig: {args.kubeconfig} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
