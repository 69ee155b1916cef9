"""Which code location the CLI works on, named the way Dagster's own CLI names one.

    ktx materialize -m my_project.definitions [-a defs]    # a module
    ktx materialize -f path/to/definitions.py [-a defs]    # a file
    ktx materialize -w workspace.yaml                      # every location of a workspace
    ktx materialize                                        # ./pyproject.toml, else ./workspace.yaml

With no option the CLI reads the pyproject.toml of the current folder: `[tool.dg.project]`
(`root_module`, and `code_location_target_module`, default `<root_module>.definitions`, as
`create-dagster project` writes it) or `[tool.dagster]` (`module_name` or `python_file`,
`attribute`, `working_directory`, as `dagster dev` reads it); without either, the
workspace.yaml of the current folder. The attribute is found as Dagster finds it (a
`Definitions` object or a `@dg.definitions` function at module scope) unless given.
"""

from __future__ import annotations

import functools
import json
import os
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import yaml

from ktx_dagster.compat import (
    DagsterImportError,
    ReconstructableRepository,
    loadable_targets_from_python_file,
    loadable_targets_from_python_module,
)


class CodeLocationError(ValueError):
    """A code location that cannot be found or loaded; the message says which and why."""


@dataclass(frozen=True)
class CodeLocation:
    """A module or a file holding a code location's Definitions (and the attribute)."""

    module: str | None = None
    file: str | None = None
    attribute: str | None = None
    working_directory: str | None = None
    name: str | None = None  # the location name (workspace.yaml's location_name)

    def __post_init__(self) -> None:
        if (self.module is None) == (self.file is None):
            raise CodeLocationError("a code location is a module (-m) or a file (-f), exactly one")

    @property
    def label(self) -> str:
        where = self.module or self.file
        return f"{where}:{self.attribute}" if self.attribute else str(where)

    def _cwd(self) -> str:
        return os.path.abspath(self.working_directory or os.getcwd())

    def resolve_attribute(self) -> str:
        """The attribute holding the Definitions: given, or found in the module as Dagster does."""
        return self._attribute

    @functools.cached_property
    def _attribute(self) -> str:
        if self.attribute:
            return self.attribute
        try:
            if self.module:
                targets = loadable_targets_from_python_module(self.module, self._cwd())
            elif not os.path.isfile(self.file):
                raise FileNotFoundError(self.file)
            else:
                targets = loadable_targets_from_python_file(self.file, self._cwd())
        except DagsterImportError as exc:
            missing = exc.__cause__
            if isinstance(missing, ModuleNotFoundError) and missing.name and str(self.module).startswith(missing.name):
                raise CodeLocationError(
                    f"code location module {self.module!r} does not exist (no module named {missing.name!r} "
                    f"with working directory {self._cwd()}); check the name, install your project "
                    "(pip install -e .) or run from its folder"
                ) from None
            raise  # the module exists and an import inside it failed: the user's traceback says where
        except FileNotFoundError:
            raise CodeLocationError(f"code location file {self.file!r} does not exist") from None
        except dg.DagsterInvariantViolationError as exc:
            raise CodeLocationError(
                f"code location {self.label} holds no Definitions: {exc} Define one at module scope, "
                "e.g. `defs = ktx_dagster.definitions_for(assets=[...])`"
            ) from None
        names = [t.attribute for t in targets]
        kinds = (dg.Definitions, dg.RepositoryDefinition)
        usable = [t.attribute for t in targets if isinstance(t.target_definition, kinds) or callable(t.target_definition)]
        if len(usable) != 1:
            raise CodeLocationError(
                f"code location {self.label} holds no single Definitions (found {names}); define "
                "`defs = ktx_dagster.definitions_for(assets=[...])` or name it with -a"
            )
        return usable[0]

    def reconstructable(self) -> ReconstructableRepository:
        attribute = self.resolve_attribute()
        if self.module:
            return ReconstructableRepository.for_module(self.module, attribute, self._cwd())
        return ReconstructableRepository.for_file(os.path.abspath(self.file), attribute, self._cwd())

    def load(self) -> dg.RepositoryDefinition:
        """The location's repository, imported and resolved once per CodeLocation: the CLI asks
        for it to check, sync and plan, and a `@dg.definitions` function (what dg projects
        scaffold) would otherwise build every component again each time."""
        return self._repository

    @functools.cached_property
    def _repository(self) -> dg.RepositoryDefinition:
        try:
            return self.reconstructable().get_definition()
        except AttributeError as exc:
            raise CodeLocationError(f"code location {self.label}: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CodeLocation:
        return cls(**json.loads(text))


def from_workspace(path: str | os.PathLike) -> list[CodeLocation]:
    """The python_module / python_file locations of a workspace.yaml, relative to its folder."""
    path = Path(path)
    if not path.is_file():
        raise CodeLocationError(f"workspace file {str(path)!r} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    folder = path.resolve().parent
    locations = []
    for i, entry in enumerate(data.get("load_from") or []):
        kind, spec = next(iter(entry.items()))
        spec = {"module_name": spec} if isinstance(spec, str) and kind == "python_module" else spec
        spec = {"relative_path": spec} if isinstance(spec, str) and kind == "python_file" else spec
        workdir = str(folder / spec["working_directory"]) if spec.get("working_directory") else str(folder)
        common = {"attribute": spec.get("attribute"), "working_directory": workdir, "name": spec.get("location_name")}
        if kind == "python_module":
            locations.append(CodeLocation(module=spec["module_name"], **common))
        elif kind == "python_file":
            locations.append(CodeLocation(file=str(folder / spec["relative_path"]), **common))
        else:
            raise CodeLocationError(
                f"{path}: load_from[{i}] is {kind!r}; the ktx CLI loads python_module and python_file entries"
            )
    if not locations:
        raise CodeLocationError(f"{path}: no code location under load_from")
    return locations


def from_pyproject(path: str | os.PathLike) -> list[CodeLocation]:
    """`[tool.dg.project]` or `[tool.dagster]` of a pyproject.toml; [] when it has neither."""
    path = Path(path)
    folder = str(path.resolve().parent)
    tool = tomllib.loads(path.read_text()).get("tool", {})
    project = tool.get("dg", {}).get("project")
    if project and project.get("root_module"):
        module = project.get("code_location_target_module") or f"{project['root_module']}.definitions"
        return [CodeLocation(module=module, working_directory=folder, name=project.get("code_location_name"))]
    dagster = tool.get("dagster")
    if dagster and (dagster.get("module_name") or dagster.get("python_file")):
        workdir = os.path.join(folder, dagster["working_directory"]) if dagster.get("working_directory") else folder
        common = {"attribute": dagster.get("attribute"), "working_directory": workdir,
                  "name": dagster.get("code_location_name")}
        if dagster.get("module_name"):
            return [CodeLocation(module=dagster["module_name"], **common)]
        return [CodeLocation(file=os.path.join(folder, dagster["python_file"]), **common)]
    return []


def resolve(
    module: str | None = None,
    file: str | None = None,
    attribute: str | None = None,
    workspace: str | None = None,
    cwd: str | None = None,
) -> list[CodeLocation]:
    """The code locations the CLI's options name (see the module docstring for the defaults)."""
    given = [x for x in (module, file, workspace) if x]
    if len(given) > 1:
        raise CodeLocationError("name one code location: -m MODULE, -f FILE or -w WORKSPACE")
    cwd = os.path.abspath(cwd or os.getcwd())
    if module:
        return [CodeLocation(module=module, attribute=attribute, working_directory=cwd)]
    if file:
        return [CodeLocation(file=os.path.abspath(file), attribute=attribute, working_directory=cwd)]
    if workspace:
        return from_workspace(workspace)
    pyproject = Path(cwd) / "pyproject.toml"
    if pyproject.is_file():
        found = from_pyproject(pyproject)
        if found:
            return found
    if (Path(cwd) / "workspace.yaml").is_file():
        return from_workspace(Path(cwd) / "workspace.yaml")
    raise CodeLocationError(
        f"no code location named and none configured in {cwd}: pass -m your_project.definitions, "
        "-f definitions.py or -w workspace.yaml, or add [tool.dg.project] root_module (or "
        "[tool.dagster] module_name) to ./pyproject.toml"
    )


def describe(locations: Sequence[CodeLocation]) -> str:
    return ", ".join(loc.name or loc.label for loc in locations)
