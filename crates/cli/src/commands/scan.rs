//! `custodian scan`: streaming PII and secret detection over a file or stdin, one line at a time
//! (memory stays bounded by the longest line). Findings never carry the matched value. With
//! `--transform POLICY`, record lines are de-identified as ingest would store them.

use std::io::Write;
use std::path::Path;

use anyhow::anyhow;
use custodian_detect::{ScanConfig, Scanner, transform};

use crate::exit::{CmdResult, Failure, invalid};

pub fn run(file: &Path, redact: bool) -> CmdResult {
    let scanner =
        Scanner::new(ScanConfig::default()).map_err(|e| Failure::Internal(anyhow!("{e}")))?;
    let (mut reader, progress) = super::open_input(file)?;
    progress.set_message("scanned");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let write_err = |e: std::io::Error| Failure::Internal(anyhow!("cannot write output: {e}"));
    let mut raw = Vec::new();
    let (mut line_no, mut real, mut test) = (0u64, 0u64, 0u64);
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .map_err(|e| invalid(format!("cannot read {}: {e}", file.display())))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let (text, newline) = match raw.strip_suffix(b"\n") {
            Some(body) => (String::from_utf8_lossy(body), "\n"),
            None => (String::from_utf8_lossy(&raw), ""),
        };
        let findings = scanner.scan(&text);
        for f in &findings {
            if f.test {
                test += 1;
            } else {
                real += 1;
            }
        }
        if redact {
            let redacted = transform::apply(&text, &findings, |f, _| {
                Ok(transform::redact(f.entity, None))
            })
            .map_err(|e| Failure::Internal(anyhow!("{e}")))?;
            write!(out, "{redacted}{newline}").map_err(write_err)?;
        } else {
            for f in &findings {
                let finding = serde_json::json!({
                    "line": line_no,
                    "entity": f.entity.as_str(),
                    "start": f.start,
                    "end": f.end,
                    "score": (f64::from(f.score) * 100.0).round() / 100.0,
                    "test": f.test,
                });
                writeln!(out, "{finding}").map_err(write_err)?;
            }
        }
    }
    out.flush().map_err(write_err)?;
    progress.finish_and_clear();
    eprintln!("{line_no} lines scanned: {real} finding(s), {test} documented test value(s)");
    if real > 0 {
        return Err(Failure::Invalid(anyhow!(
            "personal data or secrets found ({real}); see the findings above"
        )));
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct RecordLine {
    #[serde(rename = "type")]
    data_type: String,
    #[serde(default)]
    subjects: Vec<String>,
    payload: Box<serde_json::value::RawValue>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// `scan --transform`: every record line de-identified by the policy, as ingest would store it.
pub fn transform(file: &Path, policy: &Path, tenant: &str, key_file: Option<&Path>) -> CmdResult {
    use custodian_server::deidentify::{TransformKeys, deidentify};
    let policy = super::load_policy(Some(policy))?;
    let tenant = custodian_core::ids::TenantId::new(tenant)
        .map_err(|e| invalid(format!("--tenant: {e}")))?;
    let secret = match key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(format!("cannot read --key-file {}: {e}", path.display())))?;
            let bytes = custodian_crypto::decode_hex32(text.trim()).ok_or_else(|| {
                invalid(format!(
                    "--key-file {} must hold 64 hex digits (a 32-byte secret)",
                    path.display()
                ))
            })?;
            zeroize::Zeroizing::new(bytes)
        }
        None => {
            eprintln!(
                "no --key-file: keyed transforms use a secret made for this run only (pseudonyms join within this output, tokens can never be opened)"
            );
            custodian_crypto::random_key().map_err(|e| Failure::Internal(anyhow!("{e}")))?
        }
    };
    let keys = TransformKeys::from_index_key(&custodian_crypto::IndexKey::new(&secret))
        .map_err(|e| Failure::Internal(anyhow!("{e}")))?;
    let (mut reader, progress) = super::open_input(file)?;
    progress.set_message("de-identified");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let write_err = |e: std::io::Error| Failure::Internal(anyhow!("cannot write output: {e}"));
    let mut raw = Vec::new();
    let (mut line_no, mut refused) = (0u64, 0u64);
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .map_err(|e| invalid(format!("cannot read {}: {e}", file.display())))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let result = serde_json::from_slice::<RecordLine>(&raw)
            .map_err(|e| format!("not a record line: {e}"))
            .and_then(|line| {
                let data_type = policy.data_type(&line.data_type).ok_or_else(|| {
                    format!("unknown data type {:?} in this policy", line.data_type)
                })?;
                let action = policy.class_info(data_type.class).and_then(|c| c.pii);
                let done = deidentify(
                    &keys,
                    &tenant,
                    data_type,
                    action,
                    &line.subjects,
                    &line.payload,
                )?;
                let mut record = line.rest;
                record.insert("type".into(), line.data_type.clone().into());
                record.insert("subjects".into(), line.subjects.clone().into());
                let payload = done.payload.unwrap_or(line.payload);
                record.insert(
                    "payload".into(),
                    serde_json::from_str(payload.get()).map_err(|e| e.to_string())?,
                );
                if !done.findings.is_empty() {
                    record.insert(
                        "findings".into(),
                        serde_json::to_value(&done.findings).map_err(|e| e.to_string())?,
                    );
                }
                serde_json::to_string(&record).map_err(|e| e.to_string())
            });
        match result {
            Ok(text) => writeln!(out, "{text}").map_err(write_err)?,
            Err(reason) => {
                refused += 1;
                eprintln!("line {line_no}: {reason}");
            }
        }
    }
    out.flush().map_err(write_err)?;
    progress.finish_and_clear();
    eprintln!("{line_no} lines read, {refused} refused");
    if refused > 0 {
        return Err(Failure::Invalid(anyhow!(
            "{refused} line(s) refused; they were left out of the output"
        )));
    }
    Ok(())
}
