"""KubeEmulator: the object store (create, replace, patch, delete, events) that the HTTP layer,
the Job controller and the kubelet share, and its lifecycle."""

from __future__ import annotations

import base64
import copy
import http.server
import itertools
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

from ktx_dagster.testing.k8s_emulator.http_api import _Server, _make_handler
from ktx_dagster.testing.k8s_emulator.job_controller import JobController
from ktx_dagster.testing.k8s_emulator.kubelet import Kubelet, _PodRuntime
from ktx_dagster.testing.k8s_emulator.objects import (
    ApiError,
    RESOURCES,
    _DEFAULT_NAMESPACES,
    _WATCH_HISTORY,
    _now,
    _qos_class,
    _rand_suffix,
    _resource_errors,
)
from ktx_dagster.testing.k8s_emulator.patches import _json_patch, _merge_patch
from ktx_dagster.testing.k8s_emulator.selectors import match_field_selector, match_label_selector
from ktx_dagster.testing.k8s_rules import label_errors, name_errors


class KubeEmulator(JobController, Kubelet):
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
        if runtime not in ("process", "docker", "control-plane"):
            raise ValueError(f"runtime={runtime!r}: 'process' (local processes), 'docker' (containers) or "
                             "'control-plane' (Dagster commands forked warm: warm_pods.py)")
        self.runtime = runtime
        self.pod_cpu_seconds = 0.0  # CPU of the control-plane runtime's pods (not this process's children)
        self.pods_run = 0
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
            "users": [{"name": "ktx-emulator", "user": {"token": "emulator"}}],  # pragma: allowlist secret (no auth: any token)
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
