"""A hook for tests (APP_ENV=test only): fail or pause a provisioning step of one tenant.

`TENANCY_TEST_FAULTS` names a JSON file, read before each step, mapping slugs to steps:
`{"acme": {"seed_defaults": "fail"}, "slow": {"add_owner": "pause:3"}, "held": {"migrate_schema":
"hold"}}`: fail the step for good, sleep before it, or wait before it for as long as the entry
is there. A test writes it, watches, removes the entry and retries. Production refuses the
setting.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from temporalio.exceptions import ApplicationError


@dataclass(frozen=True)
class Faults:
    path: Path | None = None

    async def before(self, slug: str, step: str) -> None:
        if self.path is None:
            return
        planned = self._planned(slug, step)
        while planned == "hold":
            await asyncio.sleep(0.05)
            planned = self._planned(slug, step)
        if planned == "fail":
            raise ApplicationError(
                f"injected failure before {step}", type="InjectedFault", non_retryable=True
            )
        if isinstance(planned, str) and planned.startswith("pause:"):
            await asyncio.sleep(float(planned.removeprefix("pause:")))

    def _planned(self, slug: str, step: str) -> str | None:
        try:
            return json.loads(self.path.read_text()).get(slug, {}).get(step)  # type: ignore[union-attr]
        except (OSError, ValueError):
            return None
