//! `custodian policy check|render`.

use custodian_core::policy::{RenderFormat, render};

use crate::args::{PolicyCommand, RenderFormatArg};
use crate::exit::CmdResult;

pub fn run(cmd: PolicyCommand) -> CmdResult {
    match cmd {
        PolicyCommand::Check { file } => {
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
