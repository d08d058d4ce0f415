//! One module per command. Shared here: logging set-up, policy loading, error mapping.

mod audit;
mod client;
mod grant;
mod keys;
mod operator;
mod policy;
mod records;
mod retention;
mod scan;
mod serve;
mod subject;
mod tenant;
mod token;

use std::path::Path;

use custodian_core::policy::Policy;
use custodian_server::ServerError;
use custodian_store::StoreError;

use crate::args::{Command, LogFormat};
use crate::exit::{CmdResult, Failure, invalid};

/// The policy used when none is given: development only (root key in a file).
const DEFAULT_POLICY: &str = include_str!("../../../../examples/policies/default.toml");

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUSTODIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub fn run(command: Command) -> CmdResult {
    match command {
        Command::Policy(cmd) => policy::run(cmd),
        Command::Scan {
            file,
            redact,
            transform: None,
            ..
        } => scan::run(&file, redact),
        Command::Scan {
            file,
            transform: Some(policy),
            tenant,
            key_file,
            ..
        } => scan::transform(&file, &policy, &tenant, key_file.as_deref()),
        other => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::Internal(e.into()))?;
            runtime.block_on(async move {
                match other {
                    Command::Serve(args) => serve::run(args).await,
                    Command::Token(cmd) => token::run(cmd).await,
                    Command::Records(cmd) => records::run(cmd).await,
                    Command::Audit(cmd) => audit::run(cmd).await,
                    Command::Keys(cmd) => keys::run(cmd).await,
                    Command::Operator(cmd) => operator::run(cmd).await,
                    Command::Hold(cmd) => retention::hold(cmd).await,
                    Command::Retention(cmd) => retention::retention(cmd).await,
                    Command::Deletions(cmd) => retention::deletions(cmd).await,
                    Command::Tenant(cmd) => tenant::run(cmd).await,
                    Command::Subject(cmd) => subject::run(cmd).await,
                    Command::Grant(cmd) => grant::run(cmd).await,
                    Command::Policy(_) | Command::Scan { .. } => unreachable!("handled above"),
                }
            })
        }
    }
}

/// Reads and validates a policy file, or the bundled development policy.
pub fn load_policy(path: Option<&Path>) -> Result<Policy, Failure> {
    let (name, text) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| invalid(format!("cannot read policy file {}: {e}", p.display())))?;
            (p.display().to_string(), text)
        }
        None => (
            "default policy (bundled)".to_owned(),
            DEFAULT_POLICY.to_owned(),
        ),
    };
    let policy = Policy::parse(&name, &text).map_err(|diagnostics| {
        invalid(format!(
            "the policy is invalid ({} error(s)):\n{diagnostics}",
            diagnostics.0.len()
        ))
    })?;
    for w in &policy.warnings {
        eprintln!("{w}");
    }
    Ok(policy)
}

/// Opens FILE, or stdin for `-`, for buffered reading, with a progress bar on stderr that
/// follows the bytes read (hidden for stdin, whose length is unknown, and when stderr is not a
/// terminal).
pub fn open_input(
    file: &Path,
) -> Result<(Box<dyn std::io::BufRead>, indicatif::ProgressBar), Failure> {
    use indicatif::{ProgressBar, ProgressStyle};
    if file.as_os_str() == "-" {
        return Ok((
            Box::new(std::io::BufReader::new(std::io::stdin())),
            ProgressBar::hidden(),
        ));
    }
    let f = std::fs::File::open(file)
        .map_err(|e| invalid(format!("cannot open {}: {e}", file.display())))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = ProgressBar::new(len).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let reader = std::io::BufReader::new(progress.wrap_read(f));
    Ok((Box::new(reader), progress))
}

fn offline_config(args: &crate::args::StoreArgs) -> custodian_server::ServerConfig {
    custodian_server::ServerConfig {
        listen: "127.0.0.1:0".parse().expect("valid literal"),
        data_dir: args.data_dir.clone(),
        database_url: args.database_url.clone(),
        body_limit: 0,
    }
}

/// Opens store, key store and root key as the server would, without serving.
pub async fn open_state(
    args: &crate::args::StoreArgs,
) -> Result<std::sync::Arc<custodian_server::AppState>, Failure> {
    let policy = load_policy(args.policy.as_deref())?;
    let config = offline_config(args);
    custodian_server::build_state(
        policy,
        &config,
        &config.store_config(),
        std::sync::Arc::new(custodian_server::clock::SystemClock),
    )
    .await
    .map_err(server_failure)
}

/// Opens the data store alone, for commands that only read it: no key store, no root key (so
/// no HSM PIN, and a sealed deployment answers too).
pub async fn open_store(
    args: &crate::args::StoreArgs,
) -> Result<Box<dyn custodian_store::Store>, Failure> {
    custodian_store::open(&offline_config(args).store_config())
        .await
        .map_err(|e| server_failure(e.into()))
}

/// Maps a server start-up error to its exit code.
pub fn server_failure(e: ServerError) -> Failure {
    match e {
        ServerError::Store(StoreError::Unavailable { .. }) => Failure::Unreachable(e.into()),
        ServerError::Config(_) | ServerError::Bind { .. } => Failure::Invalid(e.into()),
        other => Failure::Internal(other.into()),
    }
}
