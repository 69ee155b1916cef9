"""ktx-dagster's `dg` Components (registered with the `dagster_dg_cli.registry_modules` entry
point, so `dg list components` lists them). Only Component classes belong in this module:
dg registers every Component subclass it finds here."""

from ktx_dagster.components.transformations import Transformations

__all__ = ["Transformations"]
