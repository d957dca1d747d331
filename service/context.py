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
        # Reads need no transaction: at READ COMMITTED every statement takes its own snapshot inside one
        # anyway, so BEGIN and ROLLBACK around a read are two round trips that change nothing. `reader`
        # sessions (service/reads/) run on autocommit connections of the same pool; they never write.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.reader = async_sessionmaker(self._autocommit, expire_on_commit=False, class_=AsyncSession)

    def read_connection(self):
        """A Core connection for reads on the hot pages (no ORM entities, no transaction around them)."""
        return self._autocommit.connect()

    async def read_one(self, statement, params: dict):
        """The one row of a read-only `statement`, in one round trip (no transaction around it)."""
        async with self.read_connection() as conn:
            return (await conn.execute(statement, params)).one()

    def now(self):
        return self.clock.now()
