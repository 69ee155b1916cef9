"""The kubelet: a Pod's containers as local processes or Docker containers, its volumes and env,
its status, and what a disruption (eviction, preemption) does to it."""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ktx_dagster.testing.k8s_emulator.objects import ApiError, _now, _now_precise, _parse_quantity


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


class Kubelet:
    """KubeEmulator's kubelet (its state lives on KubeEmulator)."""

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
        if self.runtime == "control-plane":
            from ktx_dagster.testing.k8s_emulator.warm_pods import dagster_command

            command = dagster_command(argv)
            if command is not None:
                return self._exec_warm(rt, command, env, cwd, t0)
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

    def _exec_warm(self, rt: _PodRuntime, argv: list[str], env: dict[str, str], cwd: str,
                   t0: str) -> tuple[int, str, str]:
        """A Dagster command forked from the warm fork server (warm_pods.py); its CPU is counted."""
        from ktx_dagster.testing.k8s_emulator.warm_pods import PodProcess

        try:
            proc = PodProcess(argv, env, cwd, os.path.join(self.workdir, "pods", rt.key[0], rt.key[1], "warm"))
        except OSError as exc:
            self._log(rt, f"warm fork of {argv[:3]} failed: {exc}")
            return 128, "StartError", t0
        rt.proc = proc  # type: ignore[assignment]  # Popen's pid/poll/wait, all _kill needs
        rt.started = True
        for raw in proc.lines():
            self._log(rt, raw.decode("utf-8", errors="replace"))
        code = proc.wait()
        with self._lock:
            self.pod_cpu_seconds += proc.cpu_seconds
            self.pods_run += 1
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
