"""Test helpers shipped with ktx-dagster: a Kubernetes API emulator and pytest fixtures.

* :mod:`ktx_dagster.testing.k8s_emulator` -- ``KubeEmulator``: the Kubernetes API over
  loopback HTTP plus a process "kubelet" (see its docstring for what it does not do).
* :mod:`ktx_dagster.testing.pytest_plugin` -- ``ktx_k8s_cluster`` fixtures (emulator, or
  the real cluster named by ``KTX_TEST_KUBECONFIG``).
* :mod:`ktx_dagster.testing.k8s_rules` -- Kubernetes name/label validity rules.
* :mod:`ktx_dagster.testing.postgres` -- a throwaway PostgreSQL server from Debian's
  ``postgresql`` binaries (fixture ``ktx_postgres`` in the pytest plugin).

Nothing here is imported by ``import ktx_dagster``; production code never needs it.
"""
