"""Unit of work: one transaction per use case; rolls back unless the block finishes."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession

from service.context import Services


@asynccontextmanager
async def unit_of_work(svc: Services) -> AsyncIterator[AsyncSession]:
    async with svc.sessionmaker() as session:
        async with session.begin():
            yield session
