//! `custodian hold|retention|deletions`: legal holds, the dry-run plan, sweeps on demand, and
//! deletion certificates: fetched, verified offline, and gathered into the quarterly review.

use std::fmt::Write as _;
use std::path::Path;

use custodian_server::retention::Certificate;
use jiff::Timestamp;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::ServerClient;
use crate::args::{DeletionsCommand, HoldCommand, RetentionCommand, TenantArgs};
use crate::exit::{CmdResult, Failure, invalid};

pub async fn hold(cmd: HoldCommand) -> CmdResult {
    match cmd {
        HoldCommand::Place {
            target,
            all,
            data_type,
            subject,
            from,
            to,
            case_id,
            reason,
        } => {
            let scope = match (all, data_type, subject, from, to) {
                (true, ..) => json!({"kind": "tenant"}),
                (_, Some(t), ..) => json!({"kind": "data_type", "data_type": t}),
                (_, _, Some(s), ..) => json!({"kind": "subject", "subject": s}),
                (_, _, _, Some(from), Some(to)) => json!({
                    "kind": "event_time",
                    "from": time_arg("--from", &from)?,
                    "to": time_arg("--to", &to)?,
                }),
                _ => {
                    return Err(invalid(
                        "give the hold's scope: --all, --type TYPE, --subject ID, or --from TIME --to TIME",
                    ));
                }
            };
            let body = json!({"scope": scope, "case_id": case_id, "reason": reason});
            let hold: Value = tenant_call(&target, Method::POST, "holds", Some(&body)).await?;
            println!("{}", hold["id"].as_str().unwrap_or_default());
            eprintln!(
                "hold placed on {} of tenant {} (case {})",
                hold["scope"].as_str().unwrap_or_default(),
                target.tenant,
                hold["case_id"].as_str().unwrap_or_default()
            );
            Ok(())
        }
        HoldCommand::Release { target, id } => {
            let hold: Value =
                tenant_call(&target, Method::DELETE, &format!("holds/{id}"), None).await?;
            eprintln!(
                "hold {id} released; records it kept that are past their retention are destroyed at the next sweep ({})",
                hold["scope"].as_str().unwrap_or_default()
            );
            Ok(())
        }
        HoldCommand::List { target, json } => {
            let holds: Vec<Value> = tenant_call(&target, Method::GET, "holds", None).await?;
            if json {
                return print_json(&holds);
            }
            println!(
                "{:<32} {:<8} {:<40} {:<16} {:<22} by",
                "ID", "STATE", "SCOPE", "CASE", "PLACED"
            );
            for h in &holds {
                let state = if h["active"].as_bool() == Some(true) {
                    "active"
                } else {
                    "released"
                };
                println!(
                    "{:<32} {:<8} {:<40} {:<16} {:<22} {}",
                    text(&h["id"]),
                    state,
                    text(&h["scope"]),
                    text(&h["case_id"]),
                    text(&h["placed_at"]),
                    text(&h["placed_by"]),
                );
            }
            Ok(())
        }
    }
}

pub async fn retention(cmd: RetentionCommand) -> CmdResult {
    match cmd {
        RetentionCommand::Plan {
            server,
            tenant,
            at,
            json,
        } => {
            let client = ServerClient::new(&server)?;
            let query = match &at {
                Some(at) => format!("?at={}", query_value(&time_arg("--at", at)?)),
                None => String::new(),
            };
            let path = match &tenant {
                Some(t) => format!("/v1/tenants/{t}/retention/plan{query}"),
                None => format!("/v1/system/retention/plan{query}"),
            };
            let plan: Value = client.json(Method::GET, &path, None).await?;
            if json {
                return print_json(&plan);
            }
            print_plan(&plan);
            Ok(())
        }
        RetentionCommand::Sweep { server } => {
            let client = ServerClient::new(&server)?;
            let report: Value = client
                .json(Method::POST, "/v1/system/retention/sweep", None)
                .await?;
            print_json(&report)?;
            let count = |field: &str| report[field].as_array().map_or(0, Vec::len);
            eprintln!(
                "sweep done: {} records destroyed under {} certificate(s); {} due bucket(s) held; {} audit period(s) reduced to hashes, {} audit log(s) held",
                report["records_destroyed"],
                count("certificates"),
                count("held"),
                count("audit_periods_destroyed"),
                count("audit_held"),
            );
            Ok(())
        }
    }
}

pub async fn deletions(cmd: DeletionsCommand) -> CmdResult {
    match cmd {
        DeletionsCommand::List { target, json } => {
            let all: Vec<CertificateView> =
                tenant_call(&target, Method::GET, "deletions", None).await?;
            if json {
                let certificates: Vec<&Certificate> = all.iter().map(|v| &v.certificate).collect();
                return print_json(&certificates);
            }
            println!(
                "{:<32} {:<22} {:>8} {:<40} by",
                "ID", "COMPLETED", "RECORDS", "SCOPE"
            );
            for v in &all {
                let c = &v.certificate;
                println!(
                    "{:<32} {:<22} {:>8} {:<40} {}",
                    c.id,
                    c.completed_at.to_string(),
                    c.record_count,
                    c.scope,
                    c.performed_by
                );
            }
            Ok(())
        }
        DeletionsCommand::Get { target, id, out } => {
            let view: CertificateView =
                tenant_call(&target, Method::GET, &format!("deletions/{id}"), None).await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &view.signed_note)
                        .map_err(|e| invalid(format!("cannot write {}: {e}", path.display())))?;
                    eprintln!(
                        "certificate {id} written to {}; check it with `custodian deletions verify`",
                        path.display()
                    );
                }
                None => print!("{}", view.signed_note),
            }
            Ok(())
        }
        DeletionsCommand::Verify { file, key } => verify(&file, &key),
        DeletionsCommand::Review { target, quarter } => {
            let quarter = Quarter::parse(&quarter).ok_or_else(|| {
                invalid(format!(
                    "--quarter {quarter:?} is not a quarter; write it as 2026Q4"
                ))
            })?;
            let client = ServerClient::new(&target.server)?;
            let key: String = String::from_utf8(
                client
                    .send(Method::GET, "/v1/system/audit/key", None, "text/plain")
                    .await?,
            )
            .map_err(|e| Failure::Internal(e.into()))?;
            let verifier = parse_verifier(key.trim())?;
            let all: Vec<CertificateView> =
                tenant_call(&target, Method::GET, "deletions", None).await?;
            let holds: Vec<Value> = tenant_call(&target, Method::GET, "holds", None)
                .await
                .unwrap_or_default();
            let mut reviewed = Vec::new();
            for view in all {
                if quarter.contains(view.certificate.completed_at) {
                    let verified = verifier
                        .open_text(&view.signed_note)
                        .ok()
                        .and_then(Certificate::from_signed_text)
                        .is_some_and(|c| c == view.certificate);
                    reviewed.push((view.certificate, verified));
                }
            }
            print!(
                "{}",
                review_report(&target.tenant, &quarter, &reviewed, &holds, key.trim())
            );
            if reviewed.iter().any(|(_, ok)| !ok) {
                return Err(invalid(
                    "at least one certificate does not verify against the deployment's key",
                ));
            }
            Ok(())
        }
    }
}

#[derive(Deserialize)]
struct CertificateView {
    certificate: Certificate,
    signed_note: String,
}

async fn tenant_call<T: serde::de::DeserializeOwned>(
    target: &TenantArgs,
    method: Method,
    rest: &str,
    body: Option<&Value>,
) -> Result<T, Failure> {
    ServerClient::new(&target.server)?
        .json(
            method,
            &format!("/v1/tenants/{}/{rest}", target.tenant),
            body,
        )
        .await
}

fn print_json(value: &impl serde::Serialize) -> CmdResult {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Internal(e.into()))?;
    println!("{text}");
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A time argument as the server takes it: RFC 3339, or a date meaning its start in UTC.
fn time_arg(flag: &str, value: &str) -> Result<String, Failure> {
    custodian_core::retention::parse_instant(value)
        .map(|t| t.to_string())
        .ok_or_else(|| {
            invalid(format!(
                "{flag} {value:?} is neither an RFC 3339 time (2027-01-31T00:00:00Z) nor a date (2027-01-31)"
            ))
        })
}

/// RFC 3339 times carry `+` and `:`; only `+` needs escaping in a query.
fn query_value(s: &str) -> String {
    s.replace('+', "%2B")
}

fn print_plan(plan: &Value) {
    let empty = Vec::new();
    let buckets = plan["buckets"].as_array().unwrap_or(&empty);
    println!("retention plan at {}", text(&plan["at"]));
    if buckets.is_empty() {
        println!("nothing is due");
        return;
    }
    println!(
        "{:<12} {:<16} {:<22} {:>9} {:<22} {:<8} holds",
        "TENANT", "TYPE", "BUCKET", "RECORDS", "OLDEST RECORD", "ACTION"
    );
    let mut destroyed = 0;
    for b in buckets {
        if b["action"] == "destroy" {
            destroyed += b["records"].as_u64().unwrap_or(0);
        }
        let holds: Vec<String> = b["holds"]
            .as_array()
            .map(|h| h.iter().map(text).collect())
            .unwrap_or_default();
        println!(
            "{:<12} {:<16} {:<22} {:>9} {:<22} {:<8} {}",
            text(&b["tenant"]),
            text(&b["data_type"]),
            text(&b["bucket"]),
            text(&b["records"]),
            text(&b["oldest_record"]),
            text(&b["action"]),
            holds.join(",")
        );
    }
    println!("{destroyed} records would be destroyed");
}

fn parse_verifier(key: &str) -> Result<custodian_tlog::Verifier, Failure> {
    custodian_tlog::Verifier::parse(key).map_err(|e| {
        invalid(format!(
            "--key is not a verifier key ({e}); print it with `custodian audit key`"
        ))
    })
}

fn verify(file: &Path, key: &str) -> CmdResult {
    let verifier = parse_verifier(key)?;
    let note = std::fs::read_to_string(file)
        .map_err(|e| invalid(format!("cannot read {}: {e}", file.display())))?;
    let text = verifier.open_text(&note).map_err(|e| {
        invalid(format!(
            "{}: the signature does not verify with key {} ({e}): the certificate was altered or was not issued by this deployment",
            file.display(),
            verifier.name()
        ))
    })?;
    let certificate = Certificate::from_signed_text(text).ok_or_else(|| {
        invalid(format!(
            "{}: signed, but not a custodian deletion certificate",
            file.display()
        ))
    })?;
    print_json(&certificate)?;
    eprintln!(
        "{}: OK: certificate {} of tenant {} ({} records, {}) signed by {}",
        file.display(),
        certificate.id,
        certificate.tenant,
        certificate.record_count,
        certificate.scope,
        verifier.name()
    );
    Ok(())
}

/// A calendar quarter, `2026Q4`: its three months in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quarter {
    pub year: i16,
    pub number: i8,
}

impl Quarter {
    pub fn parse(s: &str) -> Option<Quarter> {
        let (year, number) = s
            .trim()
            .to_ascii_uppercase()
            .split_once('Q')
            .and_then(|(y, q)| Some((y.parse::<i16>().ok()?, q.parse::<i8>().ok()?)))?;
        ((1..=4).contains(&number) && (1..=9999).contains(&year))
            .then_some(Quarter { year, number })
    }

    fn start(&self) -> Option<Timestamp> {
        jiff::civil::date(self.year, (self.number - 1) * 3 + 1, 1)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    }

    fn end(&self) -> Option<Timestamp> {
        match self.number {
            4 => jiff::civil::Date::new(self.year.checked_add(1)?, 1, 1).ok()?,
            n => jiff::civil::date(self.year, n * 3 + 1, 1),
        }
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
    }

    /// Whether `t` falls in the quarter (start inclusive, end exclusive).
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start().is_some_and(|s| s <= t) && self.end().is_none_or(|e| t < e)
    }
}

impl std::fmt::Display for Quarter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}Q{}", self.year, self.number)
    }
}

/// The quarterly review of a tenant's deletions, as Markdown: totals per data type, every
/// certificate with its verification, the holds in force, and a sign-off block.
pub fn review_report(
    tenant: &str,
    quarter: &Quarter,
    reviewed: &[(Certificate, bool)],
    holds: &[Value],
    key: &str,
) -> String {
    let mut out = String::new();
    let records: u64 = reviewed.iter().map(|(c, _)| c.record_count).sum();
    let failed = reviewed.iter().filter(|(_, ok)| !ok).count();
    let _ = writeln!(out, "# Deletion review: tenant {tenant}, {quarter}\n");
    let _ = writeln!(
        out,
        "{} deletion certificate(s), {records} record(s) destroyed. Signatures checked with `{key}`: {}.\n",
        reviewed.len(),
        if failed == 0 {
            "all verify".to_owned()
        } else {
            format!("**{failed} DO NOT VERIFY**")
        }
    );
    let mut per_type: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
    for (c, _) in reviewed {
        let e = per_type.entry(c.data_type.as_str()).or_default();
        e.0 += 1;
        e.1 += c.record_count;
    }
    let _ = writeln!(
        out,
        "## Per data type\n\n| data type | certificates | records |\n|---|---:|---:|"
    );
    for (t, (n, r)) in &per_type {
        let _ = writeln!(out, "| {t} | {n} | {r} |");
    }
    let _ = writeln!(
        out,
        "\n## Certificates\n\n| id | completed | scope | records | performed by | reason | signature |\n|---|---|---|---:|---|---|---|"
    );
    for (c, ok) in reviewed {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.id,
            c.completed_at,
            c.scope,
            c.record_count,
            c.performed_by,
            c.reason,
            if *ok { "valid" } else { "INVALID" }
        );
    }
    let active: Vec<&Value> = holds
        .iter()
        .filter(|h| h["active"].as_bool() == Some(true))
        .collect();
    let _ = writeln!(out, "\n## Legal holds in force\n");
    if active.is_empty() {
        let _ = writeln!(out, "None.");
    }
    for h in active {
        let _ = writeln!(
            out,
            "- {} on {} (case {}, placed {} by {})",
            text(&h["id"]),
            text(&h["scope"]),
            text(&h["case_id"]),
            text(&h["placed_at"]),
            text(&h["placed_by"])
        );
    }
    let _ = writeln!(
        out,
        "\n## Sign-off\n\nReviewed by: ______________________  Role: ______________  Date: __________\n"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarters_parse_and_bound_their_months() {
        let q = Quarter::parse("2026q4").unwrap();
        assert_eq!(q.to_string(), "2026Q4");
        assert!(q.contains("2026-10-01T00:00:00Z".parse().unwrap()));
        assert!(q.contains("2026-12-31T23:59:59.999Z".parse().unwrap()));
        assert!(!q.contains("2027-01-01T00:00:00Z".parse().unwrap()));
        assert!(!q.contains("2026-09-30T23:59:59Z".parse().unwrap()));
        let q1 = Quarter::parse("2027Q1").unwrap();
        assert!(q1.contains("2027-03-31T12:00:00Z".parse().unwrap()));
        assert!(!q1.contains("2027-04-01T00:00:00Z".parse().unwrap()));
        for bad in ["2026", "2026Q5", "2026Q0", "Q4", "20x6Q1", "", "2026Q"] {
            assert_eq!(Quarter::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_review_totals_per_type_and_flags_bad_signatures() {
        let cert = |id: &str, t: &str, n: u64| Certificate {
            id: id.into(),
            tenant: "acme".into(),
            scope: format!("bucket/{t}/d2026-11-01"),
            data_type: t.into(),
            record_count: n,
            record_ids_sha256: String::new(),
            key_ids: vec![],
            sanitization: "purge".into(),
            method: "m".into(),
            tool: "custodian".into(),
            tool_version: "0".into(),
            performed_by: "retention sweeper".into(),
            reason: "retention expired".into(),
            completed_at: "2026-11-02T00:00:00Z".parse().unwrap(),
            verification: "v".into(),
        };
        let q = Quarter::parse("2026Q4").unwrap();
        let rows = [
            (cert("del_1", "app_log", 3), true),
            (cert("del_2", "app_log", 4), true),
            (cert("del_3", "ticket", 1), false),
        ];
        let report = review_report("acme", &q, &rows, &[], "key+1234+AAAA");
        assert!(report.contains("3 deletion certificate(s), 8 record(s) destroyed"));
        assert!(report.contains("| app_log | 2 | 7 |"));
        assert!(report.contains("| ticket | 1 | 1 |"));
        assert!(report.contains("**1 DO NOT VERIFY**"));
        assert!(report.contains("| del_3 |") && report.contains("INVALID"));
        assert!(report.contains("Sign-off"));
    }
}
