//! The open-loop load generator: starts follow the clock, never the
//! answers (as wrk2 and k6's arrival-rate executors do). A start whose time
//! has come while `max_in_flight` requests are still running is dropped and
//! counted, not delayed; every start records how late it was. The requests
//! run as futures of this one task, so they may borrow; the timer is always
//! polled first.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::pipeline::Pattern;

/// One start of a schedule, and what became of it.
#[derive(Debug)]
pub struct Slot<T> {
    pub index: usize,
    /// When it should have started, from the schedule's start.
    pub scheduled: Duration,
    /// How much later it did start (0 for a dropped one).
    pub late: Duration,
    /// `None`: dropped, `max_in_flight` requests were running.
    pub result: Option<T>,
}

/// Start offsets of `pattern` from its start: steady, `i / rate` each moved
/// by up to ±`jitter`/2 of the interval (seeded); burst, `size` at once
/// every `gap`.
pub fn offsets(pattern: &Pattern, seed: u64) -> Vec<Duration> {
    match pattern {
        Pattern::Steady { rate, requests, jitter } => {
            let interval = 1.0 / rate;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..*requests)
                .map(|i| {
                    let shift = if *jitter > 0.0 { rng.random_range(-0.5..0.5) * jitter * interval } else { 0.0 };
                    Duration::from_secs_f64((f64::from(i) * interval + shift).max(0.0))
                })
                .collect()
        }
        Pattern::Burst { size, bursts, gap } => {
            (0..*bursts).flat_map(|b| std::iter::repeat_n(*gap * b, *size as usize)).collect()
        }
    }
}

/// Run `call(i)` at each offset, at most `max_in_flight` at once; returns
/// every slot in schedule order once all started requests have ended.
pub async fn open_loop<'a, T: 'a>(
    offsets: &[Duration],
    max_in_flight: usize,
    mut call: impl FnMut(usize) -> Pin<Box<dyn Future<Output = T> + 'a>>,
) -> Vec<Slot<T>> {
    let start = Instant::now();
    let mut running = FuturesUnordered::new();
    let mut slots: Vec<Slot<T>> = Vec::with_capacity(offsets.len());
    let mut next = 0;
    while next < offsets.len() || !running.is_empty() {
        let due = offsets.get(next).map(|offset| start + *offset);
        tokio::select! {
            biased;
            _ = sleep_until(due) => {
                let scheduled = offsets[next];
                let late = start.elapsed().saturating_sub(scheduled);
                if running.len() >= max_in_flight {
                    slots.push(Slot { index: next, scheduled, late: Duration::ZERO, result: None });
                } else {
                    let index = next;
                    let request = call(index);
                    running.push(async move { (index, scheduled, late, request.await) });
                }
                next += 1;
            }
            Some((index, scheduled, late, result)) = running.next(), if !running.is_empty() => {
                slots.push(Slot { index, scheduled, late, result: Some(result) });
            }
        }
    }
    slots.sort_by_key(|slot| slot.index);
    slots
}

/// Until `due`: tokio's timer has a 1 ms resolution and rounds up, and its
/// driver parks in whole milliseconds too, so a sleep ends up to 2–3 ms
/// late; it sleeps until `SPIN` before and spins the rest. At 200 starts a
/// second that is 60 % of a core; at the rates of real regimes, nothing.
/// (`bench schedule`: with 1 ms the start error's p99 was 1.2–1.6 ms, with 2 ms
/// 1.2 ms, with 3 ms 0.03 ms.)
async fn sleep_until(due: Option<Instant>) {
    const SPIN: Duration = Duration::from_millis(3);
    let Some(due) = due else { return std::future::pending().await };
    if let Some(coarse) = due.checked_sub(SPIN) {
        tokio::time::sleep_until(coarse).await;
    }
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_offsets_follow_the_rate_and_a_seeded_jitter() {
        let pattern = Pattern::Steady { rate: 2.0, requests: 4, jitter: 0.0 };
        assert_eq!(offsets(&pattern, 1), [0, 500, 1000, 1500].map(Duration::from_millis));
        let jittered = Pattern::Steady { rate: 2.0, requests: 50, jitter: 0.5 };
        let (a, b) = (offsets(&jittered, 7), offsets(&jittered, 7));
        assert_eq!(a, b, "the same seed, the same schedule");
        assert_ne!(a, offsets(&jittered, 8));
        for (i, offset) in a.iter().enumerate() {
            let exact = i as f64 * 0.5;
            assert!((offset.as_secs_f64() - exact).abs() <= 0.125 + 1e-9, "{i}: {offset:?}");
        }
        let burst = Pattern::Burst { size: 2, bursts: 2, gap: Duration::from_secs(3) };
        assert_eq!(offsets(&burst, 1), [0, 0, 3000, 3000].map(Duration::from_millis));
    }

    /// A slow target does not slow the schedule: every start is on time,
    /// and the ones beyond `max_in_flight` are dropped instead.
    #[test]
    fn a_slow_target_does_not_slow_the_schedule() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let offsets: Vec<Duration> = (0..40).map(|i| Duration::from_millis(i * 10)).collect();
        let slots = rt.block_on(async {
            let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/", server.local_addr().unwrap());
            // The stub target: answers each request after a second.
            tokio::spawn(async move {
                loop {
                    let (mut stream, _) = server.accept().await.unwrap();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buffer = [0u8; 1024];
                        let _ = stream.read(&mut buffer).await;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                    });
                }
            });
            let client = reqwest::Client::new();
            open_loop(&offsets, 10, |_| {
                let (client, url) = (client.clone(), url.clone());
                Box::pin(async move { client.get(&url).send().await.map(|r| r.status().as_u16()).unwrap_or(0) })
            })
            .await
        });
        assert_eq!(slots.len(), 40);
        let started: Vec<&Slot<u16>> = slots.iter().filter(|s| s.result.is_some()).collect();
        let dropped = slots.len() - started.len();
        assert_eq!(started.len(), 10, "ten in flight at once, each for a second, while 40 starts come in 0.4 s");
        assert_eq!(dropped, 30);
        assert!(started.iter().all(|s| s.result == Some(200)), "{slots:?}");
        let worst = started.iter().map(|s| s.late).max().unwrap();
        assert!(worst < Duration::from_millis(50), "a start was {worst:?} late");
    }
}
