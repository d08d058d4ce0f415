//! The human-readable policy page, rendered from the same [`Policy`] the server enforces so the
//! published policy and the enforced one cannot drift.
//!
//! The page is first built as a small document model and then written as Markdown or HTML. Every
//! piece of text from the policy file goes through one escaping function per format: raw HTML in
//! a policy field is shown as text, never passed through.

use std::fmt::Write;

use super::{Policy, RootKeyConfig};
use crate::ids::Class;
use crate::retention::RetentionRule;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenderFormat {
    Markdown,
    Html,
}

enum Block {
    Heading(u8, String),
    Paragraph(String),
    List(Vec<String>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
}

pub fn render(policy: &Policy, format: RenderFormat) -> String {
    let blocks = document(policy);
    match format {
        RenderFormat::Markdown => markdown(&blocks),
        RenderFormat::Html => html(
            policy.meta.name.as_deref().unwrap_or("Data handling"),
            &blocks,
        ),
    }
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn document(p: &Policy) -> Vec<Block> {
    let mut doc = vec![Block::Heading(
        1,
        p.meta
            .name
            .clone()
            .unwrap_or_else(|| "Data handling".into()),
    )];
    if let Some(d) = &p.meta.description {
        doc.push(Block::Paragraph(d.clone()));
    }
    doc.push(Block::Paragraph(format!(
        "This page is generated from the policy file that custodian enforces in region {}. \
         Data is classified, encrypted under per-tenant keys, kept exactly as long as the schedule \
         below says and then destroyed unless a legal hold applies.",
        p.deployment.region
    )));

    doc.push(Block::Heading(2, "Classification".into()));
    doc.push(Block::Table {
        header: ["Class", "Description", "Examples", "Storage", "Access"]
            .map(String::from)
            .to_vec(),
        rows: Class::ALL
            .iter()
            .map(|&class| {
                let info = p.class_info(class);
                let uses: Vec<&str> = p
                    .data_types
                    .iter()
                    .filter(|d| d.class == class)
                    .map(|d| d.name.as_str())
                    .collect();
                let examples = info
                    .and_then(|i| i.examples.clone())
                    .unwrap_or_else(|| uses.join(", "));
                vec![
                    capitalise(class.as_str()),
                    info.map(|i| opt(&i.description)).unwrap_or_default(),
                    examples,
                    info.map(|i| opt(&i.storage)).unwrap_or_default(),
                    info.map(|i| opt(&i.access)).unwrap_or_default(),
                ]
            })
            .collect(),
    });

    doc.push(Block::Heading(2, "Data types and retention".into()));
    doc.push(Block::Table {
        header: [
            "Data type",
            "Class",
            "Retention",
            "Deletion",
            "De-identification",
            "Notes",
        ]
        .map(String::from)
        .to_vec(),
        rows: p
            .data_types
            .iter()
            .map(|d| {
                let retention = match &d.retention {
                    RetentionRule::Tier { min, max } => match (min, max) {
                        (None, None) => "per tenant tier".to_owned(),
                        (Some(lo), None) => format!("per tenant tier, at least {lo}"),
                        (None, Some(hi)) => format!("per tenant tier, at most {hi}"),
                        (Some(lo), Some(hi)) => format!("per tenant tier, {lo} to {hi}"),
                    },
                    RetentionRule::Fixed(d) => d.to_string(),
                    RetentionRule::AfterEvent { event, keep } => {
                        format!("{keep} after {event}")
                    }
                    RetentionRule::UntilDeleted => "until deleted".into(),
                };
                let fields: Vec<String> = d
                    .fields
                    .iter()
                    .map(|f| match f.entity_scope() {
                        None => format!("{}: {}", f.field, f.transform),
                        Some(scope) => format!(
                            "{} found in {}: {}",
                            scope.entity,
                            scope.field.unwrap_or("any free text"),
                            f.transform
                        ),
                    })
                    .collect();
                vec![
                    match &d.description {
                        Some(desc) => format!("{desc} ({})", d.name),
                        None => d.name.to_string(),
                    },
                    capitalise(d.class.as_str()),
                    retention,
                    match &d.cancel_window {
                        Some(w) => format!("{} after a {w} cancel window", d.delete.as_str()),
                        None => d.delete.as_str().to_owned(),
                    },
                    fields.join("; "),
                    opt(&d.notes),
                ]
            })
            .collect(),
    });

    doc.push(Block::Heading(2, "Retention tiers".into()));
    doc.push(Block::Table {
        header: ["Tier", "Retention", "Use"].map(String::from).to_vec(),
        rows: p
            .tiers
            .iter()
            .map(|t| {
                vec![
                    t.name.to_string(),
                    if t.at_least {
                        format!("at least {}", t.retention)
                    } else {
                        t.retention.to_string()
                    },
                    opt(&t.description),
                ]
            })
            .collect(),
    });

    if !p.tenants.is_empty() {
        doc.push(Block::Heading(2, "Effective retention by tenant".into()));
        let mut header = vec!["Data type".to_owned()];
        header.extend(p.tenants.iter().map(|t| format!("{} ({})", t.id, t.tier)));
        let rows = p
            .data_types
            .iter()
            .map(|d| {
                let mut row = vec![d.name.to_string()];
                row.extend(
                    p.tenants
                        .iter()
                        .map(|t| p.effective_retention(t, d).to_string()),
                );
                row
            })
            .collect();
        doc.push(Block::Table { header, rows });
    }

    doc.push(Block::Heading(2, "Access".into()));
    let mut access = vec![
        "Deny by default: every request is authenticated and scoped to the caller's tenant.".into(),
        format!(
            "Just-in-time access for support and operators lasts at most {} and needs a ticket, a reason and an approval from a different person.",
            p.access.jit_max
        ),
        format!(
            "Restricted data needs {} distinct approver(s) (two-person rule).",
            p.access.restricted_approvers
        ),
        "Every access, allowed or denied, is written to the tenant's tamper-evident audit log."
            .into(),
        match &p.deployment.audit_retention {
            Some(r) => format!(
                "Audit entries are kept for {r} after the month they were written in; then their contents are destroyed and only their hashes remain, so the log can still be verified."
            ),
            None => "Audit entries are kept indefinitely.".into(),
        },
    ];
    if !p.access.mfa_required.is_empty() {
        let roles: Vec<&str> = p.access.mfa_required.iter().map(|r| r.as_str()).collect();
        access.insert(
            1,
            format!(
                "Multi-factor authentication is required for: {}.",
                roles.join(", ")
            ),
        );
    }
    if !p.access.reason_required.is_empty() {
        let roles: Vec<&str> = p
            .access
            .reason_required
            .iter()
            .map(|r| r.as_str())
            .collect();
        access.push(format!(
            "A purpose must be given, and is recorded, for every read of personal data by: {}.",
            roles.join(", ")
        ));
    }
    doc.push(Block::List(access));

    doc.push(Block::Heading(2, "Keys".into()));
    let root = match &p.keys.root {
        RootKeyConfig::Dev => "a development key file (not for production)".to_owned(),
        RootKeyConfig::Shamir { shares, threshold } => format!(
            "a root key split into {shares} shares, any {threshold} of which unseal the service"
        ),
        RootKeyConfig::Pkcs11 { .. } => {
            "a non-extractable key inside a hardware security module".into()
        }
    };
    doc.push(Block::List(vec![
        format!("Tenant keys are protected by {root}."),
        format!("Tenant keys are rotated every {}.", p.keys.rotate_every),
        "Payloads are encrypted with AES-256-GCM under keys derived per record; destroying a key makes every copy unreadable, backups included.".into(),
    ]));

    if !p.telemetry.allow.is_empty() {
        doc.push(Block::Heading(2, "Telemetry that leaves the region".into()));
        doc.push(Block::Paragraph(
            "Only these metrics, with only these labels, flow centrally:".into(),
        ));
        doc.push(Block::List(
            p.telemetry.allow.iter().map(|m| m.to_string()).collect(),
        ));
    }
    doc
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Escapes text for Markdown: HTML-significant characters become entities (so a Markdown
/// renderer shows them as text) and Markdown syntax characters are backslash-escaped.
fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

fn markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "{} {}\n", "#".repeat(*level as usize), md_escape(text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "{}\n", md_escape(text));
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(out, "- {}", md_escape(item));
                }
                out.push('\n');
            }
            Block::Table { header, rows } => {
                let row = |cells: &[String]| {
                    let cells: Vec<String> = cells.iter().map(|c| md_escape(c)).collect();
                    format!("| {} |\n", cells.join(" | "))
                };
                out.push_str(&row(header));
                let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
                for r in rows {
                    out.push_str(&row(r));
                }
                out.push('\n');
            }
        }
    }
    out
}

fn h(s: &str) -> String {
    html_escape::encode_safe(s).into_owned()
}

fn html(title: &str, blocks: &[Block]) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <style>body{{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse;margin:1rem 0}}th,td{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}}</style>\n\
         </head>\n<body>\n",
        h(title)
    );
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "<h{level}>{}</h{level}>", h(text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "<p>{}</p>", h(text));
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(out, "<li>{}</li>", h(item));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { header, rows } => {
                out.push_str("<table>\n<thead><tr>");
                for c in header {
                    let _ = write!(out, "<th>{}</th>", h(c));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r {
                        let _ = write!(out, "<td>{}</td>", h(c));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table>\n");
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escapes_html_and_table_syntax() {
        assert_eq!(
            md_escape("<div class=\"x\">a|b</div>"),
            "&lt;div class=&quot;x&quot;&gt;a\\|b&lt;/div&gt;"
        );
        assert_eq!(md_escape("line\nbreak"), "line break");
        assert_eq!(md_escape("[link](http://x)"), "\\[link\\](http://x)");
    }

    #[test]
    fn html_escapes_every_special_character() {
        assert_eq!(
            h("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2F;script&gt; &amp; &quot;q&quot;"
        );
    }
}
