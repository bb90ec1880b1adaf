//! `cargo xtask bench build`: what `cargo xtask build` costs. One full build
//! and push under a fresh image name (cargo's own cache is kept, the images
//! are not), then no-op builds of the same; prints where the time went and
//! how much each function layer holds beyond its binary and assets.
//!
//! A benchmark, not a test: it prints figures next to their goals.

use std::time::Duration;

use anyhow::Context as _;

use crate::build;
use crate::flags;
use crate::pipeline::Pipeline;

/// Goal for a build with nothing to do, all functions and platforms.
const NOOP_GOAL: Duration = Duration::from_secs(1);
/// Goal for what a function layer holds beyond its binary and assets.
const EXTRA_GOAL_BYTES: i64 = 1 << 20;

pub fn run(pipeline: &Pipeline, flags: &flags::BenchBuild) -> anyhow::Result<()> {
    if flags.noop_runs == 0 {
        anyhow::bail!("--noop-runs 0 leaves nothing to take a median of\nhelp: use --noop-runs 3 or more");
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let registry = format!("{}/run-{stamp}", flags.registry.trim_end_matches('/'));
    let build_flags = flags::Build {
        functions: Vec::new(),
        platforms: Vec::new(),
        push: true,
        no_push: false,
        dry_run: false,
        registry: Some(registry.clone()),
    };
    println!("full build and push under {registry}:");
    let full = build::run(pipeline, &build_flags)?;
    let t = full.timings;
    println!();
    println!("time split of the full build ({} images built, {} pushed):", full.built, full.pushed);
    for (what, time) in [
        ("plan (metadata, hashes, lookups)", t.plan),
        ("base image", t.base),
        ("cargo (cross-compiling)", t.cargo),
        ("image assembly", t.assemble),
        ("push and indexes", t.push),
        ("total", t.total),
    ] {
        println!("  {what:<34} {:>8.2} s  {:>5.1} %", time.as_secs_f64(), 100.0 * time.as_secs_f64() / t.total.as_secs_f64().max(1e-9));
    }

    let mut noop = Vec::new();
    for _ in 0..flags.noop_runs {
        let outcome = build::run(pipeline, &flags::Build { push: false, ..build_flags.clone() })?;
        anyhow::ensure!(outcome.built == 0, "a no-op build built {} images", outcome.built);
        noop.push(outcome.timings.total);
    }
    noop.sort();
    let median = noop[noop.len() / 2];
    println!();
    println!(
        "no-op build, all functions and platforms: median {:.3} s of {} (goal < {:.0} s: {}; ratio to goal {:.2})",
        median.as_secs_f64(),
        noop.len(),
        NOOP_GOAL.as_secs_f64(),
        if median < NOOP_GOAL { "met" } else { "NOT met" },
        median.as_secs_f64() / NOOP_GOAL.as_secs_f64()
    );

    // Layer sizes above the base, from the engine.
    let runtime = tokio::runtime::Runtime::new()?;
    let sizes = runtime.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults()?.negotiate_version().await?;
        let mut rows = Vec::new();
        let base = full.images.base.as_ref().context("the build wrote no base image")?;
        for (function, set) in &full.images.functions {
            for (platform, image) in &set.platforms {
                let base_image = base.platforms.get(platform).context("no base for a platform")?;
                let size = |reference: String| {
                    let docker = docker.clone();
                    async move { anyhow::Ok(docker.inspect_image(&reference).await?.size.unwrap_or(0)) }
                };
                let own = size(format!("{}:{}", set.repository, image.tag)).await?;
                let under = size(format!("{}:{}", base.repository, base_image.tag)).await?;
                let payload = full.payload.get(&format!("{function} {platform}")).copied().unwrap_or(0) as i64;
                rows.push((function.clone(), platform.clone(), own - under, payload));
            }
        }
        anyhow::Ok(rows)
    })?;
    println!();
    println!("{:<16} {:<12} {:>12} {:>14} {:>12}", "function", "platform", "above base", "binary+assets", "other");
    let mut worst = i64::MIN;
    for (function, platform, above, payload) in &sizes {
        let other = above - payload;
        worst = worst.max(other);
        println!("{function:<16} {platform:<12} {:>10.2} MB {:>12.2} MB {:>10} B", mb(*above), mb(*payload), other);
    }
    println!(
        "largest layer content beyond binary and assets: {worst} B (goal < {} B: {})",
        EXTRA_GOAL_BYTES,
        if worst < EXTRA_GOAL_BYTES { "met" } else { "NOT met" }
    );
    Ok(())
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / 1e6
}
