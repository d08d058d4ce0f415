//! `custodian scan`: streaming PII and secret detection over a file or stdin, one line at a time
//! (memory stays bounded by the longest line). Findings never carry the matched value.

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
