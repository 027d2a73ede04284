"""The base of every configuration section model.

Each package that uses a section of ``gateway.toml`` declares its model next to its code
(``gateway/sync/config.py`` holds ``[mqtt]``, ``gateway/shelves/config.py`` ``[shelves]``...) and
turns it into its own domain objects; :mod:`gateway.config` only composes the sections, reads
the file and the environment and runs the checks that span sections. A section refuses
unknown keys (a misspelt option is an error, never silently ignored) and is immutable.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ConfigSection"]


class ConfigSection(BaseModel):
    """A ``[section]`` of the configuration: unknown keys refused, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
