"""pytest fixtures for a Kubernetes cluster: the emulator, or a real one.

Enable with ``pytest_plugins = ["ktx_dagster.testing.pytest_plugin"]`` in a top-level
conftest, ``-p ktx_dagster.testing.pytest_plugin``, or import the fixtures
(``from ktx_dagster.testing.pytest_plugin import ktx_k8s_cluster``).

``ktx_k8s_cluster`` (per test) / ``ktx_k8s_cluster_module`` (per module) yield a
:class:`K8sTestCluster`: the kubeconfig path, the namespace to use, a local data dir that
Pods see as ``/mnt/data`` and helpers to inspect Jobs/Pods/logs.

With ``KTX_TEST_KUBECONFIG=/path/to/kubeconfig`` the same fixtures use that real cluster
(e.g. Minikube) instead: ``emulated`` is False, ``emulator`` is None, the namespace is
``KTX_TEST_NAMESPACE`` (default ``ktx-test``, created if missing) and the data dir is
``KTX_TEST_DATA_DIR`` (the laptop directory Minikube mounts at ``/mnt/data``). Tests
should skip emulator-only assertions with ``cluster.require_emulator()``.

``ktx_postgres`` (per session) yields a throwaway PostgreSQL server
(:mod:`ktx_dagster.testing.postgres`, Debian's ``postgresql`` binaries) and stops it at the
end. Without the binaries it skips, or fails when ``KTX_REQUIRE_POSTGRES=1`` (CI).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ktx_dagster.testing.k8s_emulator import KubeEmulator


@dataclass
class K8sTestCluster:
    kubeconfig: str
    namespace: str
    data_dir: Path
    emulator: KubeEmulator | None = None
    _api: Any = field(default=None, repr=False)

    @property
    def emulated(self) -> bool:
        return self.emulator is not None

    def require_emulator(self) -> KubeEmulator:
        if self.emulator is None:
            pytest.skip("emulator-only assertion (running against KTX_TEST_KUBECONFIG)")
        return self.emulator

    # -- API access (works for both) --------------------------------------------------

    @property
    def api_client(self) -> Any:
        if self._api is None:
            import kubernetes

            self._api = kubernetes.config.new_client_from_config(config_file=self.kubeconfig)
        return self._api

    @property
    def core(self) -> Any:
        import kubernetes

        return kubernetes.client.CoreV1Api(self.api_client)

    @property
    def batch(self) -> Any:
        import kubernetes

        return kubernetes.client.BatchV1Api(self.api_client)

    def _dicts(self, items: list[Any]) -> list[dict[str, Any]]:
        return [self.api_client.sanitize_for_serialization(i) for i in items]

    def jobs(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Jobs in the test namespace as camelCase dicts (like ``kubectl get -o json``)."""
        items = self.batch.list_namespaced_job(self.namespace, label_selector=label_selector or "").items
        return sorted(self._dicts(items), key=lambda j: j["metadata"]["creationTimestamp"])

    def pods(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        items = self.core.list_namespaced_pod(self.namespace, label_selector=label_selector or "").items
        return sorted(self._dicts(items), key=lambda p: p["metadata"]["creationTimestamp"])

    def pod_log(self, name: str, tail_lines: int | None = None) -> str:
        kwargs = {"tail_lines": tail_lines} if tail_lines is not None else {}
        resp = self.core.read_namespaced_pod_log(name, self.namespace, _preload_content=False, **kwargs)
        return resp.data.decode("utf-8", errors="replace")

    def apply(self, plural: str, body: dict[str, Any]) -> None:
        """Create-or-replace a namespaced ConfigMap/Secret/ServiceAccount (test fixtures)."""
        import kubernetes

        create = {
            "configmaps": self.core.create_namespaced_config_map,
            "secrets": self.core.create_namespaced_secret,
            "serviceaccounts": self.core.create_namespaced_service_account,
        }[plural]
        replace = {
            "configmaps": self.core.replace_namespaced_config_map,
            "secrets": self.core.replace_namespaced_secret,
            "serviceaccounts": self.core.replace_namespaced_service_account,
        }[plural]
        try:
            create(self.namespace, body)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
            replace(body["metadata"]["name"], self.namespace, body)


    def seed_deploy_config(
        self,
        instance_yaml: str = "telemetry:\n  enabled: false\n",
        instance_env: Mapping[str, str] | None = None,
        pg_password: str = "not-used-here",
    ) -> None:
        """What deploy/minikube applies to the namespace, for the step pods: the instance
        ConfigMap (`ktx-dagster-instance`), the PostgreSQL Secret (`ktx-postgres`), the env
        ConfigMap (`ktx-instance-env`) and the step service account (`ktx-step`).

        Emulator only: on a real cluster these belong to deploy/minikube/up.sh and are never
        overwritten. (Emulated pods share this machine's files, so a step reports to the run's
        own instance through the instance ref it is given, SQLite included.)"""
        assert self.emulated, "seed_deploy_config would overwrite a real cluster's config"
        self.apply("configmaps", {"metadata": {"name": "ktx-dagster-instance"}, "data": {"dagster.yaml": instance_yaml}})
        self.apply("secrets", {"metadata": {"name": "ktx-postgres"}, "stringData": {"postgresql-password": pg_password}})
        self.apply("configmaps", {"metadata": {"name": "ktx-instance-env"},
                                  "data": dict(instance_env if instance_env is not None else {"KTX_FROM_ENV_CONFIGMAP": "yes"})})
        self.apply("serviceaccounts", {"metadata": {"name": "ktx-step"}})


def _ensure_namespace(cluster: K8sTestCluster) -> None:
    import kubernetes

    try:
        cluster.core.create_namespace({"metadata": {"name": cluster.namespace}})
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise


@contextlib.contextmanager
def k8s_test_cluster(
    base_dir: str | os.PathLike | None = None,
    namespace: str = "ktx-test",
    project_dir: str | os.PathLike | None = None,
    runtime: str | None = None,
    container_mounts: tuple[tuple[str, str, bool], ...] = (),
) -> Iterator[K8sTestCluster]:
    """The fixture's body, usable outside pytest (``with k8s_test_cluster() as c: ...``).

    project_dir: the project whose code the emulated pods import, as the image would hold it
    (their working directory, first on PYTHONPATH); default the current directory.
    runtime: "process" (pods are local processes in this environment), "docker" (pods are
    containers of their image, limits and security context enforced) or "control-plane" (a
    pod's Dagster command forked from a warm interpreter: pods start at once); default
    KTX_TEST_POD_RUNTIME, else "process". container_mounts: extra (local, in-container,
    read-only) bind mounts for every container pod.
    """
    project = Path(project_dir or os.getcwd()).resolve()
    real = os.environ.get("KTX_TEST_KUBECONFIG")
    if real:
        data_dir = Path(os.environ.get("KTX_TEST_DATA_DIR", project / "data"))
        cluster = K8sTestCluster(
            kubeconfig=real, namespace=os.environ.get("KTX_TEST_NAMESPACE", namespace), data_dir=data_dir
        )
        _ensure_namespace(cluster)
        yield cluster
        return
    with contextlib.ExitStack() as stack:
        if base_dir is None:
            base_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="ktx-k8s-"))
        base = Path(base_dir)
        data_dir = base / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        pythonpath = os.pathsep.join(p for p in (str(project), os.environ.get("PYTHONPATH", "")) if p)
        emulator = KubeEmulator(
            str(base / "emulator"),
            host_paths={"/mnt/data": str(data_dir)},
            extra_env={"PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"},
            cwd=str(project),
            namespaces=[namespace],
            runtime=runtime or os.environ.get("KTX_TEST_POD_RUNTIME", "process"),
            docker=os.environ.get("KTX_DOCKER", "docker"),
            container_mounts=container_mounts,
        )
        stack.enter_context(emulator)
        emulator.ensure_object(namespace, "serviceaccounts", {"metadata": {"name": "ktx-step"}})
        yield K8sTestCluster(
            kubeconfig=emulator.kubeconfig_path, namespace=namespace, data_dir=data_dir, emulator=emulator
        )


@pytest.fixture
def ktx_k8s_cluster(tmp_path: Path) -> Iterator[K8sTestCluster]:
    """A Kubernetes API (emulated, or KTX_TEST_KUBECONFIG's) for one test."""
    with k8s_test_cluster(tmp_path) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def ktx_k8s_cluster_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sTestCluster]:
    """Same, shared by the tests of one module."""
    with k8s_test_cluster(tmp_path_factory.mktemp("k8s")) as cluster:
        yield cluster


@contextlib.contextmanager
def postgres_or_skip() -> Iterator[Any]:
    """:func:`~ktx_dagster.testing.postgres.throwaway_postgres`, or skip the test saying what
    to install; with ``KTX_REQUIRE_POSTGRES=1`` fail instead (CI, where it must be there)."""
    from ktx_dagster.testing.postgres import PostgresUnavailable, throwaway_postgres

    required = os.environ.get("KTX_REQUIRE_POSTGRES", "").strip().lower() in ("1", "true", "yes")
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(throwaway_postgres())
        except PostgresUnavailable as exc:
            message = f"no PostgreSQL for the shared-instance tests: {exc}"
            if required:
                pytest.fail(f"{message} (KTX_REQUIRE_POSTGRES=1)", pytrace=False)
            pytest.skip(message)
        yield server


@pytest.fixture(scope="session")
def ktx_postgres() -> Iterator[Any]:
    """A throwaway PostgreSQL server (user and database ``dagster``) on a loopback port."""
    with postgres_or_skip() as server:
        yield server


__all__ = [
    "K8sTestCluster",
    "k8s_test_cluster",
    "ktx_k8s_cluster",
    "ktx_k8s_cluster_module",
    "ktx_postgres",
    "postgres_or_skip",
]
