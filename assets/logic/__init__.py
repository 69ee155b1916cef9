"""Plain, unit-tested logic that asset bodies call; no Dagster here."""
