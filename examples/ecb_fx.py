"""ECB_FX: the European Central Bank's euro reference rates, loaded as 32 daily series.

EXTRACT reads the ECB's `eurofxref-daily.xml`: the bundled sample of 2021-07-01, or `body.url`,
an http(s) URL fetched only from the hosts `PROCEXEC_FETCH_ALLOW` allows (see `fetch`; by
default the ECB's own, `www.ecb.europa.eu`), within `body.timeout` seconds (at most 60);
TRANSFORM parses it, SEND hands the batch to the loader and LOAD upserts each rate as
`#ECB_FX.EUR<CCY>:SPOT`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from procexec import Observation, PhaseContext, Process
from procexec.engine.settings import Settings
from procexec.examples.fetch import MAX_SECONDS, Allowed, FetchError, check_url, fetch

SAMPLE = Path(__file__).parent / "data" / "eurofxref-2021-07-01.xml"
ECB_NS = "{http://www.ecb.int/vocabulary/2002-08-01/eurofxref}"

#: the ECB's own daily file, which the default `PROCEXEC_FETCH_ALLOW` lets ECB_FX fetch
ECB_DAILY = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"


class EcbFxParams(BaseModel):
    """ECB_FX's parameters."""

    url: str | None = Field(
        None,
        # the URLs `check_url` takes, as far as a pattern says it (lookahead: the end)
        json_schema_extra={
            "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[\w.~-]+(:\d{1,4})?([/?#]\S*)?(?![\s\S])"
        },
        description="an http(s) URL of an ECB reference rates file, fetched only from the hosts "
        "PROCEXEC_FETCH_ALLOW allows; none: the bundled sample of 2021-07-01",
    )
    timeout: float = Field(
        30, gt=0, le=MAX_SECONDS, description="seconds the fetch may take, at most 60"
    )

    @field_validator("url")
    @classmethod
    def _fetchable(cls, url: str | None) -> str | None:
        if url is not None:
            try:
                check_url(url)
            except FetchError as exc:  # "url: …": the field is named already
                raise ValueError(str(exc).removeprefix("url: ")) from None
        return url


ECB_FX = Process(
    "ECB_FX",
    service="ETL",
    description="ECB euro foreign exchange reference rates",
    params=EcbFxParams,
    schedule="30 16 * * 1-5",
    timeout=300,
)


@ECB_FX.phase("EXTRACT")
def extract(ctx: PhaseContext, _: Any) -> bytes:
    params: EcbFxParams = ctx.params
    if params.url is None:
        return SAMPLE.read_bytes()
    allowed = Allowed.of(Settings.from_env().fetch_allow)
    return fetch(params.url, allowed, timeout=params.timeout)


@ECB_FX.phase("TRANSFORM")
def transform(ctx: PhaseContext, xml: bytes) -> dict[str, Any]:
    root = ET.fromstring(xml)
    day = root.find(f"{ECB_NS}Cube/{ECB_NS}Cube[@time]")
    if day is None:
        raise ValueError("no <Cube time='…'> element: not an ECB reference rates file")
    rates = {cube.attrib["currency"]: float(cube.attrib["rate"]) for cube in day}
    if not rates:
        raise ValueError(f"no rates for {day.attrib['time']}")
    return {"date": day.attrib["time"], "rates": rates}


@ECB_FX.phase("SEND")
def send(ctx: PhaseContext, parsed: dict[str, Any]) -> list[Observation]:
    return [
        Observation(f"#ECB_FX.EUR{currency}:SPOT", parsed["date"], rate)
        for currency, rate in sorted(parsed["rates"].items())
    ]


@ECB_FX.phase("LOAD")
def load(ctx: PhaseContext, batch: list[Observation]) -> int:
    updated = ctx.load_series(batch)
    dates = sorted({row.date for row in batch})
    ctx.loader_message(f"Updated {updated} series for {', '.join(dates)}")
    return updated
