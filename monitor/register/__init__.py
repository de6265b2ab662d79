"""The register: medmon's DuckDB file. Only this package imports duckdb (STYLE S2)."""

from monitor.register.schema import (
    SCHEMA_VERSION,
    Register,
    RegisterBusy,
    RegisterError,
    open_register,
)

__all__ = ["SCHEMA_VERSION", "Register", "RegisterBusy", "RegisterError", "open_register"]
