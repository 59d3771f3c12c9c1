"""The studio's config: where it listens, where it keeps its files, the limits it holds to.

    ojt studio --workspace studio --port 8765
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, model_validator

from onthejob.config import Section, cross_field

MAX_UPLOAD_MB = 10_240


class StudioConfig(Section):
    """What one studio serves and accepts."""

    workspace: Path = Field(Path("studio"), description="folder holding everything the studio makes: uploads, runs, reports, reviews, its database")
    host: str = Field("127.0.0.1", description="address to listen on; anything but loopback needs api_key")
    port: int = Field(8765, ge=0, le=65535, description="port to listen on")
    api_key: str | None = Field(None, description="require this token on every API call (the page asks for it once); none = $ONTHEJOB_API_KEY")
    max_upload_mb: int = Field(100, ge=1, le=MAX_UPLOAD_MB, description="largest file an upload may be, in MB")
    max_running: int = Field(1, ge=1, le=16, description="training, compare, synth and index jobs run at once; the rest wait in a queue")

    @model_validator(mode="after")
    def _key_off_loopback(self) -> StudioConfig:
        if not is_loopback(self.host) and not self.api_key:
            raise cross_field(("host, api_key", f"listening on {self.host} lets other machines in; set an api_key (or $ONTHEJOB_API_KEY) first"))
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
