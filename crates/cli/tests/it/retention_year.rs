//! A year and more of retention under the server's clock, on both backends: 400 simulated
//! days in one-day steps, records ingested every day, legal holds of every scope placed and
//! released along the way (overlapping ones included), and one sweep a day. A model of every
//! record says which must exist after each sweep; the store must agree exactly, every day.
//! This proves that a record under an active hold is never destroyed, that an unheld record
//! is destroyed by the first sweep after its expiry day has ended and never before, that a
//! released hold's overdue records go at the next sweep, and that every destroyed record is
//! counted by exactly one signed certificate.

use std::collections::{BTreeMap, HashSet};

use custodian_core::access::Role;
use custodian_core::ids::{RecordId, TenantId};
use custodian_server::retention::{self, Certificate};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde_json::{Value, json};

use crate::harness::{TestServer, on_both_backends, record_line, rfc3339};

on_both_backends!(holds_and_expiry_hold_up_over_a_year_of_daily_sweeps);

const DAY: SignedDuration = SignedDuration::from_hours(24);

/// Days simulated, one sweep each.
const DAYS: i64 = 400;

/// Every record names one or two of these subjects.
const SUBJECTS: [&str; 8] = ["ana", "ben", "cleo", "dev", "eli", "fay", "gus", "hal"];

/// What a planned hold covers. Event-time bounds are offsets from the first day's time.
#[derive(Clone, Copy, Debug)]
enum Covers {
    Subject(&'static str),
    DataType(&'static str),
    EventTime {
        from: SignedDuration,
        to: SignedDuration,
    },
}

/// A hold placed on day `place` and released on day `release` (before that day's sweep), or
/// kept to the end of the simulation.
struct Planned {
    place: i64,
    release: Option<i64>,
    covers: Covers,
}

const fn at(days: i64, minus_minutes: i64) -> SignedDuration {
    SignedDuration::from_mins(days * 24 * 60 - minus_minutes)
}

/// app_log records expire after 180 days and customer records after 12 months, so holds from
/// about day 180 on keep overdue records; earlier ones only matter if still active then.
const PLAN: &[Planned] = &[
    // Released long after ana's first records expire, but a second hold on ana overlaps it.
    Planned {
        place: 10,
        release: Some(250),
        covers: Covers::Subject("ana"),
    },
    Planned {
        place: 30,
        release: Some(380),
        covers: Covers::Subject("ben"),
    },
    // Whole days 40 to 54 (records are 1 to 4 hours older than their day's time).
    Planned {
        place: 60,
        release: Some(300),
        covers: Covers::EventTime {
            from: at(40, 12 * 60),
            to: at(55, 12 * 60),
        },
    },
    // Released before any of dev's records expire: it never keeps anything.
    Planned {
        place: 100,
        release: Some(140),
        covers: Covers::Subject("dev"),
    },
    // Every app_log bucket falling due in this stretch is held whole.
    Planned {
        place: 150,
        release: Some(215),
        covers: Covers::DataType("app_log"),
    },
    // Cuts through days: part of day 100's records, all of 101 and 102, part of 103's.
    Planned {
        place: 170,
        release: None,
        covers: Covers::EventTime {
            from: at(100, 150),
            to: at(103, 150),
        },
    },
    Planned {
        place: 175,
        release: Some(230),
        covers: Covers::Subject("fay"),
    },
    // Placed when eli's oldest records are already gone.
    Planned {
        place: 190,
        release: Some(260),
        covers: Covers::Subject("eli"),
    },
    Planned {
        place: 200,
        release: None,
        covers: Covers::Subject("cleo"),
    },
    Planned {
        place: 240,
        release: Some(330),
        covers: Covers::Subject("ana"),
    },
    // The first customer records fall due under this hold and go when it is released.
    Planned {
        place: 320,
        release: Some(370),
        covers: Covers::DataType("customer_record"),
    },
];

/// One ingested record as the test knows it.
struct Modelled {
    id: RecordId,
    data_type: &'static str,
    subjects: Vec<&'static str>,
    event_time: Timestamp,
    expires_at: Timestamp,
    /// The first instant no record can land in its expiry bucket any more: the end of the
    /// expiry's UTC day. The first sweep at or after it destroys the record unless held.
    closes_at: Timestamp,
    /// The day whose sweep destroyed it, per the model.
    destroyed_on: Option<i64>,
    /// The payload marker, checked when the record is read back over HTTP.
    n: usize,
}

/// A placed hold as the test knows it.
struct ModelHold {
    id: String,
    covers: Covers,
    /// For event-time holds: the absolute bounds.
    range: Option<(Timestamp, Timestamp)>,
    active: bool,
}

impl ModelHold {
    fn covers(&self, record: &Modelled) -> bool {
        match self.covers {
            Covers::Subject(s) => record.subjects.contains(&s),
            Covers::DataType(t) => record.data_type == t,
            Covers::EventTime { .. } => {
                let (from, to) = self.range.expect("event-time hold has bounds");
                from <= record.event_time && record.event_time < to
            }
        }
    }
}

fn end_of_utc_day(t: Timestamp) -> Timestamp {
    t.to_zoned(TimeZone::UTC)
        .date()
        .tomorrow()
        .unwrap()
        .to_zoned(TimeZone::UTC)
        .unwrap()
        .timestamp()
}

fn active_holds_on<'h>(holds: &'h [ModelHold], record: &Modelled) -> Vec<&'h str> {
    holds
        .iter()
        .filter(|h| h.active && h.covers(record))
        .map(|h| h.id.as_str())
        .collect()
}

async fn place_hold(server: &TestServer, token: &str, scope: Value) -> String {
    let reply = server
        .post_json(
            "/v1/tenants/acme/holds",
            token,
            &json!({"scope": scope, "case_id": "CASE-Y", "reason": "litigation"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["id"].as_str().unwrap().to_owned()
}

async fn release_hold(server: &TestServer, token: &str, id: &str) {
    let released = server
        .delete(&format!("/v1/tenants/acme/holds/{id}"), token)
        .await
        .ok_json();
    assert_eq!(released["active"], false, "{released}");
}

/// What the store says of one record.
struct Listed {
    event_time: Timestamp,
    expires_at: Option<Timestamp>,
    key_bucket: String,
}

/// Every record the store holds for the tenant: each record names a subject of [`SUBJECTS`],
/// so the union of their listings (read concurrently) is everything.
async fn stored_records(server: &TestServer, tenant: &TenantId) -> BTreeMap<RecordId, Listed> {
    let keys = server.state.keys.tenant(tenant).await.unwrap();
    let mut listings = tokio::task::JoinSet::new();
    for subject in SUBJECTS {
        let pseudonym = keys.pseudonym(subject);
        let (state, tenant) = (server.state.clone(), tenant.clone());
        listings.spawn(async move {
            let mut listed = Vec::new();
            let mut after = None;
            loop {
                let page = state
                    .store
                    .list_subject_records(&tenant, &pseudonym, after, 500)
                    .await
                    .unwrap();
                let Some(last) = page.last() else {
                    return listed;
                };
                after = Some(last.id);
                listed.extend(page.into_iter().map(|r| {
                    let listed = Listed {
                        event_time: r.event_time,
                        expires_at: r.expires_at,
                        key_bucket: r.key_bucket,
                    };
                    (r.id, listed)
                }));
            }
        });
    }
    let mut all = BTreeMap::new();
    while let Some(listed) = listings.join_next().await {
        all.extend(listed.unwrap());
    }
    all
}

/// Describes a record for a failure message.
fn describe(record: &Modelled, holds: &[ModelHold], now: Timestamp) -> String {
    format!(
        "{} ({}, subjects {:?}, event {}, expires {}, bucket closes {}, now {now}, model destroyed on day {:?}, active holds covering it {:?})",
        record.id,
        record.data_type,
        record.subjects,
        record.event_time,
        record.expires_at,
        record.closes_at,
        record.destroyed_on,
        active_holds_on(holds, record),
    )
}

/// Compares the store with the model: invariants 1 to 3, every day.
fn check_existence(
    day: i64,
    now: Timestamp,
    records: &[Modelled],
    holds: &[ModelHold],
    stored: &BTreeMap<RecordId, Listed>,
) {
    let mut problems = Vec::new();
    let modelled: HashSet<RecordId> = records.iter().map(|r| r.id).collect();
    for record in records {
        let exists = stored.contains_key(&record.id);
        let held = !active_holds_on(holds, record).is_empty();
        match (record.destroyed_on, exists) {
            (None, false) if held => problems.push(format!(
                "held record purged (invariant 1): {}",
                describe(record, holds, now)
            )),
            (None, false) => problems.push(format!(
                "record purged before its expiry bucket closed (invariant 3): {}",
                describe(record, holds, now)
            )),
            (Some(_), true) => problems.push(format!(
                "unheld overdue record still stored after the sweep (invariants 2 and 5): {}",
                describe(record, holds, now)
            )),
            _ => {}
        }
    }
    for id in stored.keys() {
        if !modelled.contains(id) {
            problems.push(format!("the store holds a record nobody ingested: {id}"));
        }
    }
    assert!(
        problems.is_empty(),
        "day {day}: {} discrepancies between the store and the model:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Marks the records a sweep at `now` must destroy; returns their indexes.
fn model_sweep(
    day: i64,
    now: Timestamp,
    records: &mut [Modelled],
    holds: &[ModelHold],
) -> Vec<usize> {
    let mut destroyed = Vec::new();
    for (i, record) in records.iter_mut().enumerate() {
        if record.destroyed_on.is_none()
            && record.closes_at <= now
            && active_holds_on(holds, record).is_empty()
        {
            record.destroyed_on = Some(day);
            destroyed.push(i);
        }
    }
    destroyed
}

/// The certificates the sweeps issued, by id.
#[derive(Default)]
struct Certificates {
    issued: BTreeMap<String, Certificate>,
    scopes: HashSet<String>,
}

impl Certificates {
    /// Takes one sweep's certificates: each certifies some records of a scope never certified
    /// before.
    fn issued(&mut self, certificates: &[Certificate], day: i64) {
        for certificate in certificates {
            assert_eq!(certificate.tenant, "acme");
            assert!(
                certificate.scope.starts_with("bucket/"),
                "day {day}: only the sweeper destroys here: {}",
                certificate.scope
            );
            assert!(
                certificate.record_count > 0,
                "day {day}: a certificate for nothing: {certificate:?}"
            );
            assert!(
                self.scopes.insert(certificate.scope.clone()),
                "day {day}: a second certificate for scope {}",
                certificate.scope
            );
            let before = self
                .issued
                .insert(certificate.id.clone(), certificate.clone());
            assert!(before.is_none(), "day {day}: certificate id reused");
        }
    }

    /// Invariant 4: the certificates count every destroyed record once.
    fn check_count(&self, destroyed: usize, day: i64) {
        let certified: u64 = self.issued.values().map(|c| c.record_count).sum();
        assert_eq!(
            certified, destroyed as u64,
            "day {day}: certificates count {certified} records destroyed, the model {destroyed}"
        );
    }

    /// The tenant's stored certificates are exactly those issued, each signed and saying what
    /// the sweep reported.
    async fn check_stored(&self, server: &TestServer, tenant: &TenantId, day: i64) {
        let verifier =
            custodian_tlog::note::Verifier::parse(&server.state.audit.verifier_key().unwrap())
                .unwrap();
        let rows = server.state.store.certificates(tenant).await.unwrap();
        let mut scopes = HashSet::new();
        for row in &rows {
            assert!(
                scopes.insert(row.scope.as_str()),
                "day {day}: two stored certificates for scope {}",
                row.scope
            );
            let stored = Certificate::from_signed_text(verifier.open_text(&row.note).unwrap())
                .unwrap_or_else(|| panic!("day {day}: unreadable certificate {}", row.id));
            assert_eq!(stored.scope, row.scope);
            assert_eq!(
                self.issued.get(&row.id),
                Some(&stored),
                "day {day}: stored certificate {} is not one a sweep reported",
                row.id
            );
        }
        assert_eq!(
            rows.len(),
            self.issued.len(),
            "day {day}: a reported certificate is not stored"
        );
    }
}

async fn holds_and_expiry_hold_up_over_a_year_of_daily_sweeps(server: TestServer) {
    let state = server.state.clone();
    let acme = TenantId::new("acme").unwrap();
    let writer = server.token("acme", Role::Writer).await;
    let admin = server.token("acme", Role::Admin).await;
    let start = server.now();

    let mut records: Vec<Modelled> = Vec::new();
    let mut holds: Vec<ModelHold> = Vec::new();
    let mut certificates = Certificates::default();
    // What the run went through, so a quiet run cannot pass for a thorough one.
    let mut kept_overdue = HashSet::new();
    let mut freed_by_release = 0usize;
    let mut partial_buckets = 0usize;

    for day in 0..DAYS {
        if day > 0 {
            server.clock.advance(DAY);
        }
        let now = server.now();

        // Holds released today: their overdue records, if nothing else keeps them, must go
        // at today's sweep (invariant 5).
        let mut released_today = Vec::new();
        for (i, planned) in PLAN.iter().enumerate() {
            if planned.release == Some(day) {
                let hold = &mut holds[i];
                release_hold(&server, &admin, &hold.id).await;
                hold.active = false;
                released_today.push(i);
            }
        }

        // Holds placed today, in plan order (indexes match PLAN's).
        for planned in PLAN.iter().filter(|p| p.place == day) {
            let (scope, range) = match planned.covers {
                Covers::Subject(s) => (json!({"kind": "subject", "subject": s}), None),
                Covers::DataType(t) => (json!({"kind": "data_type", "data_type": t}), None),
                Covers::EventTime { from, to } => {
                    let whole_seconds = |t: Timestamp| rfc3339(t).parse::<Timestamp>().unwrap();
                    let (from, to) = (whole_seconds(start + from), whole_seconds(start + to));
                    (
                        json!({"kind": "event_time", "from": from.to_string(), "to": to.to_string()}),
                        Some((from, to)),
                    )
                }
            };
            let id = place_hold(&server, &admin, scope).await;
            holds.push(ModelHold {
                id,
                covers: planned.covers,
                range,
                active: true,
            });
        }
        assert_eq!(
            holds.len(),
            PLAN.iter().filter(|p| p.place <= day).count(),
            "the plan is in order of placement"
        );

        // Computed once today's new holds are in place: they may keep records too.
        let freed: Vec<usize> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.destroyed_on.is_none()
                    && r.closes_at <= now
                    && released_today.iter().any(|&h| holds[h].covers(r))
                    && active_holds_on(&holds, r).is_empty()
            })
            .map(|(i, _)| i)
            .collect();
        freed_by_release += freed.len();

        // Today's records: three app logs and a customer record, an hour apart, the customer
        // record naming two subjects every fourth day.
        let d = usize::try_from(day).unwrap();
        let mut lines = Vec::new();
        let mut fresh = Vec::new();
        for i in 0..4usize {
            let (data_type, subjects) = if i < 3 {
                ("app_log", vec![SUBJECTS[(3 * d + i) % 8]])
            } else if day % 4 == 0 {
                (
                    "customer_record",
                    vec![SUBJECTS[(5 * d) % 8], SUBJECTS[(5 * d + 3) % 8]],
                )
            } else {
                ("customer_record", vec![SUBJECTS[(5 * d) % 8]])
            };
            let hours = i64::try_from(i + 1).unwrap();
            let event_time: Timestamp = rfc3339(now - SignedDuration::from_hours(hours))
                .parse()
                .unwrap();
            let n = records.len() + i;
            lines.push(record_line(
                data_type,
                &subjects,
                &event_time.to_string(),
                json!({"n": n, "day": day}),
            ));
            fresh.push((data_type, subjects, event_time, n));
        }
        let ids = server.ingest("acme", &writer, &lines.join("\n")).await;
        assert_eq!(ids.len(), fresh.len());
        let first_today = records.len();
        for (id, (data_type, subjects, event_time, n)) in ids.iter().zip(fresh) {
            // Checked against what the store says once today's listing is read.
            let expires_at = match data_type {
                "app_log" => event_time + DAY * 180,
                _ => event_time
                    .to_zoned(TimeZone::UTC)
                    .checked_add(12.months())
                    .unwrap()
                    .timestamp(),
            };
            records.push(Modelled {
                id: id.parse().unwrap(),
                data_type,
                subjects,
                event_time,
                expires_at,
                closes_at: end_of_utc_day(expires_at),
                destroyed_on: None,
                n,
            });
        }

        // The day's sweep, and the model's.
        let report = retention::sweep(&state, now)
            .await
            .unwrap_or_else(|e| panic!("day {day}: sweep failed: {e}"));
        let destroyed_today = model_sweep(day, now, &mut records, &holds);
        certificates.issued(&report.destroyed, day);
        let reported: u64 = report.destroyed.iter().map(|c| c.record_count).sum();
        assert_eq!(
            reported,
            destroyed_today.len() as u64,
            "day {day}: the sweep reports {reported} records destroyed, the model {}",
            destroyed_today.len()
        );
        partial_buckets += report
            .destroyed
            .iter()
            .filter(|c| {
                report
                    .held
                    .iter()
                    .any(|(b, _)| c.scope == format!("bucket/{}/{}", b.data_type, b.bucket))
            })
            .count();
        for &i in &freed {
            assert_eq!(
                records[i].destroyed_on,
                Some(day),
                "day {day}: a released hold's record was not freed"
            );
        }
        let overdue_held: Vec<usize> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.destroyed_on.is_none() && r.closes_at <= now)
            .map(|(i, _)| i)
            .collect();
        kept_overdue.extend(overdue_held.iter().copied());

        // Invariants 1 to 3 (and 5): the store holds exactly what the model says.
        let stored = stored_records(&server, &acme).await;
        check_existence(day, now, &records, &holds, &stored);
        // Today's records as stored: the event time sent, the expiry the policy gives (app
        // logs 180 days, customer records 12 months on the UTC calendar), its day's bucket.
        for record in &records[first_today..] {
            let listed = &stored[&record.id];
            assert_eq!(listed.event_time, record.event_time);
            assert_eq!(
                listed.expires_at,
                Some(record.expires_at),
                "{} expiry",
                record.data_type
            );
            assert_eq!(
                listed.key_bucket,
                format!("d{}", record.expires_at.to_zoned(TimeZone::UTC).date())
            );
        }

        // The same through the store's point read and the HTTP API, for a sample.
        for &i in destroyed_today.iter().take(2) {
            let record = &records[i];
            assert!(
                state
                    .store
                    .get_record(&acme, record.id)
                    .await
                    .unwrap()
                    .is_none(),
                "day {day}: {}",
                describe(record, &holds, now)
            );
            server
                .get_record("acme", &writer, &record.id.to_string())
                .await
                .problem(404, "record-not-found");
        }
        for &i in overdue_held
            .iter()
            .skip(d % overdue_held.len().max(1))
            .take(2)
        {
            let record = &records[i];
            assert!(
                !active_holds_on(&holds, record).is_empty(),
                "an overdue record is kept only by a hold"
            );
            assert!(
                state
                    .store
                    .get_record(&acme, record.id)
                    .await
                    .unwrap()
                    .is_some(),
                "day {day}: {}",
                describe(record, &holds, now)
            );
            let read = server
                .get_record("acme", &writer, &record.id.to_string())
                .await
                .ok_json();
            assert_eq!(read["payload"]["n"], record.n, "{read}");
        }

        // Invariant 4: one certificate per destroyed bucket, counting every destroyed record;
        // the stored ones (read every ten days, to keep the run short) are the same.
        let destroyed = records.iter().filter(|r| r.destroyed_on.is_some()).count();
        certificates.check_count(destroyed, day);
        if day % 10 == 9 {
            certificates.check_stored(&server, &acme, day).await;
        }
    }

    // At the end: every record still under an active hold exists.
    let now = server.now();
    let still_held: Vec<&Modelled> = records
        .iter()
        .filter(|r| !active_holds_on(&holds, r).is_empty())
        .collect();
    assert!(!still_held.is_empty());
    for record in &still_held {
        assert!(
            state
                .store
                .get_record(&acme, record.id)
                .await
                .unwrap()
                .is_some(),
            "{}",
            describe(record, &holds, now)
        );
    }
    // Release the rest and sweep: everything overdue is gone, everything else stays.
    for hold in holds.iter_mut().filter(|h| h.active) {
        release_hold(&server, &admin, &hold.id).await;
        hold.active = false;
    }
    let report = retention::sweep(&state, now).await.unwrap();
    certificates.issued(&report.destroyed, DAYS);
    let last = model_sweep(DAYS, now, &mut records, &holds);
    assert!(!last.is_empty(), "the last holds kept overdue records");
    assert_eq!(
        report.destroyed.iter().map(|c| c.record_count).sum::<u64>(),
        last.len() as u64
    );
    let stored = stored_records(&server, &acme).await;
    check_existence(DAYS, now, &records, &holds, &stored);
    assert!(
        records
            .iter()
            .filter(|r| r.destroyed_on.is_none())
            .all(|r| r.closes_at > now),
        "nothing overdue is left"
    );
    let destroyed = records.iter().filter(|r| r.destroyed_on.is_some()).count();
    certificates.check_count(destroyed, DAYS);
    certificates.check_stored(&server, &acme, DAYS).await;

    // The run exercised what it claims to.
    assert_eq!(records.len(), 4 * DAYS as usize);
    assert!(destroyed > 600, "{destroyed} records destroyed");
    assert!(
        kept_overdue.len() > 100,
        "{} kept overdue",
        kept_overdue.len()
    );
    assert!(
        freed_by_release > 50,
        "{freed_by_release} freed by releases"
    );
    assert!(
        partial_buckets > 10,
        "{partial_buckets} partly held buckets"
    );
}
