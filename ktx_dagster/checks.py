"""Asset checks for transformations: small, generic rules evaluated on every stored partition.

    from ktx_dagster.checks import non_empty, row_count, has_columns, unique, in_range, output_checks

    part_checks = output_checks(
        standardize,
        non_empty(),
        has_columns({"pid": "int64", "name": "object"}),
        unique("pid"),
        in_range("num_tracks", min=1),
    )

`output_checks` builds ONE Dagster check step per asset (a `@multi_asset_check`): it loads the
stored partition through the IO manager, exactly as a downstream transformation would read it,
and evaluates every rule on it. A rule that raises is reported as a failed check naming the
error; the others still run. The checks are partitioned like their asset, so the UI shows a
result per partition, and a backfill of the asset runs them with each partition's run (a
blocking check that fails fails that run, so downstream assets of that run do not execute).

A rule is a `Check`: a name, a description and a function `(value, CheckContext) -> outcome`,
where the outcome is a bool, `(bool, metadata)` or a full `dg.AssetCheckResult`. The builders
below cover the usual cases; `check(...)` wraps any function.

`@transformation(checks=[...])` runs the same rules inside the transformation's own step,
right after its output is stored (`checked_after_output`): one process, or one pod, per
partition. Prefer it; `output_checks` remains for assets that are not transformations, or
for checks added to an asset defined elsewhere.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from upath import UPath

from ktx_dagster.data_dir import DataDir

Outcome = bool | tuple[bool, Mapping[str, Any]] | dg.AssetCheckResult


@dataclass(frozen=True)
class CheckContext:
    """What a rule may need besides the stored value: which partition, and the data root."""

    asset_key: dg.AssetKey
    partition_key: str | None
    root: UPath
    log: Any
    instance: Any = None  # the Dagster instance (dynamic partitions, other assets' records)

    def path(self, relative: str) -> UPath:
        return self.root / relative

    @classmethod
    def of(cls, context: Any, asset_key: dg.AssetKey, data_dir: DataDir) -> CheckContext:
        """For the step running the rules: its partition, log and instance, and the data root."""
        return cls(
            asset_key=asset_key,
            partition_key=context.partition_key if context.has_partition_key else None,
            root=data_dir.path,
            log=context.log,
            instance=context.instance,
        )


@dataclass(frozen=True)
class Check:
    """One rule on a stored output.

    A failed rule is reported (ERROR or WARN severity) and the run goes on; a `blocking` rule
    that fails with ERROR severity fails the check step, hence the run, so the partition shows
    as failed in its backfill and downstream assets of that run do not execute.
    """

    name: str
    fn: Callable[[Any, CheckContext], Outcome]
    description: str = ""
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
    blocking: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def warn(self) -> Check:
        """The same rule reported as a warning (never blocks)."""
        return Check(self.name, self.fn, self.description, dg.AssetCheckSeverity.WARN, False, self.metadata)

    def blocks(self) -> Check:
        """The same rule, failing the run (and skipping its downstream assets) when it fails."""
        return Check(self.name, self.fn, self.description, self.severity, True, self.metadata)


def check(name: str, description: str = "", **kwargs: Any) -> Callable[[Callable[[Any, CheckContext], Outcome]], Check]:
    """Decorator: a function `(value, ctx) -> bool | (bool, metadata) | AssetCheckResult` becomes a Check."""

    def wrap(fn: Callable[[Any, CheckContext], Outcome]) -> Check:
        return Check(name=name, fn=fn, description=description or (fn.__doc__ or "").strip(), **kwargs)

    return wrap


# --- what a stored value looks like to the rules ---------------------------------------------


def _is_frame(value: Any) -> bool:
    return hasattr(value, "columns") and hasattr(value, "dtypes")


def _as_frame(value: Any) -> Any:
    """pandas DataFrame for DataFrames and pyarrow Tables; TypeError for anything else."""
    if _is_frame(value):
        return value
    if hasattr(value, "to_pandas") and hasattr(value, "schema"):
        return value.to_pandas()
    raise TypeError(f"expects a table (DataFrame / pyarrow Table), got a {type(value).__name__}")


def count_rows(value: Any) -> int:
    """Rows of a table, lines of a text, items of a list/dict, length of the first axis."""
    if value is None:
        return 0
    if isinstance(value, str):
        return value.count("\n") + (0 if value.endswith("\n") or not value else 1)
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if hasattr(value, "num_rows"):  # pyarrow Table
        return int(value.num_rows)
    if hasattr(value, "shape") and getattr(value, "shape", None):
        return int(value.shape[0])
    return len(value)


def _column(value: Any, column: str | None) -> Any:
    if column is None:
        import pandas as pd

        if isinstance(value, str):
            return pd.Series(value.splitlines())
        return pd.Series(list(value.values()) if isinstance(value, Mapping) else list(value))
    frame = _as_frame(value)
    if column not in frame.columns:
        raise KeyError(f"no column {column!r}; columns are {list(map(str, frame.columns))}")
    return frame[column]


def _sample(values: Iterable[Any], limit: int = 5) -> str:
    return ", ".join(repr(v) for v in list(values)[:limit])


# --- builders ----------------------------------------------------------------------------------


def non_empty(name: str = "non_empty") -> Check:
    """The output holds at least one row / line / item (a table with no rows fails)."""

    def fn(value: Any, ctx: CheckContext) -> Outcome:
        rows = count_rows(value)
        return rows > 0, {"rows": rows}

    return Check(name, fn, "The stored output is not empty.")


def row_count(min: int | None = None, max: int | None = None, *, name: str = "row_count") -> Check:
    """min <= rows <= max (either bound may be left out)."""
    if min is None and max is None:
        raise ValueError("row_count: give min, max or both")
    bounds = f"{'' if min is None else f'{min} <= '}rows{'' if max is None else f' <= {max}'}"

    def fn(value: Any, ctx: CheckContext) -> Outcome:
        rows = count_rows(value)
        ok = (min is None or rows >= min) and (max is None or rows <= max)
        return ok, {"rows": rows, "expected": bounds}

    return Check(name, fn, f"Row count within bounds: {bounds}.")


def has_columns(
    columns: Sequence[str] | Mapping[str, str], *, exact: bool = False, name: str = "schema"
) -> Check:
    """The table has these columns (and dtypes, when given as a mapping); `exact`: no others."""
    wanted = dict(columns) if isinstance(columns, Mapping) else {c: None for c in columns}

    def fn(value: Any, ctx: CheckContext) -> Outcome:
        frame = _as_frame(value)
        actual = {str(c): str(t) for c, t in frame.dtypes.items()}
        missing = [c for c in wanted if c not in actual]
        wrong = {c: f"{actual[c]} (expected {t})" for c, t in wanted.items() if t and c in actual and actual[c] != t}
        extra = [c for c in actual if c not in wanted] if exact else []
        problems = {
            **({"missing": ", ".join(missing)} if missing else {}),
            **({"wrong dtypes": "; ".join(f"{c}: {d}" for c, d in wrong.items())} if wrong else {}),
            **({"unexpected": ", ".join(extra)} if extra else {}),
        }
        return not problems, {"columns": dg.MetadataValue.json(actual), **problems}

    listed = ", ".join(f"{c}: {t}" if t else c for c, t in wanted.items())
    return Check(name, fn, f"Columns present{' (and no others)' if exact else ''}: {listed}.")


def unique(column: str | Sequence[str] | None = None, *, name: str | None = None) -> Check:
    """No duplicate values in `column`, or combinations of values when given several columns
    (or among the items / lines when column is None)."""
    columns = [column] if isinstance(column, str) else list(column or [])

    def fn(value: Any, ctx: CheckContext) -> Outcome:
        data = _column(value, column) if len(columns) <= 1 else _as_frame(value)[[_column(value, c).name for c in columns]]
        dupes = data[data.duplicated(keep=False)]
        distinct = dupes.drop_duplicates()
        return dupes.empty, {
            "duplicated_rows": int(len(dupes)),
            **({"examples": _sample(distinct if distinct.ndim == 1 else distinct.itertuples(index=False, name=None))}
               if not dupes.empty else {}),
        }

    what = f"column {column!r}" if len(columns) == 1 else f"columns {columns}" if columns else "items"
    return Check(name or (f"unique_{'_'.join(columns)}" if columns else "unique"), fn, f"No duplicate values in {what}.")


def in_range(
    column: str | None = None,
    min: float | None = None,
    max: float | None = None,
    *,
    allow_null: bool = False,
    name: str | None = None,
) -> Check:
    """Every value of `column` satisfies min <= value <= max (nulls fail unless allow_null)."""
    if min is None and max is None:
        raise ValueError("in_range: give min, max or both")
    bounds = f"{'' if min is None else f'{min} <= '}{column or 'value'}{'' if max is None else f' <= {max}'}"

    def fn(value: Any, ctx: CheckContext) -> Outcome:
        series = _column(value, column)
        nulls = series.isna()
        bad = series[~nulls]
        outside = bad[((bad < min) if min is not None else False) | ((bad > max) if max is not None else False)]
        n_null = 0 if allow_null else int(nulls.sum())
        meta: dict[str, Any] = {"outside": int(len(outside)), "nulls": int(nulls.sum()), "expected": bounds}
        if len(bad):
            lo, hi = bad.min(), bad.max()
            meta["min"] = float(lo) if isinstance(lo, (int, float)) and not math.isnan(float(lo)) else str(lo)
            meta["max"] = float(hi) if isinstance(hi, (int, float)) and not math.isnan(float(hi)) else str(hi)
        if len(outside):
            meta["examples"] = _sample(outside)
        return len(outside) == 0 and n_null == 0, meta

    return Check(name or (f"{column}_in_range" if column else "in_range"), fn, f"Values within bounds: {bounds}.")


def all_lines(
    predicate: Callable[[str], bool], *, name: str, description: str, max_examples: int = 3
) -> Check:
    """Every line of a text output satisfies `predicate` (an empty text passes)."""

    def fn(value: Any, ctx: CheckContext) -> Outcome:
        if not isinstance(value, str):
            raise TypeError(f"expects a text output, got a {type(value).__name__}")
        lines = value.splitlines()
        bad = [(i, line) for i, line in enumerate(lines, 1) if not predicate(line)]
        meta: dict[str, Any] = {"lines": len(lines), "failing_lines": len(bad)}
        if bad:
            meta["examples"] = "; ".join(f"line {i}: {line[:80]!r}" for i, line in bad[:max_examples])
        return not bad, meta

    return Check(name, fn, description)


# --- evaluation --------------------------------------------------------------------------------


def evaluate(checks: Sequence[Check], value: Any, ctx: CheckContext) -> Iterator[dg.AssetCheckResult]:
    """One AssetCheckResult per rule; a rule that raises fails with the error as metadata."""
    for rule in checks:
        try:
            outcome = rule.fn(value, ctx)
        except Exception as exc:  # a broken rule or an unexpected value: report, don't crash
            ctx.log.warning(f"check {rule.name} on {ctx.asset_key.to_user_string()} raised {exc!r}")
            outcome = (False, {"error": f"{type(exc).__name__}: {exc}"})
        if isinstance(outcome, dg.AssetCheckResult):
            yield dg.AssetCheckResult(
                asset_key=ctx.asset_key,
                check_name=rule.name,
                passed=outcome.passed,
                severity=outcome.severity,
                metadata=outcome.metadata,
                description=outcome.description,
            )
            continue
        passed, metadata = (outcome, {}) if isinstance(outcome, bool) else outcome
        yield dg.AssetCheckResult(
            asset_key=ctx.asset_key,
            check_name=rule.name,
            passed=bool(passed),
            severity=rule.severity,
            metadata={**({"partition": ctx.partition_key} if ctx.partition_key else {}), **dict(metadata)},
        )


def check_specs(
    asset_key: dg.AssetKey | str,
    checks: Sequence[Check],
    partitions_def: dg.PartitionsDefinition | None = None,
) -> list[dg.AssetCheckSpec]:
    """Specs for these rules; partitioned like the asset so results are per partition."""
    names = [c.name for c in checks]
    if len(set(names)) != len(names):
        raise ValueError(f"check names must be unique per asset, got {names}")
    with warnings.catch_warnings():
        # partitions_def on AssetCheckSpec is a preview feature in Dagster 1.13; it is what
        # gives one result per partition, and it is covered by our tests.
        warnings.simplefilter("ignore", category=dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(
                c.name,
                asset=asset_key,
                description=c.description or None,
                blocking=c.blocking,
                metadata=dict(c.metadata) or None,
                partitions_def=partitions_def,
            )
            for c in checks
        ]


def checked_after_output(
    fn: Callable[..., Any], asset_key: dg.AssetKey, checks: Sequence[Check]
) -> Callable[..., Iterator[Any]]:
    """The task `fn`, then its checks in the same step: `@transformation(checks=...)`.

    The output is yielded first, so Dagster stores it through the IO manager before the rules
    run; the rules see the value the task returned (the IO manager round-trips it, and its
    tests prove that), so nothing is read back. A failed blocking rule fails the step after
    the output is stored, as a separate check step would, and its downstream does not run.
    One process locally and one pod on Kubernetes per partition, instead of two.
    """

    # The rules need the data root (CheckContext.root): the task's own DataDir parameter if it
    # has one, else one added to the signature Dagster reads (it injects resources by annotation
    # and refuses required_resource_keys beside resource parameters).
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    own = next((name for name in signature.parameters if hints.get(name) is DataDir), None)
    added = None if own else "data_dir"  # a resource parameter's name is its resource key
    if added and added in signature.parameters:
        raise TypeError(f"{asset_key.to_user_string()}: checks= needs the data_dir resource, but the task's "
                        "parameter data_dir is not annotated DataDir; annotate it (data_dir: DataDir)")

    @functools.wraps(fn)
    def task(*args: Any, **kwargs: Any) -> Iterator[Any]:
        data_dir: DataDir = kwargs.pop(added) if added else kwargs[own]
        result = fn(*args, **kwargs)
        if isinstance(result, dg.MaterializeResult) or inspect.isgenerator(result):
            raise TypeError(
                f"{asset_key.to_user_string()}: checks= needs the task to return its output value "
                f"(it returned a {type(result).__name__}); yield the AssetCheckResults yourself instead"
            )
        output = result if isinstance(result, dg.Output) else dg.Output(result)
        yield output
        ctx = CheckContext.of(dg.AssetExecutionContext.get(), asset_key, data_dir)
        yield from evaluate(checks, output.value, ctx)

    if added:
        extra = inspect.Parameter(added, inspect.Parameter.KEYWORD_ONLY, annotation=DataDir)
        params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        tail = [p for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
        task.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*params, extra, *tail],
            return_annotation=inspect.Signature.empty,
        )
        task.__annotations__ = {**hints, added: DataDir}
    return task


def output_checks(
    asset: dg.AssetsDefinition, *checks: Check, name: str | None = None
) -> dg.AssetChecksDefinition:
    """One check step for `asset`: load its stored partition via the IO manager, run `checks`."""
    if not checks:
        raise ValueError("output_checks: give at least one check")
    key = asset.key
    specs = check_specs(key, checks, asset.partitions_def)
    # The check step reads what the task wrote, so it gets the task's own pod resources.
    op_tags = {k: v for k, v in (asset.op.tags or {}).items() if k.startswith(("dagster-k8s/", "ktx/"))}

    @dg.multi_asset_check(
        specs=specs,
        name=name or f"{key.to_python_identifier()}_checks",
        ins={"value": dg.AssetIn(key=key)},
        op_tags=op_tags or None,
        required_resource_keys={"data_dir"},
        description=f"Checks on the stored output of {key.to_user_string()}: "
        + ", ".join(c.name for c in checks),
    )
    # No annotations here: this module uses postponed annotations, which Dagster's context and
    # resource detection cannot read; the data root comes from the `data_dir` resource.
    def _checks(context, value):
        yield from evaluate(checks, value, CheckContext.of(context, key, context.resources.data_dir))

    return _checks
