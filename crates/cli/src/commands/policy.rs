//! `custodian policy check|render`.

use custodian_core::policy::{RenderFormat, render};

use crate::args::{PolicyCommand, RenderFormatArg};
use crate::exit::CmdResult;

pub fn run(cmd: PolicyCommand) -> CmdResult {
    match cmd {
        PolicyCommand::Check { file, previous } => {
            let policy = super::load_policy(Some(&file))?;
            println!(
                "{}: valid ({} tiers, {} data types, {} tenants)\n",
                file.display(),
                policy.tiers.len(),
                policy.data_types.len(),
                policy.tenants.len()
            );
            let rows = policy.retention_table();
            let width = |f: &dyn Fn(&custodian_core::policy::RetentionRow<'_>) -> usize, min| {
                rows.iter().map(f).max().unwrap_or(0).max(min)
            };
            let tw = width(&|r| r.tenant.id.as_str().len(), "TENANT".len());
            let dw = width(&|r| r.data_type.name.as_str().len(), "DATA TYPE".len());
            println!(
                "{:tw$}  {:dw$}  {:12}  EFFECTIVE RETENTION",
                "TENANT", "DATA TYPE", "CLASS"
            );
            for r in &rows {
                println!(
                    "{:tw$}  {:dw$}  {:12}  {}",
                    r.tenant.id.as_str(),
                    r.data_type.name.as_str(),
                    r.data_type.class.as_str(),
                    r.retention
                );
            }
            if let Some(previous) = previous {
                let before = super::load_policy(Some(&previous))?;
                print_changes(&policy, &before);
            }
            Ok(())
        }
        PolicyCommand::Render { file, format } => {
            let policy = super::load_policy(Some(&file))?;
            let format = match format {
                RenderFormatArg::Md => RenderFormat::Markdown,
                RenderFormatArg::Html => RenderFormat::Html,
            };
            print!("{}", render(&policy, format));
            Ok(())
        }
    }
}

/// What the new policy changes for records already stored; shortenings are warnings.
fn print_changes(
    policy: &custodian_core::policy::Policy,
    previous: &custodian_core::policy::Policy,
) {
    use custodian_core::retention::Change;
    let changes = policy.retention_changes(previous);
    if changes.is_empty() {
        println!("\nno retention changes against the previous policy");
        return;
    }
    let grace = match &policy.deployment.shortening_grace {
        Some(g) => format!("after the {g} grace period (deployment.retention_shortening_grace)"),
        None => "AT ONCE: deployment.retention_shortening_grace is 0d".to_owned(),
    };
    println!("\nretention changes against the previous policy:");
    for c in &changes {
        let what = format!(
            "{} {}: {} -> {}",
            c.row.tenant.id, c.row.data_type.name, c.before, c.row.retention
        );
        match c.change {
            Change::Shortened => {
                eprintln!("warning: {what}: SHORTENED; stored records become due earlier, {grace}")
            }
            Change::Reshaped => eprintln!(
                "warning: {what}: some stored records may become due earlier (shorter for some start dates), {grace}"
            ),
            Change::Lengthened => println!("  {what}: lengthened, applies at once"),
        }
    }
}
