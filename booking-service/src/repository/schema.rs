//! Diesel table definitions, kept in step with `migrations/` by hand; the test
//! `schema_rs_matches_the_migrated_database` compares them with the migrated database.

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Nullable<Text>,
        role -> Text,
        full_name -> Text,
        birth_date -> Nullable<Date>,
        gender -> Nullable<Text>,
        phone -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        email_verified_at -> Nullable<Timestamptz>,
        pending_email -> Nullable<Text>,
        calendar_token_hash -> Nullable<Text>,
    }
}

diesel::table! {
    account_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        purpose -> Text,
        token_hash -> Text,
        email -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        family_id -> Uuid,
        token_hash -> Text,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        session_expires_at -> Timestamptz,
    }
}

diesel::table! {
    login_throttle (key) {
        key -> Text,
        failures -> Int4,
        window_started_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    login_known_clients (key) {
        key -> Text,
        last_success_at -> Timestamptz,
    }
}

diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(account_tokens -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    refresh_tokens,
    login_throttle,
    login_known_clients,
    account_tokens
);

diesel::table! {
    clinics (id) {
        id -> Uuid,
        name -> Text,
        city -> Text,
        address -> Text,
        time_zone -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        min_notice_minutes -> Nullable<Int4>,
        horizon_days -> Nullable<Int4>,
        change_deadline_minutes -> Nullable<Int4>,
        max_active_per_patient -> Nullable<Int4>,
        no_show_limit -> Nullable<Int4>,
        no_show_window_days -> Nullable<Int4>,
        no_show_email -> Bool,
    }
}

diesel::table! {
    doctors (id) {
        id -> Uuid,
        full_name -> Text,
        specialty -> Text,
        clinic_id -> Uuid,
        status -> Text,
        bio -> Text,
        years_of_experience -> Int4,
        user_id -> Nullable<Uuid>,
        rating_sum -> Int8,
        rating_count -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        min_notice_minutes -> Nullable<Int4>,
        horizon_days -> Nullable<Int4>,
        change_deadline_minutes -> Nullable<Int4>,
        calendar_token_hash -> Nullable<Text>,
    }
}

diesel::table! {
    slots (id) {
        id -> Uuid,
        doctor_id -> Uuid,
        starts_at -> Timestamptz,
        ends_at -> Timestamptz,
        status -> Text,
        created_at -> Timestamptz,
        available_since -> Timestamptz,
    }
}

diesel::table! {
    appointments (id) {
        id -> Uuid,
        slot_id -> Uuid,
        patient_id -> Uuid,
        doctor_id -> Uuid,
        status -> Text,
        reason -> Text,
        cancel_reason -> Nullable<Text>,
        cancelled_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> Int4,
        starts_at -> Timestamptz,
        ends_at -> Timestamptz,
        attendance_marked_at -> Nullable<Timestamptz>,
        attendance_marked_by -> Nullable<Uuid>,
        manage_token_hash -> Nullable<Text>,
    }
}

diesel::table! {
    appointment_reminders (id) {
        id -> Uuid,
        appointment_id -> Uuid,
        offset_label -> Text,
        due_at -> Timestamptz,
        version -> Int4,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        event_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    reviews (id) {
        id -> Uuid,
        doctor_id -> Uuid,
        patient_id -> Uuid,
        appointment_id -> Uuid,
        rating -> Int2,
        text -> Text,
        created_at -> Timestamptz,
        author_shown_as -> Text,
    }
}

diesel::table! {
    booking_idempotency (patient_id, key) {
        patient_id -> Uuid,
        key -> Text,
        request_hash -> Text,
        appointment_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    outbox_events (seq) {
        seq -> Int8,
        id -> Uuid,
        aggregate_id -> Uuid,
        topic -> Text,
        event_type -> Text,
        payload -> Text,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        locked_by -> Nullable<Uuid>,
        locked_until -> Nullable<Timestamptz>,
        request_id -> Nullable<Text>,
        sink -> Text,
        trace_parent -> Nullable<Text>,
    }
}

diesel::table! {
    waitlist_entries (id) {
        id -> Uuid,
        patient_id -> Uuid,
        doctor_id -> Uuid,
        from_date -> Date,
        to_date -> Date,
        status -> Text,
        appointment_id -> Nullable<Uuid>,
        offer_token_hash -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    slot_holds (slot_id) {
        slot_id -> Uuid,
        entry_id -> Uuid,
        patient_id -> Uuid,
        token_hash -> Text,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    waitlist_passes (entry_id, slot_id) {
        entry_id -> Uuid,
        slot_id -> Uuid,
    }
}

diesel::joinable!(doctors -> clinics (clinic_id));
diesel::joinable!(slots -> doctors (doctor_id));
diesel::joinable!(appointments -> slots (slot_id));
diesel::joinable!(appointments -> doctors (doctor_id));
diesel::joinable!(appointments -> users (patient_id));
diesel::joinable!(appointment_reminders -> appointments (appointment_id));
diesel::joinable!(reviews -> doctors (doctor_id));
diesel::joinable!(reviews -> users (patient_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    clinics,
    doctors,
    slots,
    appointments,
    reviews,
    booking_idempotency,
    outbox_events,
    appointment_reminders,
    waitlist_entries,
    slot_holds,
    waitlist_passes
);
