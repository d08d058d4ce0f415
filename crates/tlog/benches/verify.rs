//! `verify_log` throughput, for the offline audit's target of 1,000,000 entries per second:
//! `cargo bench -p custodian-tlog --bench verify`.

use std::time::Instant;

use custodian_tlog::{Appender, leaf_hash, verify_log};

fn main() {
    const N: u64 = 2_000_000;
    // Audit entries are small JSON records; 200 bytes is a generous average.
    let entries: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let mut e =
                format!("{{\"seq\":{i},\"tenant\":\"t-0042\",\"action\":\"read\"}}").into_bytes();
            e.resize(200, b' ');
            e
        })
        .collect();
    let mut app = Appender::new();
    for e in &entries {
        app.push(leaf_hash(e), |_| {}).unwrap();
    }
    let root = app.root();

    let start = Instant::now();
    verify_log(&entries, &root, N).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let rate = N as f64 / secs;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "verify_log: {N} entries of 200 bytes in {secs:.3} s = {rate:.0} entries/s ({cores} cores; target 1,000,000)"
    );
}
