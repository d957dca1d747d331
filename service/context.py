"""The service's shared handles: the database engine, its session factory, and the clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.clock import Clock


@dataclass
class Services:
    engine: AsyncEngine
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

    def now(self):
        return self.clock.now()
