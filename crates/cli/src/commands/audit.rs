//! `custodian audit key`: the verifier key of the deployment's audit checkpoints.

use std::sync::Arc;

use custodian_server::audit::Auditor;
use custodian_server::clock::SystemClock;

use crate::args::AuditCommand;
use crate::exit::CmdResult;

pub async fn run(cmd: AuditCommand) -> CmdResult {
    let AuditCommand::Key { store: args } = cmd;
    let policy = super::load_policy(args.policy.as_deref())?;
    let root = custodian_server::root_key_provider(&policy, &args.data_dir)
        .map_err(super::server_failure)?;
    let store = super::open_store(&args).await?;
    let auditor = Auditor::load(
        store,
        Arc::new(SystemClock),
        root.as_ref(),
        policy.deployment.region.clone(),
    )
    .await
    .map_err(super::server_failure)?;
    println!("{}", auditor.verifier_key());
    Ok(())
}
