"""What a registry entry without hyperparameters declares as its settings (losses, architectures, ...).

Its own module, importing nothing of ganforge, so that every registry and config.py can name it without
importing each other."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class NoSettings(BaseModel):
    """No settings: an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)
