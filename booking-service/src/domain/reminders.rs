//! When an appointment's reminders fall due.
//!
//! Offsets follow RFC 5545's durations (§3.3.6): hours, minutes and seconds are exact
//! (`24h` is 86 400 s before the start, whatever the clocks do in between), days are
//! nominal (`1d` is the same wall-clock time the day before, in the clinic's zone, so
//! across a daylight-saving change it is 23 or 25 hours). An offset whose instant has
//! already passed when the appointment is booked (or moved) is not scheduled.

use chrono::{DateTime, Days, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use std::fmt;
use std::sync::Arc;

/// How long before the start a reminder goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    /// An exact duration.
    Exact(TimeDelta),
    /// Nominal days: the same local time `n` days earlier.
    Days(u32),
}

/// One configured offset, e.g. `24h`, `2h`, `90m`, `1d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderOffset {
    label: String,
    before: Before,
}

/// The longest offset accepted: a reminder more than 30 days ahead is not a reminder.
const MAX_SECONDS: i64 = 30 * 86_400;

impl ReminderOffset {
    /// Parses `<n>d`, `<n>h`, `<n>m` or `<n>s` (a positive whole number and a unit).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let hint = || {
            format!("`{raw}` is not an offset: use a positive whole number and a unit d, h, m or s (e.g. 24h, 2h, 30m, 1d), at most 30 days")
        };
        let (digits, unit) = s.split_at(s.len().saturating_sub(1));
        let n: i64 = digits.parse().map_err(|_| hint())?;
        if n <= 0 {
            return Err(hint());
        }
        let seconds = match unit {
            "d" => n.checked_mul(86_400),
            "h" => n.checked_mul(3_600),
            "m" => n.checked_mul(60),
            "s" => Some(n),
            _ => None,
        }
        .filter(|s| *s <= MAX_SECONDS)
        .ok_or_else(hint)?;
        let before = if unit == "d" {
            Before::Days(u32::try_from(n).map_err(|_| hint())?)
        } else {
            Before::Exact(TimeDelta::seconds(seconds))
        };
        Ok(Self {
            label: s.to_owned(),
            before,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The instant this reminder of an appointment starting at `starts_at` (in a clinic
    /// in `tz`) falls due.
    pub fn due_at(&self, starts_at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self.before {
            Before::Exact(d) => starts_at.checked_sub_signed(d),
            Before::Days(n) => {
                let local = starts_at.with_timezone(&tz).naive_local();
                let earlier = local.checked_sub_days(Days::new(u64::from(n)))?;
                // In a gap (the wall-clock time does not exist that day) the first
                // instant after it; in a fold, the earlier of the two.
                tz.from_local_datetime(&earlier)
                    .earliest()
                    .or_else(|| {
                        tz.from_local_datetime(&(earlier + TimeDelta::hours(1)))
                            .earliest()
                    })
                    .map(|t| t.with_timezone(&Utc))
            }
        }
    }
}

impl fmt::Display for ReminderOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// The configured offsets (`reminders.offsets`), without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReminderPlan(Arc<[ReminderOffset]>);

/// A reminder to schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueReminder {
    pub offset: String,
    pub due_at: DateTime<Utc>,
}

impl ReminderPlan {
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, String> {
        let mut offsets: Vec<ReminderOffset> = Vec::new();
        // Blank entries (an empty environment variable) mean no reminder.
        for r in raw.iter().filter(|r| !r.as_ref().trim().is_empty()) {
            let o = ReminderOffset::parse(r.as_ref())?;
            if offsets.iter().any(|x| x.label == o.label) {
                return Err(format!("`{}` is listed twice", o.label));
            }
            offsets.push(o);
        }
        Ok(Self(offsets.into()))
    }

    pub fn offsets(&self) -> &[ReminderOffset] {
        &self.0
    }

    /// The reminders of an appointment starting at `starts_at` in `tz`, booked (or
    /// moved) at `now`: those whose instant is still ahead, earliest first.
    pub fn schedule(
        &self,
        starts_at: DateTime<Utc>,
        tz: Tz,
        now: DateTime<Utc>,
    ) -> Vec<DueReminder> {
        let mut due: Vec<DueReminder> = self
            .0
            .iter()
            .filter_map(|o| {
                o.due_at(starts_at, tz)
                    .filter(|at| *at > now && *at < starts_at)
                    .map(|due_at| DueReminder {
                        offset: o.label.clone(),
                        due_at,
                    })
            })
            .collect();
        due.sort_by_key(|d| d.due_at);
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn plan(raw: &[&str]) -> ReminderPlan {
        ReminderPlan::parse(raw).unwrap()
    }

    #[test]
    fn offsets_parse_with_their_units() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let start = utc(2026, 12, 10, 9, 0);
        for (raw, before) in [
            ("24h", TimeDelta::hours(24)),
            ("2h", TimeDelta::hours(2)),
            ("90m", TimeDelta::minutes(90)),
            ("45s", TimeDelta::seconds(45)),
            (" 1d ", TimeDelta::days(1)),
        ] {
            let o = ReminderOffset::parse(raw).unwrap();
            assert_eq!(o.due_at(start, berlin), Some(start - before), "{raw}");
        }
        assert_eq!(ReminderOffset::parse(" 1d ").unwrap().label(), "1d");
    }

    #[test]
    fn bad_offsets_are_refused_with_a_hint() {
        for raw in [
            "", "h", "0h", "-2h", "2", "2w", "1.5h", "31d", "745h", "h2", "２h",
        ] {
            let err = ReminderOffset::parse(raw).unwrap_err();
            assert!(err.contains("positive whole number"), "{raw}: {err}");
        }
        assert!(ReminderPlan::parse(&["2h", "2h"])
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn passed_offsets_are_not_scheduled() {
        let tz: Tz = "UTC".parse().unwrap();
        let now = utc(2026, 12, 1, 9, 0);
        // Booked three hours ahead: the day-before reminder has passed.
        let due = plan(&["24h", "2h"]).schedule(now + TimeDelta::hours(3), tz, now);
        assert_eq!(
            due,
            vec![DueReminder {
                offset: "2h".into(),
                due_at: now + TimeDelta::hours(1)
            }]
        );
        // Booked an hour ahead: none.
        assert!(plan(&["24h", "2h"])
            .schedule(now + TimeDelta::hours(1), tz, now)
            .is_empty());
        // Earliest first, whatever the configured order.
        let due = plan(&["2h", "24h"]).schedule(now + TimeDelta::days(3), tz, now);
        assert_eq!(
            due.iter().map(|d| d.offset.as_str()).collect::<Vec<_>>(),
            ["24h", "2h"]
        );
    }

    #[test]
    fn across_a_daylight_saving_change_hours_are_exact_and_days_are_wall_clock() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Clocks go forward on Sunday 28 March 2027 at 02:00 CET. An appointment on
        // Monday 29 March at 10:00 CEST (08:00Z).
        let start = utc(2027, 3, 29, 8, 0);
        // Exactly 24 h before: Sunday 08:00Z = 10:00 CEST.
        let h = ReminderOffset::parse("24h").unwrap();
        assert_eq!(h.due_at(start, berlin), Some(utc(2027, 3, 28, 8, 0)));
        // 48 h before: Saturday 08:00Z = 09:00 CET on the wall clock.
        let h48 = ReminderOffset::parse("48h").unwrap();
        assert_eq!(h48.due_at(start, berlin), Some(utc(2027, 3, 27, 8, 0)));
        // Two days before on the wall clock: Saturday 10:00 CET = 09:00Z, 49 h before.
        let d = ReminderOffset::parse("2d").unwrap();
        assert_eq!(d.due_at(start, berlin), Some(utc(2027, 3, 27, 9, 0)));
        // Clocks go back on Sunday 31 October 2027 at 03:00 CEST. From Monday 1
        // November 09:00 CET (08:00Z), one day earlier is Sunday 09:00 CET (after the
        // change: 24 h), two days earlier Saturday 09:00 CEST = 07:00Z (49 h).
        let start = utc(2027, 11, 1, 8, 0);
        let d = ReminderOffset::parse("1d").unwrap();
        assert_eq!(d.due_at(start, berlin), Some(utc(2027, 10, 31, 8, 0)));
        let d2 = ReminderOffset::parse("2d").unwrap();
        assert_eq!(d2.due_at(start, berlin), Some(utc(2027, 10, 30, 7, 0)));
    }

    #[test]
    fn a_wall_clock_time_in_the_gap_moves_to_after_it() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Monday 29 March 2027 02:30 CEST (00:30Z); Sunday 02:30 does not exist.
        let start = utc(2027, 3, 29, 0, 30);
        let d = ReminderOffset::parse("1d").unwrap();
        // 03:30 CEST on Sunday = 01:30Z.
        assert_eq!(d.due_at(start, berlin), Some(utc(2027, 3, 28, 1, 30)));
    }
}
