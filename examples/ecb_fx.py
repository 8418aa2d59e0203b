"""ECB_FX: the European Central Bank's euro reference rates, loaded as 32 daily series.

EXTRACT reads the ECB's `eurofxref-daily.xml` (the bundled sample of 2021-07-01, or `body.url`,
which may be http(s):// or a file path), TRANSFORM parses it, SEND hands the batch to the loader
and LOAD upserts each rate as `#ECB_FX.EUR<CCY>:SPOT`.
"""

from __future__ import annotations

import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from procexec import PhaseContext, Process
from procexec.engine.store import Observation

SAMPLE = Path(__file__).parent / "data" / "eurofxref-2021-07-01.xml"
ECB_NS = "{http://www.ecb.int/vocabulary/2002-08-01/eurofxref}"

ECB_FX = Process(
    "ECB_FX",
    service="ETL",
    description="ECB euro foreign exchange reference rates",
    defaults={"url": None, "timeout": 30},
    schedule="30 16 * * 1-5",
)


@ECB_FX.phase("EXTRACT")
def extract(ctx: PhaseContext, _: Any) -> bytes:
    url = ctx.params.get("url")
    if not url:
        return SAMPLE.read_bytes()
    if "://" not in url:
        return Path(url).read_bytes()
    with urllib.request.urlopen(url, timeout=float(ctx.params["timeout"])) as response:
        body: bytes = response.read()
        return body


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
