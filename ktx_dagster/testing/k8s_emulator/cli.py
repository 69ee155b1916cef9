"""`python -m ktx_dagster.testing.k8s_emulator`: one emulator in the foreground."""

from __future__ import annotations

import time

from ktx_dagster.testing.k8s_emulator.emulator import KubeEmulator


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
