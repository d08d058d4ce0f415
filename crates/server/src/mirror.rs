//! The off-box copy of the audit logs: every entry and a signed checkpoint of every log are
//! published to a NATS JetStream stream that the deployment's operators do not control, so a
//! witness (`custodian audit watch`) can check that each log only ever grows.
//!
//! The mirror follows the logs rather than sitting in the write path: each round it signs a
//! checkpoint of every log that grew, publishes the entries up to that checkpoint's size (each
//! with a message id, so the stream drops a repeat), then the checkpoint. After a restart it
//! resumes after the last entry the stream holds. `custodian_audit_mirror_lag_entries` says how
//! far each log is behind.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, context::Publish};
use custodian_core::policy::AuditMirror;
use custodian_store::AuditLog;

use crate::audit::EntryBody;
use crate::{AppState, ServerError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// How often the mirror looks for new entries.
const ROUND: Duration = Duration::from_secs(1);
/// Entries read from the store and published per page.
const PAGE: u64 = 500;
/// The header naming an entry's index in its log.
pub const INDEX_HEADER: &str = "Custodian-Audit-Index";
/// On an entry whose body audit retention destroyed before it was mirrored: its leaf hash
/// (base64); the payload is then empty.
pub const LEAF_HEADER: &str = "Custodian-Audit-Leaf";

/// The subject of a log's entries. Subjects start with the stream's name, so deployments
/// (each with its own stream) can share one NATS server.
pub fn entry_subject(stream: &str, log: &AuditLog) -> String {
    format!("{stream}.{}.entry", log.key())
}

/// The subject of a log's signed checkpoints.
pub fn checkpoint_subject(stream: &str, log: &AuditLog) -> String {
    format!("{stream}.{}.checkpoint", log.key())
}

fn mirror_error(e: impl std::fmt::Display) -> ServerError {
    ServerError::Internal(format!("audit mirror: {e}"))
}

/// Runs the mirror until the server stops. An unreachable NATS server is retried every round;
/// meanwhile the lag metric grows and, when the mirror is `required`, writes are refused
/// ([`refuses_writes`]).
pub fn spawn(state: Arc<AppState>, config: AuditMirror) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut mirror: Option<Mirror> = None;
        let mut ticks = tokio::time::interval(ROUND);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if state.keys.is_sealed() {
                continue;
            }
            if mirror.is_none() {
                match Mirror::connect(&config).await {
                    Ok(m) => mirror = Some(m),
                    Err(e) => {
                        state.mirror_reachable.store(false, Ordering::Release);
                        tracing::warn!(url = %config.url, error = %e, "audit mirror unreachable; retrying");
                        continue;
                    }
                }
            }
            if let Some(m) = mirror.as_mut() {
                let reached = m.round(&state).await;
                state
                    .mirror_reachable
                    .store(reached.is_ok(), Ordering::Release);
                if let Err(e) = reached {
                    tracing::warn!(error = %e, "audit mirror round failed; retrying");
                    metrics::counter!("custodian_audit_mirror_failures_total").increment(1);
                    mirror = None;
                }
            }
        }
    })
}

struct Mirror {
    js: jetstream::Context,
    name: String,
    stream: jetstream::stream::Stream,
    /// Per log: how many entries the stream holds.
    published: HashMap<AuditLog, u64>,
}

impl Mirror {
    async fn connect(config: &AuditMirror) -> Result<Mirror, ServerError> {
        let client = async_nats::connect(&config.url)
            .await
            .map_err(mirror_error)?;
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name: config.stream.clone(),
                subjects: vec![format!("{}.>", config.stream)],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(mirror_error)?;
        Ok(Mirror {
            js,
            name: config.stream.clone(),
            stream,
            published: HashMap::new(),
        })
    }

    /// How many entries of `log` the stream holds: one past the index of its last entry.
    async fn resume_point(&self, log: &AuditLog) -> Result<u64, ServerError> {
        match self
            .stream
            .get_last_raw_message_by_subject(&entry_subject(&self.name, log))
            .await
        {
            Ok(message) => message
                .headers
                .get(INDEX_HEADER)
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .map(|i| i + 1)
                .ok_or_else(|| mirror_error("the stream's last entry has no index")),
            Err(e)
                if e.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                Ok(0)
            }
            Err(e) => Err(mirror_error(e)),
        }
    }

    async fn round(&mut self, state: &AppState) -> Result<(), ServerError> {
        for (log, size) in state.store.audit_heads().await? {
            let from = match self.published.get(&log) {
                Some(n) => *n,
                None => self.resume_point(&log).await?,
            };
            let lag = size.saturating_sub(from);
            metrics::gauge!("custodian_audit_mirror_lag_entries", "log" => log.key().to_owned())
                .set(lag as f64);
            if lag == 0 {
                self.published.insert(log, from);
                continue;
            }
            // The checkpoint first: its size bounds what is published before it.
            let note = state.audit.checkpoint(&log).await?;
            let to: u64 = note
                .lines()
                .nth(1)
                .and_then(|l| l.parse().ok())
                .ok_or_else(|| mirror_error("checkpoint without a size"))?;
            let mut start = from;
            while start < to {
                let end = (start + PAGE).min(to);
                let entries = state.audit.entries(&log, start, end).await?;
                let mut acks = Vec::with_capacity(entries.len());
                for entry in entries {
                    let index = entry.index;
                    let publish = Publish::build()
                        .message_id(format!("{}/{index}", log.key()))
                        .header(INDEX_HEADER, index.to_string().as_str());
                    let publish = match entry.body {
                        EntryBody::Bytes(bytes) => publish.payload(bytes.into()),
                        EntryBody::Destroyed { .. } => publish
                            .payload(Default::default())
                            .header(LEAF_HEADER, STANDARD.encode(entry.leaf).as_str()),
                    };
                    acks.push(
                        self.js
                            .send_publish(entry_subject(&self.name, &log), publish)
                            .await
                            .map_err(mirror_error)?,
                    );
                }
                for ack in acks {
                    ack.await.map_err(mirror_error)?;
                }
                start = end;
                self.published.insert(log.clone(), start);
            }
            let publish = Publish::build()
                .payload(note.into_bytes().into())
                .message_id(format!("{}/checkpoint/{to}", log.key()));
            self.js
                .send_publish(checkpoint_subject(&self.name, &log), publish)
                .await
                .map_err(mirror_error)?
                .await
                .map_err(mirror_error)?;
            metrics::gauge!("custodian_audit_mirror_lag_entries", "log" => log.key().to_owned())
                .set(size.saturating_sub(to) as f64);
        }
        Ok(())
    }
}

/// Whether writes must be refused: the policy requires the mirror and its last round did not
/// reach it (or none has run yet).
pub fn refuses_writes(state: &AppState) -> bool {
    state
        .policy
        .deployment
        .audit_mirror
        .as_ref()
        .is_some_and(|m| m.required)
        && !state.mirror_reachable.load(Ordering::Acquire)
}
