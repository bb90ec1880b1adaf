//! Peak memory of the detector with N pictures in flight at once, as the
//! function runs them (one blocking thread each), N from 1 to 4:
//! `cargo run --release -p detect-objects --example peak_rss -- MODEL PICTURE`.
//! Prints the process's peak RSS after loading and after each N.

use std::sync::Arc;

use detect_objects::{DecoderKind, Detector};

fn rss_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (model, picture) = (&args[1], &args[2]);
    let detector = Arc::new(Detector::load(model, DecoderKind::CenterFace, DecoderKind::CenterFace.default_config()).unwrap());
    let picture = Arc::new(image::open(picture).unwrap().to_rgb8());
    println!("loaded: peak {} MiB, now {} MiB", rss_kb("VmHWM:") / 1024, rss_kb("VmRSS:") / 1024);
    for inflight in 1..=4 {
        for _round in 0..3 {
            let threads: Vec<_> = (0..inflight)
                .map(|_| {
                    let (detector, picture) = (detector.clone(), picture.clone());
                    std::thread::spawn(move || detector.detect(&picture).unwrap().len())
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
        println!("{inflight} in flight: peak {} MiB, now {} MiB", rss_kb("VmHWM:") / 1024, rss_kb("VmRSS:") / 1024);
    }
}
