"""The tracking service's own settings (env prefix CME_, like the shared ones)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from shared.identifiers import ascii_digits
from shared.settings import Settings


class PeerConfig(BaseModel):
    """Another deployment this one exchanges cross-LA queries with."""

    url: str = Field(pattern=r"^https?://")
    secret: SecretStr = Field(min_length=32)  # shared with that peer only
    las: list[str] = Field(min_length=1)  # the LAs it serves: it may speak for these and no other

    @field_validator("las")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        if not all(len(c) == 3 and ascii_digits(c) for c in value):
            raise ValueError("LA codes are three digits")
        return value


class TrackingSettings(Settings):
    # Table store of the faust worker: RocksDB (via rocksdict) in production, memory in unit tests;
    # "auto" picks RocksDB when rocksdict is installed.
    tracking_store: Literal["auto", "rocksdb", "memory"] = "auto"
    tracking_worker_name: str = "tracking"
    # Micro-batches of the worker's agents: at most this many records per batch (one identity transaction,
    # one projection transaction, one wait for the broker's acks) ...
    tracking_batch_max: int = Field(default=200, ge=1, le=5000)
    # ... and no longer than this waiting for more: the added latency of a lone record (per agent; under a
    # backlog batches fill from what the consumer has already fetched, so a short linger costs no throughput).
    tracking_batch_within_s: float = Field(default=0.01, gt=0, le=5)
    # Tracking's progress marks on the transitions topic (docs/ESCALATION.md "Tracking's lag in the
    # watermark"): at most one per partition per this many seconds, and how often idle partitions are checked.
    tracking_progress_interval_s: float = Field(default=1.0, gt=0, le=60)
    # The LAs this deployment serves (comma-separated codes; empty: every LA). A child who leaves for an LA
    # outside it cannot be handed over: the case waits for a person to record that LA's confirmation.
    tracking_deployment_las: str = Field(default="", pattern=r"^([0-9]{3}(,[0-9]{3})*)?$")

    # Cross-LA matching (docs/TRACKING.md "Found anywhere"): LAs that have switched it off (comma-separated
    # codes). Such an LA's children are neither sought in nor found for other LAs; its caseworkers see so.
    tracking_cross_la_off: str = Field(default="", pattern=r"^([0-9]{3}(,[0-9]{3})*)?$")
    # Each LA's CME team contact (LA code -> a team mailbox or phone), told to the other LA of a cross-LA
    # match: staff contact only, never a child's data. JSON in the environment: CME_TRACKING_LA_CONTACTS.
    tracking_la_contacts: dict[str, str] = Field(default_factory=dict)
    # Found anywhere across deployments (docs/TRACKING.md "Between deployments"): this deployment's id as its
    # peers know it, and its peers: JSON {"<peer id>": {"url": ..., "secret": ..., "las": ["803", ...]}}
    # (CME_TRACKING_PEERS). The secret is agreed with that peer alone; it keys both the request signatures and
    # the hashed identifiers. Empty: no peers, the deployment behaves as one.
    tracking_deployment_id: str = Field(default="", max_length=64, pattern=r"^[a-z0-9-]*$")
    tracking_peers: dict[str, PeerConfig] = Field(default_factory=dict)
    # How often the API's sender delivers queued peer messages (and retries failed ones).
    tracking_peer_poll_s: float = Field(default=1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _peers_need_an_id(self) -> TrackingSettings:
        if self.tracking_peers and not self.tracking_deployment_id:
            raise ValueError(
                "CME_TRACKING_PEERS needs CME_TRACKING_DEPLOYMENT_ID (this deployment's id at its peers)"
            )
        return self

    @property
    def cross_la_off(self) -> frozenset[str]:
        return frozenset(c for c in self.tracking_cross_la_off.split(",") if c)

    @property
    def deployment_las(self) -> frozenset[str] | None:
        codes = frozenset(c for c in self.tracking_deployment_las.split(",") if c)
        return codes or None


def tracking_settings(base: Settings | None = None) -> TrackingSettings:
    """Tracking settings from the environment, or carrying over an explicit shared Settings object."""
    if base is None:
        return TrackingSettings()
    if isinstance(base, TrackingSettings):
        return base
    return TrackingSettings(**base.model_dump())
