//! Detection quality and throughput of custodian's scanner against Microsoft Presidio, on the
//! same labelled corpus, scored by the same code.
//!
//! Run the whole evaluation with `scripts/detect-eval/run`: it generates the corpus
//! (`scripts/detect-eval/corpus.py`), runs Presidio over it (`scripts/detect-eval/presidio_eval.py`)
//! and then this bench, which prints one table. On its own, `cargo bench -p custodian-detect
//! --bench eval` reads:
//!
//! - the corpus from `CUSTODIAN_EVAL_CORPUS` (default `target/detect-eval/corpus.jsonl` in the
//!   workspace): JSON Lines of `{"text", "spans": [{"start", "end", "entity"}], "category"}`,
//!   offsets in Unicode code points;
//! - Presidio's predictions from `CUSTODIAN_EVAL_PRESIDIO` (default `presidio.json` beside the
//!   corpus), written by `presidio_eval.py` with its timing; without it only custodian is scored;
//! - how long to time custodian from `CUSTODIAN_EVAL_SECONDS` (default 3; `0` for one pass, as
//!   under callgrind, where `--toggle-collect='*scan_pass*'` counts the instructions of one pass
//!   with every entity plus one with Presidio's entities only).
//!
//! Scoring: a prediction is correct when a labelled span of the same entity overlaps it, and a
//! labelled span is found when a prediction of the same entity overlaps it. Precision is correct
//! predictions over predictions, recall found labels over labels. custodian reports byte offsets;
//! they are converted to code points before scoring. Every miss and false positive of both tools
//! is written to `errors.txt` beside the corpus.
//!
//! With no corpus the bench says how to make one and exits successfully, so `cargo bench` works
//! on a fresh checkout.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use custodian_detect::{Entity, ScanConfig, Scanner};
use serde_json::Value;

/// A labelled or predicted span, in code points of the record's text.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub entity: String,
    /// The detector's confidence; 1 for labels.
    pub score: f64,
}

impl Span {
    pub fn new(start: usize, end: usize, entity: &str) -> Span {
        Span {
            start,
            end,
            entity: entity.to_owned(),
            score: 1.0,
        }
    }

    fn overlaps(&self, other: &Span) -> bool {
        self.entity == other.entity && self.start < other.end && other.start < self.end
    }
}

/// One corpus record.
#[derive(Debug, Clone)]
pub struct Record {
    pub text: String,
    pub spans: Vec<Span>,
    pub category: String,
}

/// Per-entity tallies of one tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Predictions of the entity.
    pub predicted: usize,
    /// Predictions overlapping a label of the entity.
    pub correct: usize,
    /// Labels of the entity.
    pub labelled: usize,
    /// Labels overlapped by a prediction of the entity.
    pub found: usize,
}

impl Counts {
    pub fn precision(&self) -> Option<f64> {
        (self.predicted > 0).then(|| self.correct as f64 / self.predicted as f64)
    }

    pub fn recall(&self) -> Option<f64> {
        (self.labelled > 0).then(|| self.found as f64 / self.labelled as f64)
    }

    /// F1 from precision and recall; a tool that predicts nothing for a labelled entity has F1 0.
    pub fn f1(&self) -> Option<f64> {
        let r = self.recall()?;
        let p = self.precision().unwrap_or(0.0);
        Some(if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        })
    }

    fn add(&mut self, o: &Counts) {
        self.predicted += o.predicted;
        self.correct += o.correct;
        self.labelled += o.labelled;
        self.found += o.found;
    }
}

/// What went wrong in one record: predictions matching no label, labels matched by nothing.
#[derive(Debug, Default, PartialEq)]
pub struct Errors {
    pub false_positives: Vec<Span>,
    pub misses: Vec<Span>,
}

/// Scores one record's predictions against its labels, adding to `counts` for every entity in
/// `entities` (the entities the tool detects; labels and predictions of others are ignored).
pub fn score_record(
    labels: &[Span],
    predictions: &[Span],
    entities: &[&str],
    counts: &mut BTreeMap<String, Counts>,
) -> Errors {
    let mut errors = Errors::default();
    for p in predictions
        .iter()
        .filter(|p| entities.contains(&p.entity.as_str()))
    {
        let c = counts.entry(p.entity.clone()).or_default();
        c.predicted += 1;
        if labels.iter().any(|l| l.overlaps(p)) {
            c.correct += 1;
        } else {
            errors.false_positives.push(p.clone());
        }
    }
    for l in labels
        .iter()
        .filter(|l| entities.contains(&l.entity.as_str()))
    {
        let c = counts.entry(l.entity.clone()).or_default();
        c.labelled += 1;
        if predictions.iter().any(|p| p.overlaps(l)) {
            c.found += 1;
        } else {
            errors.misses.push(l.clone());
        }
    }
    errors
}

/// Converts byte offsets (on char boundaries) into code point offsets.
pub fn char_offset(text: &str, byte: usize) -> usize {
    text.get(..byte)
        .map_or_else(|| text.chars().count(), |s| s.chars().count())
}

fn spans_of(v: &Value) -> Result<Vec<Span>, String> {
    let list = v.as_array().ok_or("spans is not a list")?;
    list.iter()
        .map(|s| {
            let num = |k: &str| {
                s.get(k)
                    .and_then(Value::as_u64)
                    .map(|n| n as usize)
                    .ok_or_else(|| format!("span without a numeric {k:?}"))
            };
            let entity = s
                .get("entity")
                .and_then(Value::as_str)
                .ok_or("span without an entity")?;
            Ok(Span {
                start: num("start")?,
                end: num("end")?,
                entity: entity.to_owned(),
                score: s.get("score").and_then(Value::as_f64).unwrap_or(1.0),
            })
        })
        .collect()
}

/// Parses the corpus (JSON Lines).
pub fn parse_corpus(jsonl: &str) -> Result<Vec<Record>, String> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
            let text = v
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("line {}: no text", i + 1))?;
            let spans = spans_of(v.get("spans").unwrap_or(&Value::Array(Vec::new())))
                .map_err(|e| format!("line {}: {e}", i + 1))?;
            let category = v
                .get("category")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            Ok(Record {
                text: text.to_owned(),
                spans,
                category,
            })
        })
        .collect()
}

/// Presidio's predictions and timing, as `presidio_eval.py` writes them.
pub struct Presidio {
    pub predictions: Vec<Vec<Span>>,
    pub entities: Vec<String>,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    pub bytes: usize,
    pub versions: Vec<(String, String)>,
    pub config: String,
}

pub fn parse_presidio(json: &str) -> Result<Presidio, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let predictions = v
        .get("predictions")
        .and_then(Value::as_array)
        .ok_or("no predictions")?
        .iter()
        .map(spans_of)
        .collect::<Result<Vec<_>, _>>()?;
    let entities = v
        .get("entities")
        .and_then(Value::as_array)
        .ok_or("no entities")?
        .iter()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    let versions = v
        .get("versions")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let num = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    Ok(Presidio {
        predictions,
        entities,
        wall_seconds: num("wall_seconds"),
        cpu_seconds: num("cpu_seconds"),
        bytes: v.get("bytes").and_then(Value::as_u64).unwrap_or(0) as usize,
        versions,
        config: v
            .get("config")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    })
}

/// custodian's findings on `text` as code point spans; findings flagged `test` (documentation
/// and test values) are returned separately, as a policy that drops them would see them.
fn custodian_spans(scanner: &Scanner, text: &str) -> (Vec<Span>, usize) {
    let mut tests = 0;
    let spans = scanner
        .scan(text)
        .into_iter()
        .filter(|f| {
            tests += usize::from(f.test);
            !f.test
        })
        .map(|f| Span {
            start: char_offset(text, f.start),
            end: char_offset(text, f.end),
            entity: f.entity.as_str().to_owned(),
            score: f64::from(f.score),
        })
        .collect();
    (spans, tests)
}

/// Nanoseconds this thread has spent on a CPU (Linux `schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One pass over the corpus, one `scan` call per record as Presidio analyzes them. Never
/// inlined, so that a profiler can count the instructions of exactly one pass
/// (`valgrind --tool=callgrind --toggle-collect='*scan_pass*'`, which are repeatable where
/// timings on a busy machine are not).
#[inline(never)]
fn scan_pass(scanner: &Scanner, records: &[Record]) {
    for r in records {
        std::hint::black_box(scanner.scan(std::hint::black_box(&r.text)));
    }
}

/// custodian's speed over the corpus.
struct Throughput {
    wall_mbps: f64,
    cpu_mbps: Option<f64>,
    passes: u32,
    wall: f64,
}

impl Throughput {
    fn measure(scanner: &Scanner, records: &[Record], min: Duration, mb: f64) -> Throughput {
        let (wall, cpu, passes) = time_custodian(scanner, records, min);
        Throughput {
            wall_mbps: mb * f64::from(passes) / wall,
            cpu_mbps: cpu.map(|c| mb * f64::from(passes) / c),
            passes,
            wall,
        }
    }
}

/// Scans every record in passes until `min` has elapsed (at least one pass). Returns (wall
/// seconds, CPU seconds, passes).
fn time_custodian(scanner: &Scanner, records: &[Record], min: Duration) -> (f64, Option<f64>, u32) {
    // One pass first: it compiles the phone rules of each calling code met for the first time,
    // which a single timed pass (as under callgrind) would otherwise count.
    for r in records {
        std::hint::black_box(scanner.scan(&r.text));
    }
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    let mut passes = 0;
    while passes == 0 || start.elapsed() < min {
        scan_pass(scanner, records);
        passes += 1;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns()
        .zip(cpu0)
        .map(|(end, start)| end.saturating_sub(start) as f64 / 1e9);
    (wall, cpu, passes)
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

fn cells(c: Option<&Counts>) -> String {
    match c {
        None => format!("{:^35}", "n/a"),
        Some(c) => format!(
            "{:>5} {:>5} {:>5} {:>5} {:>5} {:>5}",
            fmt_opt(c.precision()),
            fmt_opt(c.recall()),
            fmt_opt(c.f1()),
            c.correct,
            c.predicted - c.correct,
            c.labelled - c.found,
        ),
    }
}

/// `text` with `span` bracketed and at most `ctx` characters either side, on one line.
fn snippet(text: &str, span: &Span, ctx: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    let end = span.end.min(chars.len());
    let start = span.start.min(end);
    let from = start.saturating_sub(ctx);
    let to = (end + ctx).min(chars.len());
    let part = |a: usize, b: usize| -> String { chars[a..b].iter().collect() };
    let mut s = String::new();
    if from > 0 {
        s.push('…');
    }
    let _ = write!(
        s,
        "{}[[{}]]{}",
        part(from, start),
        part(start, end),
        part(end, to)
    );
    if to < chars.len() {
        s.push('…');
    }
    s.replace('\n', "\\n")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn path_from_env(var: &str, default: PathBuf) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default,
    }
}

/// Everything one tool got wrong, per entity.
type ErrorLog = BTreeMap<String, Vec<(usize, Span, &'static str)>>;

fn log_errors(log: &mut ErrorLog, record: usize, errors: Errors) {
    for s in errors.false_positives {
        log.entry(s.entity.clone())
            .or_default()
            .push((record, s, "false positive"));
    }
    for s in errors.misses {
        log.entry(s.entity.clone())
            .or_default()
            .push((record, s, "miss"));
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let corpus_path = path_from_env(
        "CUSTODIAN_EVAL_CORPUS",
        workspace_root().join("target/detect-eval/corpus.jsonl"),
    );
    let Ok(corpus_text) = std::fs::read_to_string(&corpus_path) else {
        println!(
            "eval: no corpus at {}. Generate it, and Presidio's predictions, and print the \
             comparison with scripts/detect-eval/run (or set CUSTODIAN_EVAL_CORPUS).",
            corpus_path.display()
        );
        return;
    };
    let records = match parse_corpus(&corpus_text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("eval: {}: {e}", corpus_path.display());
            std::process::exit(1);
        }
    };
    let presidio_path = path_from_env(
        "CUSTODIAN_EVAL_PRESIDIO",
        corpus_path.with_file_name("presidio.json"),
    );
    let bytes: usize = records.iter().map(|r| r.text.len()).sum();
    let presidio = match std::fs::read_to_string(&presidio_path) {
        Err(_) => {
            println!(
                "eval: no Presidio predictions at {} (run scripts/detect-eval/run); scoring \
                 custodian only.",
                presidio_path.display()
            );
            None
        }
        Ok(json) => match parse_presidio(&json) {
            Ok(p) if p.predictions.len() == records.len() && p.bytes == bytes => Some(p),
            Ok(p) => {
                println!(
                    "eval: {} holds {} records ({} bytes), the corpus {} ({} bytes): it is from \
                     another corpus; re-run scripts/detect-eval/run. Scoring custodian only.",
                    presidio_path.display(),
                    p.predictions.len(),
                    p.bytes,
                    records.len(),
                    bytes
                );
                None
            }
            Err(e) => {
                eprintln!("eval: {}: {e}", presidio_path.display());
                std::process::exit(1);
            }
        },
    };

    let config = ScanConfig::default();
    let config_text = format!(
        "ScanConfig::default() (min_score {}, phone regions {}, all entities)",
        config.min_score,
        config.phone_regions.join(",")
    );
    let scanner = match Scanner::new(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("eval: scanner: {e}");
            std::process::exit(1);
        }
    };

    let custodian_entities: Vec<&str> = Entity::ALL.iter().map(|e| e.as_str()).collect();
    let presidio_entities: Vec<&str> = presidio
        .as_ref()
        .map(|p| p.entities.iter().map(String::as_str).collect())
        .unwrap_or_default();

    let mut ours: BTreeMap<String, Counts> = BTreeMap::new();
    let mut theirs: BTreeMap<String, Counts> = BTreeMap::new();
    // Presidio again, keeping only results scoring at least custodian's min_score.
    let mut theirs_at_min: BTreeMap<String, Counts> = BTreeMap::new();
    let mut our_errors = ErrorLog::new();
    let mut their_errors = ErrorLog::new();
    // Hard-negative category -> (records, custodian FPs, Presidio FPs).
    let mut negatives: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    let mut test_flagged = 0;
    let mut label_count: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        for s in &r.spans {
            *label_count.entry(s.entity.as_str()).or_default() += 1;
        }
        let (found, tests) = custodian_spans(&scanner, &r.text);
        test_flagged += tests;
        let e = score_record(&r.spans, &found, &custodian_entities, &mut ours);
        let our_fp = e.false_positives.len();
        log_errors(&mut our_errors, i, e);
        let mut their_fp = 0;
        if let Some(p) = &presidio {
            let e = score_record(&r.spans, &p.predictions[i], &presidio_entities, &mut theirs);
            their_fp = e.false_positives.len();
            log_errors(&mut their_errors, i, e);
            let confident: Vec<Span> = p.predictions[i]
                .iter()
                .filter(|s| s.score >= f64::from(ScanConfig::default().min_score))
                .cloned()
                .collect();
            score_record(&r.spans, &confident, &presidio_entities, &mut theirs_at_min);
        }
        if r.category.starts_with("NEG") {
            let n = negatives.entry(r.category.as_str()).or_default();
            n.0 += 1;
            n.1 += our_fp;
            n.2 += their_fp;
        }
    }

    // custodian configured for Presidio's entities only, and how it scores on them.
    let same_work = presidio.as_ref().map(|_| {
        let entities: Vec<Entity> = presidio_entities
            .iter()
            .filter_map(|e| e.parse().ok())
            .collect();
        let restricted = Scanner::new(ScanConfig {
            entities,
            ..ScanConfig::default()
        })
        .unwrap_or_else(|e| {
            eprintln!("eval: scanner: {e}");
            std::process::exit(1);
        });
        let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
        for r in &records {
            let (found, _) = custodian_spans(&restricted, &r.text);
            score_record(&r.spans, &found, &presidio_entities, &mut counts);
        }
        let mut total = Counts::default();
        counts.values().for_each(|c| total.add(c));
        (restricted, total.f1().unwrap_or(0.0))
    });

    // CUSTODIAN_EVAL_SECONDS: how long to time custodian (default 3; 0 for a single pass, as
    // under a profiler).
    let min_time = std::env::var("CUSTODIAN_EVAL_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(3), Duration::from_secs_f64);
    let mb = bytes as f64 / 1e6;
    let all_entities = Throughput::measure(&scanner, &records, min_time, mb);
    // Like for like: custodian asked for only the entities Presidio was asked for, as a
    // deployment that needs no secret detection would configure it. Its F1 on them is printed
    // beside the figure: without the secret detectors, a number inside a token is no longer
    // claimed by the token.
    let same_entities = same_work
        .as_ref()
        .map(|(s, _)| Throughput::measure(s, &records, min_time, mb));

    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!("=== custodian vs Presidio: PII and secret detection ===");
    println!(
        "corpus: {} ({} records, {:.2} MB, {} labelled spans)",
        corpus_path.display(),
        records.len(),
        mb,
        label_count.values().sum::<usize>()
    );
    println!("machine: {cores} cores; each tool runs on one thread, one call per record");
    println!(
        "custodian: {config_text}; findings flagged test ({test_flagged}) count as not reported"
    );
    if let Some(p) = &presidio {
        let versions: Vec<String> = p.versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("presidio: {}; {}", versions.join(", "), p.config);
    }
    println!(
        "rule: a prediction is correct if it overlaps a labelled span of the same entity; a label \
         is found if a prediction of its entity overlaps it. P = correct/predicted, R = \
         found/labelled, F1 = 2PR/(P+R). TP = correct predictions, FP = other predictions, FN = \
         labels not found."
    );
    println!();
    let header = format!(
        "{:>5} {:>5} {:>5} {:>5} {:>5} {:>5}",
        "P", "R", "F1", "TP", "FP", "FN"
    );
    println!(
        "{:<22} {:>6} | {:^35} | {:^35}",
        "entity", "labels", "custodian", "presidio"
    );
    println!("{:<22} {:>6} | {header} | {header}", "", "");
    println!("{}", "-".repeat(22 + 1 + 6 + 3 + 35 + 3 + 35));
    let mut shared_ours = Counts::default();
    let mut shared_theirs = Counts::default();
    let mut all_ours = Counts::default();
    let mut worse = Vec::new();
    for e in Entity::ALL {
        let name = e.as_str();
        let o = ours.get(name).copied().unwrap_or_default();
        all_ours.add(&o);
        let t = (presidio.is_some() && presidio_entities.contains(&name))
            .then(|| theirs.get(name).copied().unwrap_or_default());
        if let Some(t) = &t {
            shared_ours.add(&o);
            shared_theirs.add(t);
            if o.f1().unwrap_or(0.0) + 1e-9 < t.f1().unwrap_or(0.0) {
                worse.push(name);
            }
        }
        println!(
            "{:<22} {:>6} | {} | {}",
            name,
            label_count.get(name).copied().unwrap_or(0),
            cells(Some(&o)),
            cells(t.as_ref())
        );
    }
    println!("{}", "-".repeat(22 + 1 + 6 + 3 + 35 + 3 + 35));
    if presidio.is_some() {
        println!(
            "{:<22} {:>6} | {} | {}",
            "shared entities",
            shared_ours.labelled,
            cells(Some(&shared_ours)),
            cells(Some(&shared_theirs))
        );
    }
    println!(
        "{:<22} {:>6} | {} | {}",
        "all entities",
        all_ours.labelled,
        cells(Some(&all_ours)),
        cells(None)
    );
    println!("(micro-averaged totals; \"shared\" = the entities both tools detect)");
    let shared_f1 = shared_ours.f1().unwrap_or(0.0);

    if presidio.is_some() {
        println!();
        println!(
            "Presidio keeping only results scoring >= {} (custodian's min_score), F1: {}",
            ScanConfig::default().min_score,
            presidio_entities
                .iter()
                .map(|e| format!(
                    "{e} {}",
                    fmt_opt(theirs_at_min.get(*e).and_then(Counts::f1))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    println!();
    println!("false positives on hard negatives (records with nothing sensitive in them):");
    println!(
        "{:<22} {:>7} {:>10} {:>10}",
        "category", "records", "custodian", "presidio"
    );
    let mut neg_total = (0, 0, 0);
    for (cat, (n, o, t)) in &negatives {
        let t = if presidio.is_some() {
            t.to_string()
        } else {
            "n/a".to_owned()
        };
        println!("{cat:<22} {n:>7} {o:>10} {t:>10}");
        neg_total.0 += n;
        neg_total.1 += o;
    }
    let t_total: usize = negatives.values().map(|v| v.2).sum();
    println!(
        "{:<22} {:>7} {:>10} {:>10}",
        "total",
        neg_total.0,
        neg_total.1,
        if presidio.is_some() {
            t_total.to_string()
        } else {
            "n/a".to_owned()
        }
    );

    println!();
    println!("throughput ({cores} cores on this machine; one thread each, MB = 10^6 bytes):");
    let cpu_text = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
    let row = |name: &str, t: &Throughput| {
        println!(
            "{name:<34} {:>9.2} MB/s wall {:>9} MB/s CPU  ({} passes over {mb:.2} MB in {:.1} s)",
            t.wall_mbps,
            cpu_text(t.cpu_mbps),
            t.passes,
            t.wall
        );
    };
    row("custodian, all 17 entities", &all_entities);
    if let (Some(t), Some((_, f1))) = (&same_entities, &same_work) {
        row(
            &format!("custodian, Presidio's {} entities", presidio_entities.len()),
            t,
        );
        println!(
            "{:<34} shared F1 {f1:.3} (all entities: {:.3})",
            "", shared_f1
        );
    }
    if let Some(p) = &presidio {
        let their_mbps = p.bytes as f64 / 1e6 / p.wall_seconds;
        let their_cpu = p.bytes as f64 / 1e6 / p.cpu_seconds;
        println!(
            "{:<34} {their_mbps:>9.3} MB/s wall {their_cpu:>9.3} MB/s CPU  (1 pass in {:.1} s)",
            format!("presidio, {} entities", presidio_entities.len()),
            p.wall_seconds
        );
        let ratio = |t: &Throughput| {
            format!(
                "{:.0}x (wall), {} (CPU)",
                t.wall_mbps / their_mbps,
                t.cpu_mbps
                    .map_or_else(|| "n/a".to_owned(), |c| format!("{:.0}x", c / their_cpu))
            )
        };
        println!(
            "custodian/presidio, all entities:  {}",
            ratio(&all_entities)
        );
        if let Some(t) = &same_entities {
            println!("custodian/presidio, same entities: {}", ratio(t));
        }
    }

    // Every error of both tools, for whoever improves the detectors.
    let errors_path = corpus_path.with_file_name("errors.txt");
    let mut out = String::new();
    for (tool, log) in [("custodian", &our_errors), ("presidio", &their_errors)] {
        for (entity, list) in log {
            let _ = writeln!(out, "== {tool} {entity}: {} errors", list.len());
            for (i, span, kind) in list {
                let r = &records[*i];
                let _ = writeln!(
                    out,
                    "{kind:<14} #{i:<5} {:<20} {}",
                    r.category,
                    snippet(&r.text, span, 50)
                );
            }
        }
    }
    match std::fs::write(&errors_path, out) {
        Ok(()) => println!("\nevery miss and false positive: {}", errors_path.display()),
        Err(e) => eprintln!("eval: {}: {e}", errors_path.display()),
    }

    if !worse.is_empty() {
        println!();
        println!("entities where custodian's F1 is below Presidio's, with examples:");
        for name in worse {
            println!("  {name}:");
            for (tool, log) in [("custodian", &our_errors), ("presidio", &their_errors)] {
                let list = log.get(name).map_or(&[][..], Vec::as_slice);
                for wanted in ["miss", "false positive"] {
                    let of_kind: Vec<_> = list.iter().filter(|(_, _, k)| *k == wanted).collect();
                    // Spread over the list: neighbours tend to come from one template.
                    let step = of_kind.len().div_ceil(4).max(1);
                    for (i, span, kind) in of_kind.into_iter().step_by(step) {
                        println!(
                            "    {tool:<9} {kind:<14} {}",
                            snippet(&records[*i].text, span, 40)
                        );
                    }
                }
            }
        }
    }
}
