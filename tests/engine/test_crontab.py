"""Crontab arithmetic with fixed clocks: validation, UTC, and daylight-saving changes.

The rules (engine/schedule.py): the five fields are wall-clock times in the schedule's timezone;
a wall time inside a forward gap fires at the first instant after the gap (several of them
collapse into one fire); a wall time repeated by a backward change fires once, at its first
occurrence. Every expected instant below is written out in UTC.

The daylight-saving changes used (2024):
- Europe/London: forward 31 March 01:00Z (01:00 GMT becomes 02:00 BST); back 27 October
  01:00Z (02:00 BST becomes 01:00 GMT, so wall times 01:00-01:59 occur twice).
- America/New_York: forward 10 March 07:00Z (02:00 EST becomes 03:00 EDT); back 3 November
  06:00Z (02:00 EDT becomes 01:00 EST, so wall times 01:00-01:59 occur twice).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from procexec.engine.crontab import Crontab, ScheduleError, crontab_reason, js_date
from procexec.engine.process import Process

LONDON = "Europe/London"
NEW_YORK = "America/New_York"


def utc(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def stamps(fires: list[datetime]) -> list[str]:
    """Fire times as short UTC strings, for readable comparisons."""
    for fire in fires:
        assert fire.utcoffset() == timedelta(0), fire
    return [fire.strftime("%m-%d %H:%M") for fire in fires]


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "crontab '* * * *' must have five fields"),
        ("0 * * * * *", "crontab '0 * * * * *' must have five fields"),
        ("", "crontab '' must have five fields"),
        ("@daily", "crontab '@daily' must have five fields"),
        ("61 * * * *", "minute field '61' is not valid"),
        ("*/0 * * * *", "minute field '*/0' is not valid"),
        ("0 24 * * *", "hour field '24' is not valid"),
        ("0 0 0 * *", "day-of-month field '0' is not valid"),
        ("0 0 1 13 *", "month field '13' is not valid"),
        ("0 0 * * 8", "day-of-week field '8' is not valid"),
        ("a * * * *", "minute field 'a' is not valid"),
        ("0 0 30 2 *", "crontab '0 0 30 2 *' never fires"),
    ],
)
def test_a_bad_crontab_is_refused_with_a_message_that_names_the_problem(
    expression: str, message: str
) -> None:
    with pytest.raises(ScheduleError) as raised:
        Crontab(expression)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_five_field_message_names_the_fields() -> None:
    with pytest.raises(ScheduleError, match=r"\(minute hour day-of-month month day-of-week\)"):
        Crontab("0 16 * *")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "europe/london ", "", "../etc/passwd"])
def test_an_unknown_timezone_is_refused_by_name(zone: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        Crontab("30 16 * * 1-5", zone)
    assert str(raised.value) == f"unknown timezone '{zone}'"


def test_a_process_with_a_bad_schedule_or_timezone_cannot_be_defined() -> None:
    with pytest.raises(ScheduleError, match="hour field '25'"):
        Process("BAD_HOUR", schedule="0 25 * * *")
    with pytest.raises(ScheduleError, match="unknown timezone 'Nowhere/Town'"):
        Process("BAD_ZONE", schedule="0 6 * * *", timezone="Nowhere/Town")


def test_a_leap_day_schedule_is_valid_and_fires_on_the_next_leap_day() -> None:
    assert Crontab("0 6 29 2 *").next_after(utc(3, 1)) == datetime(2028, 2, 29, 6, tzinfo=UTC)


# --- UTC ----------------------------------------------------------------------------------


def test_utc_weekday_schedule_fires_strictly_after_the_given_instant() -> None:
    ecb = Crontab("30 16 * * 1-5")
    assert ecb.timezone == "UTC"
    thursday = datetime(2021, 7, 1, 16, 29, 59, tzinfo=UTC)
    assert ecb.next_after(thursday) == datetime(2021, 7, 1, 16, 30, tzinfo=UTC)
    # strictly after: the fire time itself gives the next one
    at_fire = datetime(2021, 7, 1, 16, 30, tzinfo=UTC)
    assert ecb.next_after(at_fire) == datetime(2021, 7, 2, 16, 30, tzinfo=UTC)
    # Friday's run is followed by Monday's
    friday = datetime(2021, 7, 2, 16, 30, tzinfo=UTC)
    assert ecb.next_after(friday) == datetime(2021, 7, 5, 16, 30, tzinfo=UTC)


def test_utc_fires_between_is_half_open_and_ascending() -> None:
    ecb = Crontab("30 16 * * 1-5")
    week = ecb.fires_between(
        datetime(2021, 6, 28, 16, 30, tzinfo=UTC), datetime(2021, 7, 5, 16, 30, tzinfo=UTC)
    )
    assert [fire.isoformat() for fire in week] == [
        "2021-06-29T16:30:00+00:00",
        "2021-06-30T16:30:00+00:00",
        "2021-07-01T16:30:00+00:00",
        "2021-07-02T16:30:00+00:00",
        "2021-07-05T16:30:00+00:00",
    ]


def test_fires_between_keeps_the_latest_when_limited() -> None:
    minutely = Crontab("* * * * *")
    fires = minutely.fires_between(utc(1, 1, 0, 0), utc(1, 1, 1, 0), limit=3)
    assert stamps(fires) == ["01-01 00:58", "01-01 00:59", "01-01 01:00"]


def test_an_aware_instant_in_another_offset_means_the_same_moment() -> None:
    paris_summer = timezone(timedelta(hours=2))
    after = datetime(2021, 7, 1, 18, 29, tzinfo=paris_summer)  # 16:29Z
    fire = Crontab("30 16 * * *").next_after(after)
    assert fire == datetime(2021, 7, 1, 16, 30, tzinfo=UTC)
    assert fire.tzinfo == UTC


def test_crontab_reason_is_the_seed_pages() -> None:
    fire = datetime(2021, 7, 1, 16, 30, tzinfo=UTC)
    assert (
        crontab_reason("ECB_FX", fire)
        == "crontab(ECB_FX,Thu Jul 01 2021 16:30:00 GMT+0000 (Greenwich Mean Time))"
    )


def test_js_date_writes_the_utc_instant_of_any_aware_time() -> None:
    new_york_evening = datetime(2024, 11, 3, 1, 30, tzinfo=timezone(timedelta(hours=-4)))
    assert js_date(new_york_evening) == "Sun Nov 03 2024 05:30:00 GMT+0000 (Greenwich Mean Time)"


def test_a_timezone_shifts_the_utc_instant() -> None:
    # 16:30 in London in July is 15:30Z (BST); in January it is 16:30Z (GMT)
    london = Crontab("30 16 * * *", LONDON)
    assert london.next_after(datetime(2021, 7, 1, tzinfo=UTC)) == datetime(
        2021, 7, 1, 15, 30, tzinfo=UTC
    )
    assert london.next_after(datetime(2021, 1, 4, tzinfo=UTC)) == datetime(
        2021, 1, 4, 16, 30, tzinfo=UTC
    )


# --- spring forward: wall times that do not exist -------------------------------------------


def test_london_spring_forward_a_gap_time_fires_at_the_end_of_the_gap() -> None:
    daily = Crontab("30 1 * * *", LONDON)  # 01:30 does not exist on 31 March
    fires = daily.fires_between(utc(3, 29), utc(4, 2))
    assert stamps(fires) == ["03-29 01:30", "03-30 01:30", "03-31 01:00", "04-01 00:30"]


def test_london_spring_forward_gap_times_collapse_into_one_fire() -> None:
    quarterly = Crontab("*/15 1 * * *", LONDON)  # 01:00, 01:15, 01:30, 01:45: all in the gap
    fires = quarterly.fires_between(utc(3, 30, 23), utc(3, 31, 23))
    assert stamps(fires) == ["03-31 01:00"]
    # and with an existing wall time right after the gap (02:00 BST = 01:00Z): still one fire
    around = Crontab("0,30 0-3 * * *", LONDON)
    fires = around.fires_between(utc(3, 30, 23, 59), utc(3, 31, 3))
    assert stamps(fires) == [
        "03-31 00:00",  # 00:00 GMT
        "03-31 00:30",  # 00:30 GMT
        "03-31 01:00",  # 01:00 and 01:30 (gap) and 02:00 BST, once
        "03-31 01:30",  # 02:30 BST
        "03-31 02:00",  # 03:00 BST
        "03-31 02:30",  # 03:30 BST
    ]


def test_london_spring_forward_asked_just_before_and_at_the_gap() -> None:
    daily = Crontab("30 1 * * *", LONDON)
    just_before = datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC)
    assert daily.next_after(just_before) == utc(3, 31, 1, 0)
    # asked at the instant it fired: the next day's 01:30 BST
    assert daily.next_after(utc(3, 31, 1, 0)) == utc(4, 1, 0, 30)


def test_new_york_spring_forward_a_gap_time_fires_at_the_end_of_the_gap() -> None:
    daily = Crontab("30 2 * * *", NEW_YORK)  # 02:30 does not exist on 10 March
    fires = daily.fires_between(utc(3, 9), utc(3, 12))
    assert stamps(fires) == ["03-09 07:30", "03-10 07:00", "03-11 06:30"]


def test_new_york_spring_forward_gap_times_collapse_into_one_fire() -> None:
    gap = Crontab("0,20,40 2 * * *", NEW_YORK)
    fires = gap.fires_between(utc(3, 10, 5), utc(3, 10, 12))
    assert stamps(fires) == ["03-10 07:00"]
    # a schedule through the night: 02:xx collapse with 03:00 EDT into one fire at 07:00Z
    night = Crontab("0 1-4 * * *", NEW_YORK)
    fires = night.fires_between(utc(3, 10, 5), utc(3, 10, 12))
    assert stamps(fires) == ["03-10 06:00", "03-10 07:00", "03-10 08:00"]


# --- fall back: wall times that occur twice ------------------------------------------------


def test_london_fall_back_a_repeated_time_fires_once_at_its_first_occurrence() -> None:
    daily = Crontab("30 1 * * *", LONDON)
    fires = daily.fires_between(utc(10, 26, 12), utc(10, 28, 12))
    # 01:30 BST (00:30Z), not 01:30 GMT (01:30Z) as well
    assert stamps(fires) == ["10-27 00:30", "10-28 01:30"]


def test_london_fall_back_every_twenty_minutes_in_the_repeated_hour() -> None:
    every_20 = Crontab("*/20 1 * * *", LONDON)
    fires = every_20.fires_between(utc(10, 26, 23), utc(10, 28, 3))
    assert stamps(fires) == [
        "10-27 00:00",  # 01:00 BST
        "10-27 00:20",
        "10-27 00:40",  # and nothing in the second pass, 01:00Z to 01:59Z
        "10-28 01:00",  # 01:00 GMT on the next day
        "10-28 01:20",
        "10-28 01:40",
    ]


def test_london_fall_back_asked_from_inside_each_pass() -> None:
    every_20 = Crontab("*/20 1,2 * * *", LONDON)
    # first pass, 01:10 BST: the next is 01:20 BST
    assert every_20.next_after(utc(10, 27, 0, 10)) == utc(10, 27, 0, 20)
    # second pass, 01:10 GMT: 01:20 and 01:40 ran in the first pass; the next is 02:00 GMT
    assert every_20.next_after(utc(10, 27, 1, 10)) == utc(10, 27, 2, 0)
    only_1am = Crontab("*/20 1 * * *", LONDON)
    assert only_1am.next_after(utc(10, 27, 1, 10)) == utc(10, 28, 1, 0)
    assert only_1am.fires_between(utc(10, 27, 1, 0), utc(10, 27, 2, 0)) == []


def test_london_fall_back_every_minute_does_not_repeat_the_hour() -> None:
    # each wall-clock minute fires once: the second pass of 01:xx does not fire again
    minutely = Crontab("* * * * *", LONDON)
    fires = minutely.fires_between(utc(10, 27, 0, 58), utc(10, 27, 2, 1))
    assert stamps(fires) == ["10-27 00:59", "10-27 02:00", "10-27 02:01"]


def test_new_york_fall_back_every_twenty_minutes_in_the_repeated_hour() -> None:
    every_20 = Crontab("*/20 1 * * *", NEW_YORK)
    fires = every_20.fires_between(utc(11, 3, 0), utc(11, 4, 12))
    assert stamps(fires) == [
        "11-03 05:00",  # 01:00 EDT
        "11-03 05:20",
        "11-03 05:40",  # nothing at 06:00Z-06:59Z (01:xx EST)
        "11-04 06:00",  # 01:00 EST on the next day
        "11-04 06:20",
        "11-04 06:40",
    ]


def test_new_york_fall_back_asked_from_inside_the_second_pass() -> None:
    daily = Crontab("30 1 * * *", NEW_YORK)
    assert stamps(daily.fires_between(utc(11, 2), utc(11, 5))) == [
        "11-02 05:30",
        "11-03 05:30",
        "11-04 06:30",
    ]
    # 01:15 EST (06:15Z): 01:30 ran at 05:30Z already; the next is the 4th's 01:30 EST
    assert daily.next_after(utc(11, 3, 6, 15)) == utc(11, 4, 6, 30)
    # 01:15 EDT (05:15Z): 01:30 EDT is still to come
    assert daily.next_after(utc(11, 3, 5, 15)) == utc(11, 3, 5, 30)
    hourly = Crontab("45 * * * *", NEW_YORK)
    assert hourly.next_after(utc(11, 3, 6, 15)) == utc(11, 3, 7, 45)  # 02:45 EST


def test_fire_times_are_distinct_and_ascending_across_both_changes() -> None:
    for zone in (LONDON, NEW_YORK):
        hourly = Crontab("0 * * * *", zone)
        fires = hourly.fires_between(utc(3, 1), utc(12, 1))
        assert fires == sorted(set(fires))
        # every wall-clock hour of the 275 days once, but the one inside the spring gap
        # collapses into the fire after it
        assert len(fires) == 275 * 24 - 1
