"""Where the ops CLI finds the control plane and its admin token: flags, env, then state dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ADMIN_URL = "http://127.0.0.1:9000"


class OpsSettings(BaseSettings):
    """TTSGW_ADMIN_URL, TTSGW_ADMIN_TOKEN and TTSGW_STATE_DIR; flags override them."""

    model_config = SettingsConfigDict(env_prefix="TTSGW_", extra="ignore")

    admin_url: str = DEFAULT_ADMIN_URL
    admin_token: str | None = None
    state_dir: Path = Path(".ttsgw")

    @property
    def token_file(self) -> Path:
        return self.state_dir / "admin-token"


@dataclass(frozen=True)
class Credentials:
    token: str | None
    # Said in the 401 message, so ops know which token was refused.
    source: str | None


def resolve_credentials(settings: OpsSettings, flag_token: str | None) -> Credentials:
    """The same order `ttsgw up` uses, so a CLI beside a local stack needs no flags."""
    if flag_token:
        return Credentials(flag_token, "--token")
    if settings.admin_token:
        return Credentials(settings.admin_token, "TTSGW_ADMIN_TOKEN")
    try:
        token = settings.token_file.read_text().strip()
    except OSError:
        return Credentials(None, None)
    return Credentials(token or None, str(settings.token_file) if token else None)


def token_help(settings: OpsSettings) -> str:
    return (
        "the CLI takes the token from --token, else TTSGW_ADMIN_TOKEN, else "
        f"STATE_DIR/admin-token (--state-dir or TTSGW_STATE_DIR; here {settings.token_file})"
    )
