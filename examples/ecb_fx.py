"""ECB_FX: the European Central Bank's euro reference rates, loaded as 32 daily series.

EXTRACT reads the ECB's `eurofxref-daily.xml`: the bundled sample of 2021-07-01, or `body.url`,
an http(s) URL fetched only from the hosts `PROCEXEC_FETCH_ALLOW` allows (see `fetch`; by
default the ECB's own, `www.ecb.europa.eu`), within `body.timeout` seconds (at most 60);
TRANSFORM parses it, SEND hands the batch to the loader and LOAD upserts each rate as
`#ECB_FX.EUR<CCY>:SPOT`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from procexec import Observation, PhaseContext, Process
from procexec.engine.settings import Settings
from procexec.examples.checks import number
from procexec.examples.fetch import MAX_SECONDS, Allowed, check_url, fetch

SAMPLE = Path(__file__).parent / "data" / "eurofxref-2021-07-01.xml"
ECB_NS = "{http://www.ecb.int/vocabulary/2002-08-01/eurofxref}"

#: the ECB's own daily file, which the default `PROCEXEC_FETCH_ALLOW` lets ECB_FX fetch
ECB_DAILY = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"


def check(params: Mapping[str, Any]) -> None:
    """`url`: None (the bundled sample) or an http(s) URL; `timeout`: up to 60 seconds."""
    if params.get("url") is not None:
        check_url(params["url"])
    if number(params, "timeout", 0, MAX_SECONDS) <= 0:
        raise ValueError("timeout: must be more than 0 seconds")


ECB_FX = Process(
    "ECB_FX",
    service="ETL",
    description="ECB euro foreign exchange reference rates",
    defaults={"url": None, "timeout": 30},
    schedule="30 16 * * 1-5",
    timeout=300,
    check=check,
)


@ECB_FX.phase("EXTRACT")
def extract(ctx: PhaseContext, _: Any) -> bytes:
    check(ctx.params)
    url = ctx.params.get("url")
    if url is None:
        return SAMPLE.read_bytes()
    allowed = Allowed.of(Settings.from_env().fetch_allow)
    return fetch(url, allowed, timeout=float(ctx.params.get("timeout") or MAX_SECONDS))


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
