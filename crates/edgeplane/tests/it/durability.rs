//! Crash safety: every acknowledged change survives `kill -9` of the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{cli, cli_ok, data_dir_with_example, kdig, Edgeplane};

#[test]
fn acknowledged_writes_survive_sigkill_during_a_burst() {
    let dir = data_dir_with_example();
    let server = Edgeplane::start(dir.path(), &[]);
    let acked: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u32)
        .map(|w| {
            let acked = Arc::clone(&acked);
            let stop = Arc::clone(&stop);
            let path = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let n = w * 10_000 + i;
                    let name = format!("burst{n}");
                    let ip = format!("10.{}.{}.{}", w, i / 256, i % 256);
                    let out = cli(&path, &["record", "upsert", "example.com", &name, "A", &ip]);
                    if out.status.success() {
                        acked.lock().expect("lock").push(n);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 10,
        "only {} writes acknowledged before the kill",
        acked.len()
    );
    // Restart on the same data: every acknowledged record is there and served.
    let list = cli_ok(dir.path(), &["record", "list", "example.com"]);
    for n in &acked {
        assert!(
            list.contains(&format!("burst{n}.example.com.")),
            "acknowledged write burst{n} lost"
        );
    }
    let server = Edgeplane::start(dir.path(), &[]);
    let last = acked.last().expect("one write");
    let d = kdig(server.addr(), &[&format!("burst{last}.example.com"), "A"]);
    assert_eq!(d.answer.len(), 1, "{}", d.raw);
    eprintln!(
        "{} acknowledged writes, all present after kill -9",
        acked.len()
    );
}
