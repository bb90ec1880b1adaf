//! Which image each function's manifest names, from the build manifest
//! (`.xtask/build/images.json`): the pushed multi-arch index by digest, or,
//! with a warning, a platform image by tag.
//!
//! There is no fallback for a function the manifest does not know: its tag is
//! the hash of its inputs, the base image's ID among them, which only the
//! engine that built the base knows.

use std::path::Path;

use crate::build::Images;
use crate::pipeline::{Function, Pipeline};

/// The images of the last build and where their manifest is (for messages).
#[derive(Debug, Clone, Copy)]
pub struct BuiltImages<'a> {
    pub images: &'a Images,
    pub manifest: &'a Path,
}

/// The image of every function of `pipeline`, in its order, and the
/// warnings for the ones named by tag.
pub(super) fn references(pipeline: &Pipeline, built: &BuiltImages) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let missing: Vec<String> = pipeline
        .functions
        .iter()
        .filter(|function| !built.images.functions.get(&function.name).is_some_and(|set| set.index.is_some() || !set.platforms.is_empty()))
        .map(|function| format!("`{}`", function.name))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "no image of {} in the build manifest {}: the manifests name each function's image as the last build recorded it, and an image's tag cannot be known without the engine that built its base\nhelp: run `cargo xtask build --push` (the cluster pulls the images from `build.registry`)",
            missing.join(", "),
            built.manifest.display()
        );
    }
    let mut references = Vec::new();
    let mut by_tag = Vec::new();
    for function in &pipeline.functions {
        let (reference, tagged) = reference(pipeline, function, built);
        references.push(reference);
        by_tag.extend(tagged);
    }
    let mut warnings = Vec::new();
    if !by_tag.is_empty() {
        warnings.push(format!(
            "no pushed multi-arch index in {} for {} of {} functions, so their manifests name one platform's image by tag, which a cluster pulls only if it can reach that image and runs that platform:\n{}\nhelp: run `cargo xtask build --push` to push the images and record their index digests",
            built.manifest.display(),
            by_tag.len(),
            pipeline.functions.len(),
            by_tag.join("\n")
        ));
    }
    Ok((references, warnings))
}

/// `<repository>@sha256:...` of the function's index, or the tag of its
/// first platform (in `build.platforms` order) with a line for the warning.
fn reference(pipeline: &Pipeline, function: &Function, built: &BuiltImages) -> (String, Option<String>) {
    let set = &built.images.functions[&function.name];
    if let Some(index) = &set.index {
        return (format!("{}@{}", set.repository, index.digest), None);
    }
    let order = pipeline.build.iter().flat_map(|build| &build.platforms).map(|platform| platform.name());
    let platform = order
        .filter(|name| set.platforms.contains_key(*name))
        .chain(set.platforms.keys().map(String::as_str))
        .next()
        .expect("a set without an index has a platform (checked above)");
    let reference = format!("{}:{}", set.repository, set.platforms[platform].tag);
    let line = format!("  {}: {reference} ({platform})", function.name);
    (reference, Some(line))
}
