//! `cargo xtask bench store`: the embedded object store under concurrent
//! uploads while others list the bucket, as a fan-out's steps do at once.
//! Prints each upload's latency (p50, p99, max) and the throughput; run it
//! before and after a change to the store's locking.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3Builder, Checksum};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

use crate::flags::BenchStore;
use crate::local::store::Store;

const BUCKET: &str = "bench";
const ACCESS_KEY: &str = "bench-access";
const SECRET_KEY: &str = "bench-secret-key";
/// Transfers of each size in the sequential part.
const SEQUENTIAL_RUNS: usize = 9;

pub fn run(flags: &BenchStore) -> anyhow::Result<()> {
    anyhow::ensure!(flags.uploads > 0 && flags.mib > 0, "--uploads and --mib must be above 0");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(measure(flags))
}

async fn measure(flags: &BenchStore) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let server = Store::start(root.path(), "127.0.0.1:0".parse()?, ACCESS_KEY, SECRET_KEY)?;
    server.ensure_bucket(BUCKET)?;
    let s3 = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(server.endpoint())
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_checksum_algorithm(Checksum::SHA256)
            .build()?,
    );

    // One client, one object at a time: what a stage waits for per transfer.
    println!("one upload, then its download, at a time (median of {SEQUENTIAL_RUNS}):");
    for size in [1usize << 10, 64 << 10, 1 << 20, 8 << 20] {
        let body: bytes::Bytes = vec![7u8; size].into();
        let (mut put, mut get) = (Vec::new(), Vec::new());
        for i in 0..SEQUENTIAL_RUNS {
            let path = ObjectPath::from(format!("sequential/{size}/{i}"));
            let at = Instant::now();
            s3.put(&path, PutPayload::from(body.clone())).await?;
            put.push(at.elapsed());
            let at = Instant::now();
            s3.get(&path).await?.bytes().await?;
            get.push(at.elapsed());
        }
        let median = |mut d: Vec<Duration>| {
            d.sort();
            d[d.len() / 2].as_secs_f64() * 1000.0
        };
        println!("  {:>5} KiB: upload {:>6.1} ms, download {:>6.1} ms", size >> 10, median(put), median(get));
    }

    // A bucket with history, so that a listing has work to do.
    let small = PutPayload::from_static(b"{\"state\":\"done\"}");
    futures::stream::iter(0..flags.objects)
        .map(|i| {
            let (s3, small) = (s3.clone(), small.clone());
            async move { s3.put(&ObjectPath::from(format!("requests/{i:05}/state.json")), small).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .context("fill the bucket")?;

    let body: bytes::Bytes = (0..flags.mib * 1024 * 1024).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>().into();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listers: Vec<_> = (0..flags.listers)
        .map(|_| {
            let (s3, stop, expected) = (s3.clone(), stop.clone(), flags.objects);
            tokio::spawn(async move {
                let mut listings = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let listed: Vec<_> = s3.list(Some(&ObjectPath::from("requests"))).try_collect().await?;
                    anyhow::ensure!(listed.len() == expected, "a listing saw {} of the {expected} objects", listed.len());
                    listings += 1;
                }
                anyhow::Ok(listings)
            })
        })
        .collect();

    let started = Instant::now();
    let uploads: Vec<_> = (0..flags.uploads)
        .map(|i| {
            let (s3, body) = (s3.clone(), body.clone());
            tokio::spawn(async move {
                let at = Instant::now();
                s3.put(&ObjectPath::from(format!("clips/{i:03}.mp4")), PutPayload::from(body)).await?;
                anyhow::Ok(at.elapsed())
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    for upload in uploads {
        latencies.push(upload.await??);
    }
    let wall = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut listings = 0;
    for lister in listers {
        listings += lister.await??;
    }
    server.shutdown().await?;

    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(latencies[((latencies.len() - 1) as f64 * q).round() as usize]);
    let mb = (flags.uploads * flags.mib) as f64;
    println!(
        "{} concurrent uploads of {} MiB into a bucket of {} objects, {} listers ({listings} listings meanwhile):",
        flags.uploads, flags.mib, flags.objects, flags.listers
    );
    println!(
        "  upload latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; all in {:.1} ms, {:.0} MiB/s",
        at(0.5),
        at(0.99),
        at(1.0),
        ms(wall),
        mb / wall.as_secs_f64()
    );
    Ok(())
}
