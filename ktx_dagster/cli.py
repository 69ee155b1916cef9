"""`ktx` (or `python -m ktx_dagster`): partition discovery and materialization from a shell,
for any code location, named as Dagster's own CLI names one.

    ktx sync                                     # register partitions for new input files
    ktx materialize [--select hello_world] [--partition part_1 ...] [--missing]
    ktx materialize -m my_project.definitions    # -m MODULE [-a ATTR] | -f FILE | -w WORKSPACE

Without -m/-f/-w: the pyproject.toml of the current folder ([tool.dg.project] or
[tool.dagster]), else its workspace.yaml. Runs are recorded in the instance under
DAGSTER_HOME, so the Dagster UI shows them.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

import dagster as dg

from ktx_dagster.code_location import CodeLocation, CodeLocationError, resolve
from ktx_dagster.data_dir import DataDir, data_root
from ktx_dagster.partitions import partition_sources, sqlite_scale_warning


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_CODES = f"""exit status:
  {EXIT_OK}  every selected partition succeeded (or was already materialized, with --missing)
  {EXIT_FAILED}  a partition failed, or was skipped because its upstream failed, or nothing matched --select
  {EXIT_USAGE}  bad arguments, DAGSTER_HOME unset, or a code location that cannot be found or loaded (nothing ran)
"""


def instance_from_env() -> dg.DagsterInstance:
    if not os.environ.get("DAGSTER_HOME"):
        print("ktx: DAGSTER_HOME is not set: point it at a folder for the runs' records (make sets ./.dagster_home)",
              file=sys.stderr)
        sys.exit(EXIT_USAGE)
    os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
    # deploy/local/dagster.yaml reads the run queue's limit from env (make exports 2); the CLI
    # does not use the queue, so a shell without make must not fail on it.
    os.environ.setdefault("KTX_MAX_CONCURRENT_RUNS", "2")
    return dg.DagsterInstance.get()


def location_data_root(repo_def: dg.RepositoryDefinition):
    """The data root of a code location: its own `data_dir` resource, else KTX_DATA_DIR."""
    data_dir = repo_def.get_top_level_resources().get("data_dir")
    return data_dir.path if isinstance(data_dir, DataDir) else data_root()


def sync(location: CodeLocation, instance: dg.DagsterInstance, log=print) -> dict[str, list[str]]:
    """Register the partitions of the files present now, for every file-backed source of the
    location's assets; returns the new keys per source."""
    repo_def = location.load()
    root = location_data_root(repo_def)
    added = {}
    for source in partition_sources(list(repo_def.assets_defs_by_key.values())):
        new, total = source.register(instance, root)
        added[source.name] = new
        log(f"partitions {source.name}: {total} ({len(new)} new)")
        if not total:  # forgotten inputs: say where we looked and how to fix it, not just "0"
            log(f"  {source.no_inputs_message(root)}")
        if warning := sqlite_scale_warning(instance, source.name, total):
            print(f"ktx: warning: {warning}", file=sys.stderr)
    return added


def cmd_sync(args: argparse.Namespace, locations: list[CodeLocation], instance: dg.DagsterInstance) -> int:
    for location in locations:
        sync(location, instance)
    return EXIT_OK


def cmd_materialize(args: argparse.Namespace, locations: list[CodeLocation], instance: dg.DagsterInstance) -> int:
    from ktx_dagster import warm
    from ktx_dagster.deployment import max_concurrent
    from ktx_dagster.launch import materialize

    # One fork server serves the whole call: it resolves every location before the first run.
    preload = warm.preload_code_locations(locations)
    outcomes = []
    for location in locations:
        if len(locations) > 1:
            print(f"== code location {location.name or location.label}")
        sync(location, instance)
        outcomes += materialize(
            args.select, instance, args.max_concurrent or max_concurrent(), only_partitions=args.partition,
            location=location, missing_only=args.missing, preload=preload,
        )
    if not outcomes:
        print(f"nothing selected: no asset matches {' '.join(args.select or [])!r}")
        return EXIT_FAILED
    print("\nsummary:")
    failed = 0
    for o in outcomes:
        state = "skipped" if o.skipped else f"{len(o.succeeded)} ok, {len(o.failed)} failed"
        print(f"  {o.asset:<28} {state:<20} {o.seconds:6.1f}s")
        failed += len(o.failed) + o.skipped
    if failed:
        print("After a fix, re-run what failed or never ran: ktx materialize --missing")
    return EXIT_FAILED if failed else EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ktx", description=__doc__, epilog=EXIT_CODES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = argparse.ArgumentParser(add_help=False)
    group = where.add_argument_group("code location (default: ./pyproject.toml, else ./workspace.yaml)")
    group.add_argument("-m", "--module-name", dest="module", help="module holding the Definitions")
    group.add_argument("-f", "--python-file", dest="file", help="file holding the Definitions")
    group.add_argument("-a", "--attribute", help="the Definitions' attribute (default: found as Dagster finds it)")
    group.add_argument("-w", "--workspace", help="a workspace.yaml: every code location in it")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("sync", parents=[where], help="register partitions for the input files present now")
    m = sub.add_parser("materialize", parents=[where], help="every partition of the selected assets, one run each",
                       epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("--select", nargs="*", default=None, help="asset selection (default: all), e.g. group:spotify_mpc")
    m.add_argument("--partition", nargs="*", default=None, help="only these partition keys")
    m.add_argument("--missing", action="store_true",
                   help="only partitions not materialized yet (reuse finished work, re-run failures)")
    m.add_argument("--max-concurrent", type=int, default=None, help="runs at once (default KTX_MAX_CONCURRENT or #CPUs)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        locations = resolve(module=args.module, file=args.file, attribute=args.attribute, workspace=args.workspace)
        for location in locations:
            location.load()  # a broken location fails here, with its name, before any run
    except CodeLocationError as exc:
        print(f"ktx: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # the project's own code failed to import: its traceback says where
        print("ktx: the code location failed to load; nothing ran. Its traceback:", file=sys.stderr)
        traceback.print_exc()  # last, so the user's error is the last line they see
        return EXIT_USAGE
    instance = instance_from_env()
    commands = {"sync": cmd_sync, "materialize": cmd_materialize}
    return commands[args.command](args, locations, instance)


if __name__ == "__main__":
    sys.exit(main())
