"""ECB_FX_CROSS: cross rates derived from the ECB's euro rates whenever ECB_FX loads them.

It subscribes to `#ECB_FX.*`; it takes no parameters, and reads the fulfilled subscription (the
updated ids by date) from `ctx.subscription`.
GBPUSD, for example, is EURUSD / EURGBP.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from procexec import Observation, PhaseContext, Process


class NoParams(BaseModel):
    """ECB_FX_CROSS takes no parameters of its own."""


#: cross pairs (base, quote): base/quote = EUR<quote> / EUR<base>
CROSSES = (
    ("GBP", "USD"),
    ("USD", "JPY"),
    ("USD", "CHF"),
    ("AUD", "USD"),
    ("USD", "CAD"),
    ("GBP", "JPY"),
)

ECB_FX_CROSS = Process(
    "ECB_FX_CROSS",
    service="ETL",
    description="Cross rates derived from the ECB euro reference rates",
    subscriptions=("#ECB_FX.*",),
    params=NoParams,
    timeout=300,
)


def _euro_id(currency: str) -> str:
    return f"#ECB_FX.EUR{currency}:SPOT"


@ECB_FX_CROSS.phase("EXTRACT")
def extract(ctx: PhaseContext, _: Any) -> dict[str, dict[str, float]]:
    """The euro rates of the subscribed dates, read back from the store."""
    dates = sorted((ctx.subscription or {}).get("series", {}))
    if not dates:
        raise ValueError("no subscribed series dates in the input: nothing to derive")
    needed = {currency for pair in CROSSES for currency in pair}
    rates: dict[str, dict[str, float]] = {date: {} for date in dates}
    for currency in sorted(needed):
        series = ctx.series(_euro_id(currency))
        for date in dates:
            if date in series:
                rates[date][currency] = series[date]
    return rates


@ECB_FX_CROSS.phase("TRANSFORM")
def transform(ctx: PhaseContext, rates: dict[str, dict[str, float]]) -> list[Observation]:
    rows = []
    for date, euro in rates.items():
        for base, quote in CROSSES:
            if base in euro and quote in euro:
                rows.append(
                    Observation(
                        f"#ECB_FX_CROSS.{base}{quote}:SPOT",
                        date,
                        round(euro[quote] / euro[base], 6),
                    )
                )
            else:
                ctx.warning(f"{date}: no EUR{base} or EUR{quote}; {base}{quote} not derived")
    return rows


@ECB_FX_CROSS.phase("SEND")
def send(ctx: PhaseContext, rows: list[Observation]) -> list[Observation]:
    return rows


@ECB_FX_CROSS.phase("LOAD")
def load(ctx: PhaseContext, rows: list[Observation]) -> int:
    updated = ctx.load_series(rows)
    dates = sorted({row.date for row in rows})
    ctx.loader_message(f"Updated {updated} series for {', '.join(dates) or 'no date'}")
    return updated
