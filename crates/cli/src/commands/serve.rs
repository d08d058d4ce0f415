//! `custodian serve`: load the policy, open the store and keys, serve until Ctrl-C or SIGTERM.

use std::sync::Arc;

use custodian_server::clock::SystemClock;
use custodian_server::{ServerConfig, build_state, serve};

use crate::args::ServeArgs;
use crate::exit::CmdResult;

pub async fn run(args: ServeArgs) -> CmdResult {
    let policy = super::load_policy(args.store.policy.as_deref())?;
    let config = ServerConfig {
        listen: args.listen,
        data_dir: args.store.data_dir.clone(),
        database_url: args.store.database_url.clone(),
        body_limit: args.body_limit,
    };
    let state = build_state(
        policy,
        &config,
        &config.store_config(),
        Arc::new(SystemClock),
    )
    .await
    .map_err(super::server_failure)?;
    let sweep_interval = (!args.sweep_interval.is_zero()).then_some(args.sweep_interval);
    serve(
        state,
        config.listen,
        sweep_interval,
        shutdown_signal(),
        |addr| {
            tracing::info!(%addr, "custodian listening on http://{addr}");
        },
    )
    .await
    .map_err(super::server_failure)?;
    tracing::info!("custodian stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
