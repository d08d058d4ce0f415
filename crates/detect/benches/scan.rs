//! Scanner throughput on generated text, timed with `std::time` (no benchmark harness).
//!
//! Run with `cargo bench -p custodian-detect --bench scan [-- NAME…]`. Prints MB/s (10^6 bytes
//! per second) on one thread for text without PII (prose, and log lines full of ordinary
//! numbers) and for text dense with PII and secrets, by wall-clock time and by the thread's own
//! CPU time (the steadier figure on a busy machine).

use std::hint::black_box;
use std::time::{Duration, Instant};

use custodian_detect::{Entity, ScanConfig, Scanner};

/// A small deterministic generator, so every run scans the same bytes.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "the",
    "retention",
    "policy",
    "keeps",
    "records",
    "for",
    "seven",
    "years",
    "and",
    "then",
    "deletes",
    "them",
    "under",
    "a",
    "legal",
    "hold",
    "tenant",
    "customer",
    "request",
    "was",
    "processed",
    "by",
    "server",
    "quickly",
    "without",
    "errors",
    "while",
    "queue",
    "drained",
    "subject",
    "access",
    "report",
    "generated",
    "encrypted",
    "envelope",
    "rotated",
    "weekly",
    "of",
    "to",
    "in",
    "is",
    "that",
    "with",
    "on",
    "as",
    "it",
    "at",
    "from",
    "this",
    "be",
];

fn prose(rng: &mut XorShift, size: usize) -> String {
    let mut s = String::with_capacity(size + 64);
    while s.len() < size {
        for i in 0..12 {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(rng.pick(WORDS));
        }
        s.push_str(if rng.next().is_multiple_of(4) {
            ".\n"
        } else {
            ", "
        });
    }
    s
}

fn logs(rng: &mut XorShift, size: usize) -> String {
    let levels = ["INFO", "WARN", "DEBUG", "ERROR"];
    let mut s = String::with_capacity(size + 256);
    while s.len() < size {
        let n = rng.next();
        s.push_str(&format!(
            "2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z {} request_id=req{} tenant=acme route=/v1/records/{} status={} took={}ms bytes={} {} {}\n",
            n % 28 + 1,
            n % 24,
            (n >> 8) % 60,
            (n >> 16) % 60,
            (n >> 24) % 1000,
            levels[(n % 4) as usize],
            (n >> 32) % 100_000,
            (n >> 20) % 5000,
            [200, 201, 404, 500][((n >> 40) % 4) as usize],
            (n >> 44) % 900,
            (n >> 12) % 65536,
            rng.pick(WORDS),
            rng.pick(WORDS),
        ));
    }
    s
}

fn dense(rng: &mut XorShift, size: usize) -> String {
    let pii = [
        "alice.smith@acme.io",
        "bob@corp.example.com",
        "(415) 555-2671",
        "+44 20 7946 0958",
        "+49 30 901820",
        "4539 1488 0343 6467",
        "378282246310005",
        "DE89 3704 0044 0532 0130 00",
        "536-22-5555",
        "10.1.2.3",
        "2001:db8::8a2e:370:7334",
        "00:1A:2B:3C:4D:5E",
        "AKIAZ7VRSQ5TLA3MBQWE",
        "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "password=Tr0ub4dor&3x",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlc2lnbmF0dXJl",
    ];
    let mut s = String::with_capacity(size + 256);
    while s.len() < size {
        for _ in 0..4 {
            s.push_str(rng.pick(WORDS));
            s.push(' ');
        }
        s.push_str(rng.pick(&pii));
        s.push_str(if rng.next().is_multiple_of(3) {
            "\n"
        } else {
            " "
        });
    }
    s
}

/// Nanoseconds this thread has spent on a CPU (Linux `schedstat`), so that figures stay
/// meaningful on a machine shared with other work; `None` where unavailable.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Scans `text` repeatedly for at least `min`; returns MB/s of wall time, MB/s of this thread's
/// CPU time, and the findings per scan.
fn measure(scanner: &Scanner, text: &str, min: Duration) -> (f64, Option<f64>, usize) {
    let found = black_box(scanner.scan(black_box(text))).len();
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    let mut rounds = 0u32;
    while start.elapsed() < min {
        black_box(scanner.scan(black_box(text)));
        rounds += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = thread_cpu_ns()
        .zip(cpu_start)
        .map(|(end, start)| end.saturating_sub(start) as f64 / 1e9);
    let mb = text.len() as f64 * f64::from(rounds) / 1e6;
    (mb / secs, cpu_secs.map(|c| mb / c), found)
}

fn report(label: &str, (wall, cpu, found): (f64, Option<f64>, usize), size: f64) {
    let cpu = cpu.map_or("n/a".to_owned(), |c| format!("{c:.1}"));
    println!(
        "{label:<32} {wall:>7.1} MB/s wall {cpu:>7} MB/s CPU  ({size:.1} MB, {found} findings)"
    );
}

fn main() {
    let built = Instant::now();
    let scanner = match Scanner::new(ScanConfig::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("scanner: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "Scanner::new: {:.1} ms",
        built.elapsed().as_secs_f64() * 1e3
    );
    let no_phone = Scanner::new(ScanConfig {
        entities: Entity::ALL
            .into_iter()
            .filter(|&e| e != Entity::PhoneNumber)
            .collect(),
        ..ScanConfig::default()
    });
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let size = 8 << 20;
    let cases = [
        ("no PII: prose", prose(&mut rng, size)),
        ("no PII: log lines with numbers", logs(&mut rng, size)),
        ("dense PII and secrets", dense(&mut rng, size / 4)),
    ];
    // `cargo bench --bench scan -- log` runs only the cases whose name contains "log".
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (name, text) in &cases {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let size = text.len() as f64 / 1e6;
        report(name, measure(&scanner, text, Duration::from_secs(3)), size);
        // Phone numbers are the costliest check: show what the rest costs.
        if let Ok(s) = &no_phone {
            report(
                "  without PHONE_NUMBER",
                measure(s, text, Duration::from_secs(2)),
                size,
            );
        }
    }
}
