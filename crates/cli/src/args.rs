//! Command-line arguments. The help text is the first documentation a newcomer reads, so every
//! command says what it does and every option what it expects.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "custodian",
    version,
    about = "Multi-tenant data custody: classify, encrypt, retain by policy, audit.",
    long_about = "custodian keeps other people's data: every record is classified by a policy file, \
encrypted under its tenant's keys, kept exactly as long as the policy says, and readable only by \
authorised callers.\n\nStart a development server with `custodian serve`, create a token with \
`custodian token create --tenant acme --role writer`, then send records with `custodian records put`.",
    after_help = "Exit codes: 0 success; 1 invalid input (policy errors, a refused request); \
2 bad command line; 3 a server or database could not be reached; 4 the server failed unexpectedly."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CUSTODIAN_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the custody server (SQLite in ./custodian-data unless --database-url is given).
    Serve(ServeArgs),
    /// Check or render a policy file.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage API tokens (works directly on the data store, no server needed).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Send records to and read records from a running server.
    #[command(subcommand)]
    Records(RecordsCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Tenant keys: status, rotation, key-store backup and restore.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The root of trust: initialise, unseal and seal a server whose root key is Shamir-split.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Legal holds: while one is active, nothing it covers is destroyed by any path.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// The retention schedule: what a sweep would destroy (dry run), or a sweep now.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Deletion certificates: list, fetch, verify offline, and the quarterly review report.
    #[command(subcommand)]
    Deletions(DeletionsCommand),
    /// Tenant lifecycle: termination.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Data-subject rights: export, erasure, rectification, and the request log.
    #[command(subcommand)]
    Subject(SubjectCommand),
    /// Just-in-time access to a tenant's records: request, approve, deny, revoke, break-glass.
    #[command(subcommand)]
    Grant(GrantCommand),
    /// Scan text, NDJSON or CSV for personal data and secrets, line by line.
    ///
    /// Prints one JSON line per finding (line, entity, byte offsets, score, test flag; never the
    /// value), or with --redact the input with every finding replaced by <ENTITY>. Exits 1 when
    /// anything other than a documented test value was found, so it can gate a CI pipeline or
    /// a pre-commit hook.
    Scan {
        /// File to scan, or - for stdin.
        #[arg(default_value = "-")]
        file: PathBuf,
        /// Write the input with findings redacted instead of the findings.
        #[arg(long)]
        redact: bool,
        /// De-identify record lines (`{"type", "subjects", "payload", ...}`, as `records put`
        /// takes them) with this policy's field rules and its classes' free-text actions, and
        /// write them out: for sharing data with the identifiers transformed.
        #[arg(long, value_name = "POLICY", conflicts_with = "redact")]
        transform: Option<PathBuf>,
        /// The tenant tokens and format-preserving ciphertexts are bound to (--transform).
        #[arg(long, requires = "transform", default_value = "offline")]
        tenant: String,
        /// A file holding the 32-byte secret (64 hex digits) keyed transforms expand their keys
        /// from, so pseudonyms and tokens stay the same across runs. Without it, a fresh secret
        /// is used and forgotten: pseudonyms join within the run only, tokens open never.
        #[arg(long, requires = "transform", env = "CUSTODIAN_TRANSFORM_KEY_FILE")]
        key_file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Print the public key that verifies this deployment's audit checkpoints
    /// (signed-note verifier-key format). Works directly on the data store.
    Key {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Download a tenant's audit log (admin or auditor token), or with --system the system
    /// log (operator token), with its signed checkpoint into a bundle file.
    Export {
        #[command(flatten)]
        server: ServerArgs,
        /// The tenant whose log to export.
        #[arg(
            long,
            env = "CUSTODIAN_TENANT",
            required_unless_present = "system",
            conflicts_with = "system"
        )]
        tenant: Option<String>,
        /// Export the system log instead of a tenant's.
        #[arg(long)]
        system: bool,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
    },
    /// Witness the off-box mirror: follow the JetStream stream the server copies its audit
    /// logs to, rebuild every log's tree from its entries and hold each signed checkpoint
    /// against it. Exits 1 at the first fork (a checkpoint whose root differs from the
    /// witnessed entries), naming both roots.
    Watch {
        /// The NATS server.
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        nats: String,
        /// The stream (the policy's deployment.audit_mirror.stream).
        #[arg(long, default_value = "CUSTODIAN_AUDIT")]
        stream: String,
        /// The deployment's verifier key (from `custodian audit key`).
        #[arg(long)]
        key: String,
        /// Stop once the stream is read to its end instead of following it.
        #[arg(long)]
        once: bool,
    },
    /// Verify a bundle offline: every entry against its stored leaf hash, the tree against the
    /// signed checkpoint, and (with --previous) that the log still extends a checkpoint you
    /// trusted before. Exits 1 naming the first entry or check that fails.
    Verify {
        /// The bundle from `custodian audit export`.
        bundle: PathBuf,
        /// The deployment's verifier key (from `custodian audit key`).
        #[arg(long)]
        key: String,
        /// A signed checkpoint trusted earlier (a file).
        #[arg(long)]
        previous: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Per tenant: current KEK version, when it was made, when rotation is next due, and how
    /// many keys it wraps. All tenants with an operator token; one with --tenant.
    Status {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, env = "CUSTODIAN_TENANT")]
        tenant: Option<String>,
    },
    /// Rotate a tenant's KEK now: a new version, every key rewrapped under it, the old one
    /// destroyed. Record ciphertext is not touched; reads keep working throughout.
    Rotate {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, env = "CUSTODIAN_TENANT")]
        tenant: String,
    },
    /// Write the whole key store, sealed under the root key, to a file (operator token).
    Backup {
        #[command(flatten)]
        server: ServerArgs,
        /// Where to write the backup.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a key-store backup (operator token). Keys shredded since the backup was made
    /// are destroyed again: a restore never brings erased data back.
    Restore {
        #[command(flatten)]
        server: ServerArgs,
        /// A file from `custodian keys backup`.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Create the root key and print its shares, once. Give each share to a different
    /// operator; they are never stored and cannot be shown again.
    Init {
        #[command(flatten)]
        server: ServerArgs,
        /// Number of shares (must match the policy's [keys] shares).
        #[arg(long)]
        shares: u8,
        /// Shares needed to unseal (must match the policy's [keys] threshold).
        #[arg(long)]
        threshold: u8,
    },
    /// Give one share towards unsealing the server. Without SHARE, it is read from stdin, so
    /// it stays out of shell history.
    Unseal {
        #[command(flatten)]
        server: ServerArgs,
        share: Option<String>,
    },
    /// Seal the server: every key is dropped from memory until operators unseal it again
    /// (operator token).
    Seal {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Whether the server is initialised and sealed, and the unseal progress.
    Status {
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// How to reach a running server for commands that act on no single tenant.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Server address.
    #[arg(long, env = "CUSTODIAN_ADDR", default_value = "http://127.0.0.1:8200")]
    pub server: String,
    /// API token (an operator token from `custodian token create --role operator`).
    #[arg(long, env = "CUSTODIAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Where the policy and the data live; shared by `serve` and `token`.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Policy file (TOML). Without it, the bundled development policy is used.
    #[arg(long, env = "CUSTODIAN_POLICY")]
    pub policy: Option<PathBuf>,

    /// Directory for the embedded SQLite database and the development root key.
    #[arg(long, env = "CUSTODIAN_DATA_DIR", default_value = "custodian-data")]
    pub data_dir: PathBuf,

    /// PostgreSQL URL (postgres://user@host/db) to use instead of the embedded SQLite.
    #[arg(long, env = "CUSTODIAN_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Address to listen on. Plain HTTP is only served on loopback addresses.
    #[arg(long, env = "CUSTODIAN_LISTEN", default_value = "127.0.0.1:8200")]
    pub listen: SocketAddr,

    /// How often the retention sweeper destroys what is due, e.g. 10m, 1h; 0 turns it off
    /// (sweeps then run only with `custodian retention sweep`).
    #[arg(long, env = "CUSTODIAN_SWEEP_INTERVAL", default_value = "10m", value_parser = parse_interval)]
    pub sweep_interval: std::time::Duration,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "CUSTODIAN_BODY_LIMIT", default_value_t = custodian_server::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a policy; print the effective retention of every tenant and data type.
    ///
    /// Exits 0 when the policy is valid, 1 with every error found when it is not.
    Check {
        /// The policy file.
        file: PathBuf,
        /// The policy in force now: every retention the new one changes is listed, and a
        /// shortening is flagged with the date from which it can destroy stored records.
        #[arg(long)]
        previous: Option<PathBuf>,
    },
    /// Write the human-readable policy page (classes, retention, tiers, access) to stdout.
    Render {
        /// The policy file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "md")]
        format: RenderFormatArg,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum RenderFormatArg {
    Md,
    Html,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token for a tenant and print it once. Only its hash is stored.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// The tenant the token acts for (must exist in the policy). Not given for operator
        /// tokens, which act on the platform.
        #[arg(long)]
        tenant: Option<String>,
        /// What the token may do: writer (ingest + read), reader (read), admin (also delete,
        /// read the audit log and manage the tenant's keys), auditor (the audit log only),
        /// operator (platform: key status and rotation of every tenant, seal, key backups;
        /// no access to records).
        #[arg(long, value_enum)]
        role: TokenRole,
        /// Lifetime, e.g. 24h, 90d, 1y. Without it the token lasts until revoked.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List API tokens: id, tenant, role, creation, expiry, last use and revocation. Never the
    /// secret, nor its hash.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this tenant's tokens.
        #[arg(long, conflicts_with = "platform")]
        tenant: Option<String>,
        /// Only the platform's tokens (operator tokens).
        #[arg(long)]
        platform: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token: every request with it is refused from now on. Audited in the
    /// tenant's log (the system log for operator tokens). Revoking a token again changes
    /// nothing.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The token id (the 16 hex digits after `cst_`, as `token list` shows it).
        id: String,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum TokenRole {
    Writer,
    Reader,
    Admin,
    Auditor,
    Operator,
}

/// How to reach a running server.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, env = "CUSTODIAN_ADDR", default_value = "http://127.0.0.1:8200")]
    pub server: String,
    /// API token (from `custodian token create`).
    #[arg(long, env = "CUSTODIAN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The tenant to act on.
    #[arg(long, env = "CUSTODIAN_TENANT")]
    pub tenant: String,
}

#[derive(Subcommand, Debug)]
pub enum RecordsCommand {
    /// Send an NDJSON file (or - for stdin) of records, in batches.
    ///
    /// Each line: {"type": "...", "subjects": ["..."], "event_time": "RFC 3339", "payload": {...}}.
    /// Every batch carries an Idempotency-Key, so a retried batch is never stored twice.
    Put {
        #[command(flatten)]
        client: ClientArgs,
        /// NDJSON file, or - to read stdin.
        file: PathBuf,
        /// Records per request.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch_size: u32,
    },
    /// Print one record, decrypted, as JSON.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// Record id (as printed by `records put`).
        id: String,
        /// Why the record is read; kept in the audit log (required for roles the policy's
        /// access.reason_required lists, unless acting under a grant).
        #[arg(long, env = "CUSTODIAN_REASON")]
        reason: Option<String>,
    },
}

/// What a grant reaches, why, and for how long.
#[derive(Args, Debug)]
pub struct GrantArgs {
    #[command(flatten)]
    pub target: TenantArgs,
    /// A data type the grant reaches (repeatable); none: every data type.
    #[arg(long = "type")]
    pub data_types: Vec<String>,
    /// A subject whose records the grant reaches (repeatable); none: every subject.
    #[arg(long = "subject")]
    pub subjects: Vec<String>,
    /// Also permit deleting and rectifying records (default: read-only).
    #[arg(long)]
    pub write: bool,
    /// Why the access is needed; kept with the grant and in the audit log.
    #[arg(long)]
    pub reason: String,
    /// The ticket the access answers.
    #[arg(long)]
    pub ticket: String,
    /// How long the grant lasts once active: 30m, 4h, 1d (at most the policy's jit_max).
    #[arg(long, default_value = "1h")]
    pub duration: String,
}

#[derive(Subcommand, Debug)]
pub enum GrantCommand {
    /// Ask for access to a tenant's records (support or operator token). The grant becomes
    /// active once approved by another principal with the approver role (two for Restricted
    /// data); prints the grant.
    Request(GrantArgs),
    /// Open access to your own tenant's records at once, in an emergency (security-officer
    /// token). Flagged, alerted, audited, and pending review until someone else reviews it.
    BreakGlass(GrantArgs),
    /// Approve a pending grant (approver token; never your own request).
    Approve {
        #[command(flatten)]
        server: ServerArgs,
        /// The grant id (grt_…).
        id: String,
    },
    /// Deny a pending grant (approver token).
    Deny {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// End a pending or active grant now (its grantee, an approver, or the tenant's admin or
    /// security officer).
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Review a break-glass grant (approver, or the tenant's admin or auditor).
    Review {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
        /// What the review found.
        #[arg(long)]
        note: String,
    },
    /// Show one grant as JSON.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
    },
    /// List grants, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this tenant's grants.
        #[arg(long)]
        tenant: Option<String>,
        /// Only grants in this status: pending, active, expired, lapsed, denied, revoked.
        #[arg(long)]
        status: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// A server address, a token, and the tenant to act on.
#[derive(Args, Debug)]
pub struct TenantArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The tenant to act on.
    #[arg(long, env = "CUSTODIAN_TENANT")]
    pub tenant: String,
}

#[derive(Subcommand, Debug)]
pub enum SubjectCommand {
    /// Export everything held about a subject into a tar archive (admin token): one JSON file
    /// per data type, a schema, and a signed manifest. Check it with `subject verify-export`.
    Export {
        #[command(flatten)]
        target: TenantArgs,
        /// The subject's id, as records name it.
        subject: String,
        /// The request's reference (ticket or case id).
        #[arg(long)]
        reference: String,
        #[arg(long, default_value = "data subject access request")]
        reason: String,
        /// Where to write the archive.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an export offline: every file against the manifest, the manifest against its
    /// signature. Exits 1 naming the first thing that fails.
    VerifyExport {
        /// The archive `subject export` wrote.
        archive: PathBuf,
        /// The deployment's verifier key (`custodian audit key`).
        #[arg(long)]
        key: String,
    },
    /// Erase a subject (admin token): their key is destroyed, their records purged (or
    /// anonymised where the policy keeps the type), under a signed certificate. Refused when a
    /// legal hold covers any of their records.
    Erase {
        #[command(flatten)]
        target: TenantArgs,
        subject: String,
        #[arg(long)]
        reference: String,
        #[arg(long)]
        reason: String,
    },
    /// Replace one of a subject's records with a corrected payload (admin token).
    Rectify {
        #[command(flatten)]
        target: TenantArgs,
        subject: String,
        /// The record id.
        record: String,
        /// The corrected payload: JSON, or @FILE to read it from a file.
        #[arg(long)]
        payload: String,
        #[arg(long)]
        reference: String,
        #[arg(long)]
        reason: String,
    },
    /// The tenant's data-subject request log, newest first (admin or auditor token).
    Requests {
        #[command(flatten)]
        target: TenantArgs,
        /// Only this subject's requests.
        #[arg(long)]
        subject: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum HoldCommand {
    /// Place a hold (admin or security-officer token). Give exactly one scope: --all, --type,
    /// --subject, or --from with --to.
    Place {
        #[command(flatten)]
        target: TenantArgs,
        /// Hold every record of the tenant.
        #[arg(long, group = "scope")]
        all: bool,
        /// Hold every record of this data type.
        #[arg(long = "type", group = "scope")]
        data_type: Option<String>,
        /// Hold every record naming this subject (stored only as its keyed pseudonym).
        #[arg(long, group = "scope")]
        subject: Option<String>,
        /// Hold records whose event time is at or after this (RFC 3339 or a date); needs --to.
        #[arg(long, group = "scope", requires = "to")]
        from: Option<String>,
        /// End (exclusive) of the event-time range.
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// The legal case or incident the hold serves.
        #[arg(long = "case")]
        case_id: String,
        /// Why the data must be kept.
        #[arg(long)]
        reason: String,
    },
    /// Release a hold; overdue records it kept are destroyed at the next sweep.
    Release {
        #[command(flatten)]
        target: TenantArgs,
        /// The hold id (as printed by `hold place` or `hold list`).
        id: String,
    },
    /// List the tenant's holds, released ones included.
    List {
        #[command(flatten)]
        target: TenantArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Dry run: what a sweep at --at would destroy, per tenant, data type and bucket, with
    /// the oldest record and the holds that keep a bucket. Destroys nothing.
    Plan {
        #[command(flatten)]
        server: ServerArgs,
        /// One tenant (admin, auditor or operator token); all tenants without it (operator).
        #[arg(long, env = "CUSTODIAN_TENANT")]
        tenant: Option<String>,
        /// When to plan for: an RFC 3339 time or a date (its start, UTC). Default: now.
        #[arg(long)]
        at: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a sweep now instead of waiting for the background job (operator token).
    Sweep {
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeletionsCommand {
    /// List the tenant's deletion certificates (admin or auditor token).
    List {
        #[command(flatten)]
        target: TenantArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Save one certificate as a signed note, to keep or to hand to an auditor.
    Get {
        #[command(flatten)]
        target: TenantArgs,
        /// The certificate id.
        id: String,
        /// Where to write it; stdout without.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a saved certificate offline against the deployment's verifier key and print it.
    /// Exits 1 when the signature does not verify.
    Verify {
        /// A file from `custodian deletions get`.
        file: PathBuf,
        /// The deployment's verifier key (from `custodian audit key`).
        #[arg(long)]
        key: String,
    },
    /// The quarterly deletion review: every certificate of the quarter, verified, with totals
    /// per data type and a sign-off block.
    Review {
        #[command(flatten)]
        target: TenantArgs,
        /// The quarter, e.g. 2026Q4.
        #[arg(long)]
        quarter: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Terminate a tenant (operator token): new writes are refused at once; after
    /// --purge-after (and never before the longest cancel window of the policy's data types),
    /// everything not under a legal hold is destroyed (keys first), with one summary
    /// certificate.
    Terminate {
        #[command(flatten)]
        server: ServerArgs,
        /// The tenant to terminate.
        tenant: String,
        /// How long to wait before the purge, e.g. 30d (default: at the next sweep).
        #[arg(long)]
        purge_after: Option<String>,
        /// Why (contract end, customer request, ...).
        #[arg(long)]
        reason: String,
    },
    /// Withdraw a termination before its purge time (operator token): writes are accepted
    /// again.
    CancelTermination {
        #[command(flatten)]
        server: ServerArgs,
        /// The tenant whose termination to withdraw.
        tenant: String,
    },
}

/// A sweep interval: `0`, or a number with s, m or h (`30s`, `10m`, `1h`).
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not an interval; write 0, 30s, 10m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{s:?} is not an interval; write 0, 30s, 10m or 1h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_with_their_unit() {
        assert_eq!(parse_interval("0"), Ok(std::time::Duration::ZERO));
        assert_eq!(parse_interval("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_interval("10m").unwrap().as_secs(), 600);
        assert_eq!(parse_interval("2h").unwrap().as_secs(), 7200);
        for bad in ["", "m", "10", "10d", "-1m", "1.5h"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
