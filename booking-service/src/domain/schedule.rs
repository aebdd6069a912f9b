//! Weekly schedule templates and the concrete slot time ranges generated from them.
//!
//! Why this module exists: doctors publish availability as a weekly pattern in the
//! clinic's *local* time ("Mon–Fri 09:00–17:00, 30-minute slots"), while slots are
//! stored and booked as UTC instants. The conversion between the two is where
//! scheduling bugs hide: on daylight-saving days some local times do not exist and
//! others happen twice, so a naive "local + offset" either invents slots that never
//! happen, produces 90-minute "30-minute" slots, or creates overlapping slots.
//!
//! This module is the single place that does that conversion. It is pure (no clock,
//! no database) and deterministic, so it can be property-tested across DST transitions
//! and re-running a generation yields exactly the same slots (idempotent when the
//! database ignores duplicates).

use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Timelike, Utc,
    Weekday, WeekdaySet,
};
use chrono_tz::Tz;

use super::ValidationErrors;

/// Shortest slot a [`SlotRange`] may describe, in minutes.
pub const MIN_SLOT_RANGE_MINUTES: i64 = 5;
/// Longest slot a [`SlotRange`] may describe, in minutes (12 hours).
pub const MAX_SLOT_RANGE_MINUTES: i64 = 12 * 60;
/// Bounds of [`WeeklyTemplate`] slot lengths, in minutes.
pub const MIN_TEMPLATE_SLOT_MINUTES: u32 = 5;
pub const MAX_TEMPLATE_SLOT_MINUTES: u32 = 480;
/// Longest pause between two template slots, in minutes.
pub const MAX_BUFFER_MINUTES: u32 = 240;
/// Longest template date range, in days, both ends included.
pub const MAX_TEMPLATE_DAYS: i64 = 366;

const TIME_ZONE_HINT: &str = "must be an IANA time zone such as Europe/Berlin";

/// Parses an IANA time-zone name such as `Europe/Berlin` (exact spelling, surrounding
/// spaces ignored).
///
/// Only geographic `Area/Location` names and `UTC` / `Etc/UTC` are accepted. Offsets
/// (`+02:00`), abbreviations and other legacy names without an area (`CET`, `EST`,
/// `EST5EDT`), and the fixed-offset `Etc/GMT±N` zones (whose signs are inverted) are
/// refused: they look like a clinic's zone but silently ignore its daylight-saving rules.
pub fn parse_time_zone(name: &str) -> Result<Tz, String> {
    let name = name.trim();
    let allowed_shape =
        name == "UTC" || name == "Etc/UTC" || (name.contains('/') && !name.starts_with("Etc/"));
    if !allowed_shape {
        return Err(TIME_ZONE_HINT.into());
    }
    name.parse::<Tz>().map_err(|_| TIME_ZONE_HINT.to_owned())
}

/// A bookable time range `[starts_at, ends_at)` in UTC: half-open, so a slot ending at
/// 10:00 and one starting at 10:00 do not overlap.
///
/// Always 5 minutes to 12 hours long and on whole minutes; the only way to get one is
/// [`SlotRange::parse`] (or [`generate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotRange {
    // Field order matters: the derived `Ord` sorts by start, then end.
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

impl SlotRange {
    pub fn parse(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Result<Self, String> {
        if ends_at <= starts_at {
            return Err("ends_at must be after starts_at".into());
        }
        let length = ends_at - starts_at;
        if length < TimeDelta::minutes(MIN_SLOT_RANGE_MINUTES)
            || length > TimeDelta::minutes(MAX_SLOT_RANGE_MINUTES)
        {
            return Err(format!(
                "must be between {MIN_SLOT_RANGE_MINUTES} minutes and {} hours long",
                MAX_SLOT_RANGE_MINUTES / 60
            ));
        }
        let whole_minute = |t: DateTime<Utc>| t.second() == 0 && t.nanosecond() == 0;
        if !whole_minute(starts_at) || !whole_minute(ends_at) {
            return Err("must start and end on whole minutes".into());
        }
        Ok(Self { starts_at, ends_at })
    }

    pub fn starts_at(&self) -> DateTime<Utc> {
        self.starts_at
    }

    pub fn ends_at(&self) -> DateTime<Utc> {
        self.ends_at
    }

    pub fn duration(&self) -> TimeDelta {
        self.ends_at - self.starts_at
    }

    /// Whether the two half-open ranges share at least one instant.
    pub fn overlaps(&self, other: &SlotRange) -> bool {
        self.starts_at < other.ends_at && other.starts_at < self.ends_at
    }
}

/// Weekly template fields as they arrive (HTTP body, CLI flags), before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawWeeklyTemplate {
    /// Day names `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun` (case-insensitive).
    pub weekdays: Vec<String>,
    /// First slot start, `HH:MM` 24-hour clinic-local time.
    pub start_time: String,
    /// No slot ends after this, `HH:MM` 24-hour clinic-local time.
    pub end_time: String,
    pub slot_minutes: u32,
    /// Pause after each slot before the next one starts.
    pub buffer_minutes: u32,
    pub from: NaiveDate,
    /// Last day, included.
    pub to: NaiveDate,
}

/// A validated weekly template: on each day of `weekdays` between `from` and `to`
/// (inclusive), slots of `slot_minutes` start at local `start` and then every
/// `slot_minutes + buffer_minutes`, as long as they end by local `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeeklyTemplate {
    weekdays: WeekdaySet,
    start: NaiveTime,
    end: NaiveTime,
    slot_minutes: u32,
    buffer_minutes: u32,
    from: NaiveDate,
    to: NaiveDate,
}

impl WeeklyTemplate {
    /// Validates every field and reports all problems at once, each under its field name
    /// (`weekdays`, `start_time`, `end_time`, `slot_minutes`, `buffer_minutes`, `to`).
    pub fn parse(raw: &RawWeeklyTemplate) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let weekdays = errors.check("weekdays", parse_weekdays(&raw.weekdays));
        let start = errors.check("start_time", parse_hh_mm(&raw.start_time));
        let end = errors.check("end_time", parse_hh_mm(&raw.end_time));
        let slot_minutes = errors.check(
            "slot_minutes",
            in_range(
                raw.slot_minutes,
                MIN_TEMPLATE_SLOT_MINUTES,
                MAX_TEMPLATE_SLOT_MINUTES,
            ),
        );
        let buffer_minutes = errors.check(
            "buffer_minutes",
            in_range(raw.buffer_minutes, 0, MAX_BUFFER_MINUTES),
        );

        if raw.from > raw.to {
            errors.push("to", "must not be before from");
        } else if (raw.to - raw.from).num_days() + 1 > MAX_TEMPLATE_DAYS {
            errors.push(
                "to",
                format!("must be at most {MAX_TEMPLATE_DAYS} days from from, both included"),
            );
        }

        if let (Some(start), Some(end)) = (start, end) {
            if start >= end {
                errors.push("end_time", "must be after start_time");
            } else if let Some(slot) = slot_minutes {
                if minute_of_day(start) + slot > minute_of_day(end) {
                    errors.push(
                        "slot_minutes",
                        "must fit at least once between start_time and end_time",
                    );
                }
            }
        }

        errors.finish(|| {
            Some(Self {
                weekdays: weekdays?,
                start: start?,
                end: end?,
                slot_minutes: slot_minutes?,
                buffer_minutes: buffer_minutes?,
                from: raw.from,
                to: raw.to,
            })
        })
    }

    pub fn weekdays(&self) -> WeekdaySet {
        self.weekdays
    }

    pub fn start_time(&self) -> NaiveTime {
        self.start
    }

    pub fn end_time(&self) -> NaiveTime {
        self.end
    }

    pub fn slot_minutes(&self) -> u32 {
        self.slot_minutes
    }

    pub fn buffer_minutes(&self) -> u32 {
        self.buffer_minutes
    }

    pub fn from(&self) -> NaiveDate {
        self.from
    }

    pub fn to(&self) -> NaiveDate {
        self.to
    }
}

/// Turns a template into UTC slots using the clinic's time zone `tz`.
///
/// For each local date `from..=to` whose weekday is in the template, the local grid
/// `start, start + step, …` (step = slot + buffer) is walked while the local slot end is
/// at most `end`. Each local slot is converted to UTC, with these daylight-saving rules:
///
/// * a slot whose local start or end does not exist (spring-forward gap) is skipped;
/// * an ambiguous local time (fall-back overlap) means its earliest instant, so the
///   repeated hour gets slots once, not twice;
/// * a slot whose real (UTC) length is not `slot_minutes` (it spans a transition) is
///   skipped — as is one not on whole UTC minutes (historic zones with second offsets).
///
/// Skipped slots do not shift the grid: the following slots keep their local times.
/// The result is sorted by start and never overlapping, and the same template and
/// zone always give the same slots.
pub fn generate(template: &WeeklyTemplate, tz: Tz) -> Vec<SlotRange> {
    let slot = template.slot_minutes;
    // Validation guarantees slot >= 5, so the walk below always advances.
    let step = template.slot_minutes + template.buffer_minutes;
    let first = minute_of_day(template.start);
    let last_end = minute_of_day(template.end);

    let mut slots = Vec::new();
    let days = template
        .from
        .iter_days()
        .take_while(|date| *date <= template.to)
        .filter(|date| template.weekdays.contains(date.weekday()));
    for date in days {
        let mut offset = first;
        while offset + slot <= last_end {
            if let Some(range) = local_slot_to_utc(tz, date, offset, offset + slot, slot) {
                slots.push(range);
            }
            offset += step;
        }
    }

    // Conversion with "earliest" is monotonic, so slots are already ordered and disjoint;
    // sorting and dropping overlaps keeps that a guarantee rather than an assumption.
    slots.sort_unstable();
    let mut result: Vec<SlotRange> = Vec::with_capacity(slots.len());
    for range in slots {
        if result
            .last()
            .is_none_or(|previous| previous.ends_at <= range.starts_at)
        {
            result.push(range);
        }
    }
    result
}

/// The UTC slot for local minutes-of-day `[start, end)` on `date`, if it is real.
fn local_slot_to_utc(
    tz: Tz,
    date: NaiveDate,
    start: u32,
    end: u32,
    slot_minutes: u32,
) -> Option<SlotRange> {
    let starts_at = earliest_instant(tz, local_at(date, start)?)?;
    let ends_at = earliest_instant(tz, local_at(date, end)?)?;
    if ends_at - starts_at != TimeDelta::minutes(i64::from(slot_minutes)) {
        return None;
    }
    SlotRange::parse(starts_at, ends_at).ok()
}

fn local_at(date: NaiveDate, minute_of_day: u32) -> Option<NaiveDateTime> {
    NaiveTime::from_hms_opt(minute_of_day / 60, minute_of_day % 60, 0).map(|t| date.and_time(t))
}

/// The earliest instant showing `local` on the wall clock; `None` in a gap.
fn earliest_instant(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

fn minute_of_day(time: NaiveTime) -> u32 {
    time.hour() * 60 + time.minute()
}

fn in_range(value: u32, min: u32, max: u32) -> Result<u32, String> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("must be between {min} and {max}"))
    }
}

/// `HH:MM`, 24-hour, two digits each (surrounding spaces ignored).
fn parse_hh_mm(raw: &str) -> Result<NaiveTime, String> {
    const HINT: &str = "must be a 24-hour time HH:MM such as 09:30";
    let s = raw.trim();
    let (hours, minutes) = s.split_once(':').ok_or(HINT)?;
    let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return Err(HINT.into());
    }
    let hours: u32 = hours.parse().map_err(|_| HINT)?;
    let minutes: u32 = minutes.parse().map_err(|_| HINT)?;
    NaiveTime::from_hms_opt(hours, minutes, 0).ok_or_else(|| HINT.into())
}

fn parse_weekdays(raw: &[String]) -> Result<WeekdaySet, String> {
    const NAMES: &str = "mon, tue, wed, thu, fri, sat, sun";
    if raw.is_empty() {
        return Err(format!("must list at least one day of {NAMES}"));
    }
    let mut set = WeekdaySet::EMPTY;
    let mut bad = Vec::new();
    for (index, name) in raw.iter().enumerate() {
        match weekday_from_name(name) {
            Some(day) => {
                set.insert(day);
            }
            None => bad.push((index + 1).to_string()),
        }
    }
    if bad.is_empty() {
        Ok(set)
    } else {
        Err(format!(
            "each day must be one of {NAMES} (entry {} is not)",
            bad.join(", ")
        ))
    }
}

fn weekday_from_name(name: &str) -> Option<Weekday> {
    match name.trim().to_ascii_lowercase().as_str() {
        "mon" => Some(Weekday::Mon),
        "tue" => Some(Weekday::Tue),
        "wed" => Some(Weekday::Wed),
        "thu" => Some(Weekday::Thu),
        "fri" => Some(Weekday::Fri),
        "sat" => Some(Weekday::Sat),
        "sun" => Some(Weekday::Sun),
        _ => None,
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
mod tests {
    use super::*;
    use chrono::Offset;
    use proptest::prelude::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn zone(name: &str) -> Tz {
        parse_time_zone(name).unwrap()
    }

    fn raw(
        weekdays: &[&str],
        start_time: &str,
        end_time: &str,
        slot_minutes: u32,
        buffer_minutes: u32,
        from: &str,
        to: &str,
    ) -> RawWeeklyTemplate {
        RawWeeklyTemplate {
            weekdays: weekdays.iter().map(|d| (*d).to_owned()).collect(),
            start_time: start_time.into(),
            end_time: end_time.into(),
            slot_minutes,
            buffer_minutes,
            from: date(from),
            to: date(to),
        }
    }

    fn template(raw: &RawWeeklyTemplate) -> WeeklyTemplate {
        WeeklyTemplate::parse(raw).unwrap()
    }

    fn pairs(slots: &[SlotRange]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        slots.iter().map(|s| (s.starts_at(), s.ends_at())).collect()
    }

    fn local_times(slots: &[SlotRange], tz: Tz) -> Vec<String> {
        slots
            .iter()
            .map(|s| {
                s.starts_at()
                    .with_timezone(&tz)
                    .format("%H:%M %Z")
                    .to_string()
            })
            .collect()
    }

    fn error_fields(err: &ValidationErrors) -> Vec<&str> {
        err.0.iter().map(|e| e.field.as_str()).collect()
    }

    // ---- parse_time_zone -------------------------------------------------------------

    #[test]
    fn time_zones_must_be_iana_names() {
        assert_eq!(parse_time_zone("Europe/Berlin"), Ok(Tz::Europe__Berlin));
        assert_eq!(
            parse_time_zone(" America/New_York "),
            Ok(Tz::America__New_York)
        );
        assert_eq!(parse_time_zone("UTC"), Ok(Tz::UTC));
        assert_eq!(parse_time_zone("Etc/UTC"), Ok(Tz::Etc__UTC));
        for bad in [
            "",
            "europe/berlin",
            "Berlin",
            "CET",
            "EST",
            "EST5EDT",
            "+02:00",
            "UTC+2",
            "Etc/GMT+5",
            "Mars/Olympus_Mons",
        ] {
            let err = parse_time_zone(bad).unwrap_err();
            assert!(err.contains("IANA"), "{bad}: {err}");
        }
    }

    // ---- SlotRange ---------------------------------------------------------------

    #[test]
    fn slot_range_checks_order_length_and_whole_minutes() {
        let start = utc("2026-05-04T09:00:00Z");
        let ok = SlotRange::parse(start, start + TimeDelta::minutes(30)).unwrap();
        assert_eq!(ok.starts_at(), start);
        assert_eq!(ok.ends_at(), utc("2026-05-04T09:30:00Z"));
        assert_eq!(ok.duration(), TimeDelta::minutes(30));

        assert!(SlotRange::parse(start, start + TimeDelta::minutes(5)).is_ok());
        assert!(SlotRange::parse(start, start + TimeDelta::hours(12)).is_ok());

        assert!(SlotRange::parse(start, start).is_err());
        assert!(SlotRange::parse(start, start - TimeDelta::minutes(30)).is_err());
        assert!(SlotRange::parse(start, start + TimeDelta::minutes(4)).is_err());
        assert!(SlotRange::parse(start, start + TimeDelta::minutes(12 * 60 + 1)).is_err());
        let odd = start + TimeDelta::seconds(30);
        assert!(SlotRange::parse(odd, odd + TimeDelta::minutes(30)).is_err());
        let nanos = start + TimeDelta::nanoseconds(1);
        assert!(SlotRange::parse(start, nanos + TimeDelta::minutes(30)).is_err());
    }

    #[test]
    fn slot_ranges_are_half_open() {
        let a = SlotRange::parse(utc("2026-05-04T09:00:00Z"), utc("2026-05-04T09:30:00Z")).unwrap();
        let b = SlotRange::parse(utc("2026-05-04T09:30:00Z"), utc("2026-05-04T10:00:00Z")).unwrap();
        let c = SlotRange::parse(utc("2026-05-04T09:15:00Z"), utc("2026-05-04T09:45:00Z")).unwrap();
        assert!(!a.overlaps(&b) && !b.overlaps(&a));
        assert!(a.overlaps(&c) && c.overlaps(&b) && a.overlaps(&a));
    }

    // ---- WeeklyTemplate::parse ---------------------------------------------------

    #[test]
    fn template_parses_and_normalises() {
        let t = template(&raw(
            &[" MON", "wed", "Wed", "fri "],
            "09:00",
            " 17:30 ",
            30,
            5,
            "2026-01-05",
            "2026-01-30",
        ));
        assert_eq!(
            t.weekdays(),
            WeekdaySet::from_array([Weekday::Mon, Weekday::Wed, Weekday::Fri])
        );
        assert_eq!(t.start_time(), NaiveTime::from_hms_opt(9, 0, 0).unwrap());
        assert_eq!(t.end_time(), NaiveTime::from_hms_opt(17, 30, 0).unwrap());
        assert_eq!((t.slot_minutes(), t.buffer_minutes()), (30, 5));
        assert_eq!((t.from(), t.to()), (date("2026-01-05"), date("2026-01-30")));
    }

    #[test]
    fn template_reports_every_bad_field() {
        let err = WeeklyTemplate::parse(&raw(
            &["mon", "funday"],
            "25:00",
            "9am",
            3,
            241,
            "2026-02-01",
            "2026-01-01",
        ))
        .unwrap_err();
        assert_eq!(
            error_fields(&err),
            [
                "weekdays",
                "start_time",
                "end_time",
                "slot_minutes",
                "buffer_minutes",
                "to"
            ]
        );
        assert!(err.0[0].message.contains("entry 2"), "{err}");

        let err = WeeklyTemplate::parse(&raw(
            &[],
            "10:00",
            "09:00",
            481,
            0,
            "2026-01-01",
            "2027-01-02",
        ))
        .unwrap_err();
        assert_eq!(
            error_fields(&err),
            ["weekdays", "slot_minutes", "to", "end_time"]
        );
    }

    #[test]
    fn template_time_format_is_strict() {
        for bad in [
            "9:00", "09:0", "0900", "24:00", "23:60", "-1:00", "09:00:00", "+9:00", "",
        ] {
            let err = WeeklyTemplate::parse(&raw(
                &["mon"],
                bad,
                "23:00",
                30,
                0,
                "2026-01-05",
                "2026-01-05",
            ))
            .unwrap_err();
            assert_eq!(error_fields(&err), ["start_time"], "{bad}");
        }
        assert!(WeeklyTemplate::parse(&raw(
            &["mon"],
            "00:00",
            "23:59",
            30,
            0,
            "2026-01-05",
            "2026-01-05"
        ))
        .is_ok());
    }

    #[test]
    fn template_limits() {
        let ok = |slot, buffer, to: &str| {
            WeeklyTemplate::parse(&raw(
                &["mon"],
                "00:00",
                "23:00",
                slot,
                buffer,
                "2026-01-01",
                to,
            ))
        };
        assert!(ok(5, 0, "2026-01-01").is_ok());
        assert!(ok(480, 240, "2026-12-31").is_ok());
        // 2028 is a leap year: 366 days, both included, is the limit.
        assert!(WeeklyTemplate::parse(&raw(
            &["mon"],
            "08:00",
            "12:00",
            30,
            0,
            "2028-01-01",
            "2028-12-31"
        ))
        .is_ok());
        assert_eq!(
            error_fields(&ok(4, 0, "2026-01-01").unwrap_err()),
            ["slot_minutes"]
        );
        assert_eq!(
            error_fields(&ok(30, 241, "2026-01-01").unwrap_err()),
            ["buffer_minutes"]
        );
        assert_eq!(error_fields(&ok(30, 0, "2027-01-02").unwrap_err()), ["to"]);

        // The slot must fit at least once; exactly fitting is fine.
        let fit = |end: &str| {
            WeeklyTemplate::parse(&raw(
                &["mon"],
                "09:00",
                end,
                60,
                0,
                "2026-01-05",
                "2026-01-05",
            ))
        };
        assert!(fit("10:00").is_ok());
        assert_eq!(error_fields(&fit("09:59").unwrap_err()), ["slot_minutes"]);
        assert_eq!(error_fields(&fit("09:00").unwrap_err()), ["end_time"]);
    }

    // ---- generate: examples ------------------------------------------------------

    #[test]
    fn plain_weekday_template_in_utc() {
        // Monday 2026-01-05 to Sunday 2026-01-18: ten working days of 16 slots.
        let t = template(&raw(
            &["mon", "tue", "wed", "thu", "fri"],
            "09:00",
            "17:00",
            30,
            0,
            "2026-01-05",
            "2026-01-18",
        ));
        let slots = generate(&t, Tz::UTC);
        assert_eq!(slots.len(), 160);
        assert_eq!(slots[0].starts_at(), utc("2026-01-05T09:00:00Z"));
        assert_eq!(slots[15].ends_at(), utc("2026-01-05T17:00:00Z"));
        assert_eq!(slots[16].starts_at(), utc("2026-01-06T09:00:00Z"));
        assert_eq!(slots[159].ends_at(), utc("2026-01-16T17:00:00Z"));
        assert!(slots
            .iter()
            .all(|s| s.starts_at().weekday().num_days_from_monday() < 5));
    }

    #[test]
    fn buffer_separates_slots_and_end_is_inclusive() {
        let t = template(&raw(
            &["mon"],
            "09:00",
            "10:00",
            20,
            10,
            "2026-01-05",
            "2026-01-05",
        ));
        assert_eq!(
            pairs(&generate(&t, Tz::UTC)),
            [
                (utc("2026-01-05T09:00:00Z"), utc("2026-01-05T09:20:00Z")),
                (utc("2026-01-05T09:30:00Z"), utc("2026-01-05T09:50:00Z")),
            ]
        );
        // A slot ending exactly at end_time is included.
        let t = template(&raw(
            &["mon"],
            "09:00",
            "10:10",
            20,
            5,
            "2026-01-05",
            "2026-01-05",
        ));
        assert_eq!(generate(&t, Tz::UTC).len(), 3);
    }

    #[test]
    fn berlin_spring_forward_skips_the_gap() {
        // 2026-03-29 (Sunday): 02:00 CET jumps to 03:00 CEST.
        let tz = zone("Europe/Berlin");
        let t = template(&raw(
            &["sun"],
            "01:00",
            "04:00",
            30,
            0,
            "2026-03-29",
            "2026-03-29",
        ));
        let slots = generate(&t, tz);
        assert_eq!(
            pairs(&slots),
            [
                (utc("2026-03-29T00:00:00Z"), utc("2026-03-29T00:30:00Z")),
                (utc("2026-03-29T01:00:00Z"), utc("2026-03-29T01:30:00Z")),
                (utc("2026-03-29T01:30:00Z"), utc("2026-03-29T02:00:00Z")),
            ]
        );
        assert_eq!(
            local_times(&slots, tz),
            ["01:00 CET", "03:00 CEST", "03:30 CEST"]
        );
        assert!(slots.iter().all(|s| s.duration() == TimeDelta::minutes(30)));
        for s in &slots {
            let hour = s.starts_at().with_timezone(&tz).hour();
            assert_ne!(hour, 2, "slot in the gap: {s:?}");
        }
    }

    #[test]
    fn new_york_fall_back_uses_the_first_occurrence_once() {
        // 2026-11-01 (Sunday): 02:00 EDT falls back to 01:00 EST.
        let tz = zone("America/New_York");
        let t = template(&raw(
            &["sun"],
            "00:30",
            "03:00",
            30,
            0,
            "2026-11-01",
            "2026-11-01",
        ));
        let slots = generate(&t, tz);
        assert_eq!(
            pairs(&slots),
            [
                (utc("2026-11-01T04:30:00Z"), utc("2026-11-01T05:00:00Z")),
                (utc("2026-11-01T05:00:00Z"), utc("2026-11-01T05:30:00Z")),
                // 01:30 EDT to 02:00 EST would be 90 real minutes: skipped.
                (utc("2026-11-01T07:00:00Z"), utc("2026-11-01T07:30:00Z")),
                (utc("2026-11-01T07:30:00Z"), utc("2026-11-01T08:00:00Z")),
            ]
        );
        assert_eq!(
            local_times(&slots, tz),
            ["00:30 EDT", "01:00 EDT", "02:00 EST", "02:30 EST"]
        );
    }

    #[test]
    fn kolkata_has_no_dst_and_a_half_hour_offset() {
        let tz = zone("Asia/Kolkata");
        let t = template(&raw(
            &["mon", "tue"],
            "09:00",
            "13:00",
            30,
            10,
            "2026-03-01",
            "2026-11-30",
        ));
        let slots = generate(&t, tz);
        // 09:00, 09:40, 10:20, 11:00, 11:40, 12:20 on every Monday and Tuesday.
        let days = date("2026-03-01")
            .iter_days()
            .take_while(|d| *d <= date("2026-11-30"))
            .filter(|d| matches!(d.weekday(), Weekday::Mon | Weekday::Tue))
            .count();
        assert_eq!(slots.len(), days * 6);
        assert_eq!(slots[0].starts_at(), utc("2026-03-02T03:30:00Z"));
        assert!(slots.iter().all(|s| s.duration() == TimeDelta::minutes(30)));
    }

    #[test]
    fn lord_howe_half_hour_shift() {
        let tz = zone("Australia/Lord_Howe");
        // 2026-10-04 (Sunday): 02:00 +10:30 jumps to 02:30 +11.
        let t = template(&raw(
            &["sun"],
            "01:00",
            "04:00",
            30,
            0,
            "2026-10-04",
            "2026-10-04",
        ));
        let slots = generate(&t, tz);
        assert_eq!(
            pairs(&slots),
            [
                (utc("2026-10-03T14:30:00Z"), utc("2026-10-03T15:00:00Z")),
                (utc("2026-10-03T15:30:00Z"), utc("2026-10-03T16:00:00Z")),
                (utc("2026-10-03T16:00:00Z"), utc("2026-10-03T16:30:00Z")),
                (utc("2026-10-03T16:30:00Z"), utc("2026-10-03T17:00:00Z")),
            ]
        );
        // 2026-04-05 (Sunday): 02:00 +11 falls back to 01:30 +10:30.
        let t = template(&raw(
            &["sun"],
            "01:00",
            "03:00",
            30,
            0,
            "2026-04-05",
            "2026-04-05",
        ));
        let slots = generate(&t, tz);
        assert_eq!(
            pairs(&slots),
            [
                (utc("2026-04-04T14:00:00Z"), utc("2026-04-04T14:30:00Z")),
                // 01:30 (+11, the first of two) to 02:00 (+10:30) is 60 real minutes: skipped.
                (utc("2026-04-04T15:30:00Z"), utc("2026-04-04T16:00:00Z")),
                (utc("2026-04-04T16:00:00Z"), utc("2026-04-04T16:30:00Z")),
            ]
        );
    }

    #[test]
    fn generation_is_deterministic_and_sorted_across_days() {
        let t = template(&raw(
            &["sat", "sun"],
            "00:00",
            "23:59",
            45,
            15,
            "2026-10-20",
            "2026-11-10",
        ));
        let tz = zone("America/New_York");
        let first = generate(&t, tz);
        assert_eq!(first, generate(&t, tz));
        assert!(first.windows(2).all(|w| w[0].ends_at() <= w[1].starts_at()));
    }

    #[test]
    fn extreme_dates_do_not_panic() {
        let t = WeeklyTemplate::parse(&RawWeeklyTemplate {
            from: NaiveDate::MAX - TimeDelta::days(10),
            to: NaiveDate::MAX,
            ..raw(
                &["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "00:00",
                "23:59",
                480,
                0,
                "2026-01-01",
                "2026-01-01",
            )
        })
        .unwrap();
        for name in ["Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Berlin"] {
            let _ = generate(&t, zone(name));
        }
        let t = WeeklyTemplate::parse(&RawWeeklyTemplate {
            from: NaiveDate::MIN,
            to: NaiveDate::MIN + TimeDelta::days(10),
            ..raw(
                &["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "00:00",
                "23:59",
                480,
                0,
                "2026-01-01",
                "2026-01-01",
            )
        })
        .unwrap();
        for name in ["Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Berlin"] {
            let _ = generate(&t, zone(name));
        }
    }

    // ---- generate: properties across DST transitions -------------------------------

    /// Zones under test and days in 2026 on which their UTC offset changes.
    const ZONES: &[(&str, &[&str])] = &[
        ("Europe/Berlin", &["2026-03-29", "2026-10-25"]),
        ("America/New_York", &["2026-03-08", "2026-11-01"]),
        ("America/Sao_Paulo", &[]),
        ("Australia/Sydney", &["2026-04-05", "2026-10-04"]),
        ("Europe/London", &["2026-03-29", "2026-10-25"]),
        ("Asia/Kolkata", &[]),
        ("Pacific/Auckland", &["2026-04-05", "2026-09-27"]),
        // Transitions at local midnight: Saturday 24:00 becomes 23:00 / Sunday 00:00 01:00.
        ("America/Santiago", &["2026-04-05", "2026-09-06"]),
    ];

    const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

    fn offset_at(tz: Tz, instant: NaiveDateTime) -> i32 {
        tz.offset_from_utc_datetime(&instant)
            .fix()
            .local_minus_utc()
    }

    /// Whether the zone's offset is constant over a window covering the whole local day.
    fn is_regular_day(tz: Tz, day: NaiveDate) -> bool {
        let midnight = day.and_hms_opt(0, 0, 0).unwrap();
        let first = offset_at(tz, midnight - TimeDelta::hours(15));
        (1..=54)
            .all(|h| offset_at(tz, midnight - TimeDelta::hours(15) + TimeDelta::hours(h)) == first)
    }

    #[test]
    fn listed_transition_days_are_real() {
        for (name, days) in ZONES {
            let tz = zone(name);
            for day in *days {
                assert!(!is_regular_day(tz, date(day)), "{name} {day}");
                assert!(
                    is_regular_day(tz, date(day) - TimeDelta::days(3)),
                    "{name} {day}"
                );
                assert!(
                    is_regular_day(tz, date(day) + TimeDelta::days(3)),
                    "{name} {day}"
                );
            }
            if days.is_empty() {
                let jan = date("2026-01-01").and_hms_opt(0, 0, 0).unwrap();
                let jul = date("2026-07-01").and_hms_opt(0, 0, 0).unwrap();
                assert_eq!(offset_at(tz, jan), offset_at(tz, jul), "{name}");
            }
        }
    }

    #[derive(Debug, Clone)]
    struct Case {
        zone: &'static str,
        raw: RawWeeklyTemplate,
    }

    fn dst_case() -> impl Strategy<Value = Case> {
        let zone = 0..ZONES.len();
        let day = (
            any::<prop::sample::Index>(),
            prop::bool::weighted(0.85),
            -10i64..=10,
            0i64..=364,
        );
        let window = (
            0u32..=1200,
            5u32..=180,
            0u32..=60,
            any::<prop::sample::Index>(),
        );
        let rest = (0i64..=14, 1u8..=127, any::<bool>());
        (zone, day, window, rest).prop_map(
            |(
                zone,
                (pick, near, shift, any_day),
                (start, slot, buffer, end_pick),
                (span, mask, upper),
            )| {
                let (name, transitions) = ZONES[zone];
                let from = if near && !transitions.is_empty() {
                    date(transitions[pick.index(transitions.len())]) + TimeDelta::days(shift)
                } else {
                    date("2026-01-01") + TimeDelta::days(any_day)
                };
                // start <= 20:00, slot <= 3h, so start + slot <= 23:00 and the end fits.
                let end = start + slot + end_pick.index((1439 - start - slot + 1) as usize) as u32;
                let weekdays = (0..7)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| {
                        let n = DAY_NAMES[i];
                        if upper {
                            n.to_uppercase()
                        } else {
                            n.to_owned()
                        }
                    })
                    .collect();
                Case {
                    zone: name,
                    raw: RawWeeklyTemplate {
                        weekdays,
                        start_time: format!("{:02}:{:02}", start / 60, start % 60),
                        end_time: format!("{:02}:{:02}", end / 60, end % 60),
                        slot_minutes: slot,
                        buffer_minutes: buffer,
                        from,
                        to: from + TimeDelta::days(span),
                    },
                }
            },
        )
    }

    /// Slots per day by arithmetic: grid points k with start + k*step + slot <= end.
    fn expected_per_day(t: &WeeklyTemplate) -> usize {
        let room = minute_of_day(t.end_time()) - minute_of_day(t.start_time()) - t.slot_minutes();
        (room / (t.slot_minutes() + t.buffer_minutes()) + 1) as usize
    }

    /// The properties every generation must have, whatever the zone and dates.
    fn check_invariants(
        t: &WeeklyTemplate,
        tz: Tz,
        slots: &[SlotRange],
    ) -> Result<(), TestCaseError> {
        let slot = TimeDelta::minutes(i64::from(t.slot_minutes()));
        let step = i64::from(t.slot_minutes() + t.buffer_minutes());
        for s in slots {
            prop_assert_eq!(s.duration(), slot, "real length of {:?}", s);
            let local_start = s.starts_at().with_timezone(&tz).naive_local();
            let local_end = s.ends_at().with_timezone(&tz).naive_local();
            let day = local_start.date();
            prop_assert!(t.from() <= day && day <= t.to(), "{:?} outside dates", s);
            prop_assert!(
                t.weekdays().contains(day.weekday()),
                "{:?} on wrong weekday",
                s
            );
            prop_assert_eq!(local_end.date(), day, "{:?} ends on another day", s);
            prop_assert!(local_start.time() >= t.start_time(), "{:?} starts early", s);
            prop_assert!(local_end.time() <= t.end_time(), "{:?} ends late", s);
            let from_first = (local_start.time() - t.start_time()).num_minutes();
            prop_assert_eq!(from_first % step, 0, "{:?} off the grid", s);
            prop_assert_eq!(local_end - local_start, slot, "{:?} local length", s);
        }
        for w in slots.windows(2) {
            prop_assert!(
                w[0].starts_at() < w[1].starts_at(),
                "not increasing: {:?}",
                w
            );
            prop_assert!(!w[0].overlaps(&w[1]), "overlap: {:?}", w);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn generation_is_correct_across_dst(case in dst_case()) {
            let tz = zone(case.zone);
            let t = WeeklyTemplate::parse(&case.raw).unwrap();
            let slots = generate(&t, tz);
            check_invariants(&t, tz, &slots)?;

            // Deterministic, also from a fresh parse of the same input.
            prop_assert_eq!(&slots, &generate(&t, tz));
            prop_assert_eq!(&slots, &generate(&WeeklyTemplate::parse(&case.raw).unwrap(), tz));

            // Per-day counts: exact on regular days, never more on transition days.
            let expected = expected_per_day(&t);
            for day in t.from().iter_days().take_while(|d| *d <= t.to()) {
                let count = slots
                    .iter()
                    .filter(|s| s.starts_at().with_timezone(&tz).date_naive() == day)
                    .count();
                if !t.weekdays().contains(day.weekday()) {
                    prop_assert_eq!(count, 0);
                } else if is_regular_day(tz, day) {
                    prop_assert_eq!(count, expected, "{} on {}", case.zone, day);
                } else {
                    prop_assert!(count <= expected, "{} on {}", case.zone, day);
                }
            }
        }

        #[test]
        fn generation_holds_in_every_zone_and_year(
            zone_index in any::<prop::sample::Index>(),
            days_from_1900 in 0i64..(200 * 365),
            span in 0i64..=7,
            start in 0u32..=1380,
            slot in 5u32..=60,
            buffer in 0u32..=30,
        ) {
            let tz = chrono_tz::TZ_VARIANTS[zone_index.index(chrono_tz::TZ_VARIANTS.len())];
            let from = date("1900-01-01") + TimeDelta::days(days_from_1900);
            let t = WeeklyTemplate::parse(&RawWeeklyTemplate {
                weekdays: DAY_NAMES.iter().map(|d| (*d).to_owned()).collect(),
                start_time: format!("{:02}:{:02}", start / 60, start % 60),
                end_time: "23:59".into(),
                slot_minutes: slot.min(1439 - start),
                buffer_minutes: buffer,
                from,
                to: from + TimeDelta::days(span),
            })
            .unwrap();
            let slots = generate(&t, tz);
            check_invariants(&t, tz, &slots)?;
            prop_assert_eq!(slots, generate(&t, tz));
        }
    }
}
