//! The order of one appointment's e-mails.
//!
//! Every appointment event carries the appointment's version: booking makes version 1,
//! each reschedule and the cancellation add one. Reminders carry the version they were
//! written for and add nothing; so does a no-show notice, which the booking-service
//! records without changing the version (it tells about the appointment as it stands).
//! Created, rescheduled and cancelled events travel on different topics, so different
//! workers may hold them at the same time; what decides whether an e-mail may leave is
//! what the patient has been told so far (`told`: the latest version whose e-mail was
//! sent, or that was dead-lettered and so decided):
//!
//! - a change of version `v` goes out once `told` is `v - 1`; a reminder or a no-show
//!   notice (a *repeat* of its version) once `told` is its own version, and leaves
//!   `told` as it was, so it never holds a later change back;
//! - anything older than `told` is superseded: the patient already knows a later
//!   state, and an old confirmation must not arrive as if it were current;
//! - while an earlier version is still being handled, the e-mail waits — bounded: after
//!   the wait it goes out anyway (`forced`), and the earlier one, should it come, is
//!   superseded. The last e-mail is always about the latest state.
//!
//! Only one e-mail of an appointment is in flight at a time (a lease held for one SMTP
//! attempt), so a reminder and the next change never overtake each other on the wire.

use uuid::Uuid;

/// An e-mail's place among its appointment's e-mails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    pub appointment_id: Uuid,
    /// The appointment's version the e-mail tells about.
    pub version: i32,
    /// A reminder or a no-show notice repeats its version; every other appointment
    /// e-mail advances it.
    pub repeats: bool,
}

/// Whether an e-mail may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnDecision {
    /// Send it; the lease is this handler's until it ends its turn.
    Go,
    /// An earlier version has not been told yet (`told` is the last told).
    WaitEarlier { told: i32 },
    /// Another handler is sending an e-mail of this appointment right now.
    WaitBusy,
    /// The patient was already told about version `told`, later than this one.
    Superseded { told: i32 },
}

/// The decision for `turn`, given what the patient was told and who, if anyone, holds an
/// unexpired lease on the appointment. `forced`: the e-mail has waited its longest.
pub fn decide(
    turn: &Turn,
    told: i32,
    holder: Option<Uuid>,
    me: Uuid,
    forced: bool,
) -> TurnDecision {
    if told > turn.version {
        return TurnDecision::Superseded { told };
    }
    if holder.is_some_and(|h| h != me) {
        return TurnDecision::WaitBusy;
    }
    let next_due = if turn.repeats {
        turn.version
    } else {
        turn.version.saturating_sub(1)
    };
    if told < next_due && !forced {
        return TurnDecision::WaitEarlier { told };
    }
    TurnDecision::Go
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(version: i32) -> Turn {
        Turn {
            appointment_id: Uuid::nil(),
            version,
            repeats: false,
        }
    }

    fn reminder(version: i32) -> Turn {
        Turn {
            repeats: true,
            ..change(version)
        }
    }

    #[test]
    fn a_change_goes_right_after_the_previous_version() {
        let me = Uuid::new_v4();
        assert_eq!(decide(&change(1), 0, None, me, false), TurnDecision::Go);
        assert_eq!(decide(&change(3), 2, None, me, false), TurnDecision::Go);
        // The same version again (a replay of a dead letter, a takeover): still current.
        assert_eq!(decide(&change(3), 3, None, me, false), TurnDecision::Go);
    }

    #[test]
    fn a_change_waits_for_an_earlier_version_until_forced() {
        let me = Uuid::new_v4();
        assert_eq!(
            decide(&change(2), 0, None, me, false),
            TurnDecision::WaitEarlier { told: 0 }
        );
        assert_eq!(decide(&change(2), 0, None, me, true), TurnDecision::Go);
    }

    #[test]
    fn anything_older_than_what_was_told_is_superseded_even_when_forced() {
        let me = Uuid::new_v4();
        for forced in [false, true] {
            assert_eq!(
                decide(&change(1), 2, None, me, forced),
                TurnDecision::Superseded { told: 2 }
            );
            assert_eq!(
                decide(&reminder(1), 2, None, me, forced),
                TurnDecision::Superseded { told: 2 }
            );
        }
    }

    #[test]
    fn a_reminder_goes_only_once_its_own_version_was_told() {
        let me = Uuid::new_v4();
        assert_eq!(
            decide(&reminder(2), 1, None, me, false),
            TurnDecision::WaitEarlier { told: 1 }
        );
        assert_eq!(decide(&reminder(2), 2, None, me, false), TurnDecision::Go);
        assert_eq!(decide(&reminder(2), 1, None, me, true), TurnDecision::Go);
    }

    #[test]
    fn a_lease_held_by_another_handler_is_waited_for_even_when_forced() {
        let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
        for forced in [false, true] {
            assert_eq!(
                decide(&change(2), 1, Some(other), me, forced),
                TurnDecision::WaitBusy
            );
        }
        assert_eq!(decide(&change(2), 1, Some(me), me, false), TurnDecision::Go);
    }
}
