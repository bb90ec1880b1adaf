//! `build:` and the functions' `assets:`: what images are made from.

use std::path::PathBuf;

use super::{Checked, Checker};
use crate::pipeline::model::{Asset, BaseRecipe, Build, Platform};
use crate::pipeline::raw::{RawAsset, RawBaseRecipe, RawBuild};

/// Files the base image's folder must hold, for either recipe.
const BASE_FILES: [&str; 2] = ["Dockerfile", "packages"];

impl Checker<'_> {
    pub(super) fn build(&self, raw: RawBuild) -> Checked<Build> {
        let base = self.dir.join(&raw.base);
        for file in BASE_FILES {
            if !base.join(file).is_file() {
                return Err(self.error(
                    "build.base",
                    format!("base image folder `{}` has no `{file}`", raw.base.display()),
                    format!(
                        "`base` is relative to the pipeline file's folder and holds {}: looked in {}",
                        BASE_FILES.map(|file| format!("`{file}`")).join(" and "),
                        base.display()
                    ),
                ));
            }
        }

        if raw.platforms.is_empty() {
            return Err(self.error(
                "build.platforms",
                "`build.platforms` is empty: no image would be built",
                "list at least one of `linux/amd64`, `linux/arm64`",
            ));
        }
        let mut platforms = Vec::new();
        for (index, name) in raw.platforms.iter().enumerate() {
            let path = format!("build.platforms[{index}]");
            let Some(platform) = Platform::parse(name) else {
                let known = Platform::ALL.map(|platform| platform.name());
                let hint = match crate::pipeline::suggest::closest(name, known) {
                    Some(close) => format!("did you mean `{close}`? "),
                    None => String::new(),
                };
                return Err(self.error(
                    &path,
                    format!("unknown platform `{name}`"),
                    format!("{hint}known platforms: {}", known.map(|name| format!("`{name}`")).join(", ")),
                ));
            };
            if platforms.contains(&platform) {
                return Err(self.error(&path, format!("platform `{name}` is listed twice"), "remove this one"));
            }
            platforms.push(platform);
        }

        let registry = match raw.registry {
            None => None,
            Some(registry) => Some(self.registry(registry)?),
        };

        let profile_ok = !raw.profile.is_empty()
            && raw.profile.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !profile_ok || raw.profile == "dev" || raw.profile == "test" {
            return Err(self.error(
                "build.profile",
                format!("`{}` is not a usable cargo profile for images", raw.profile),
                "use `release`, or a profile of the workspace's Cargo.toml that inherits from it",
            ));
        }
        if raw.parallel == 0 {
            return Err(self.error("build.parallel", "`build.parallel` is 0: nothing would be built", "use 1 or more"));
        }
        Ok(Build {
            base,
            base_recipe: match raw.base_recipe {
                RawBaseRecipe::Bootstrap => BaseRecipe::Bootstrap,
                RawBaseRecipe::Dockerfile => BaseRecipe::Dockerfile,
            },
            platforms,
            registry,
            profile: raw.profile,
            parallel: raw.parallel,
        })
    }

    /// `host[:port]/path`, as image references spell it, without a scheme.
    fn registry(&self, registry: String) -> Checked<String> {
        let help = "write a registry host with a path, like `127.0.0.1:5000/videosearcher`";
        if let Some((scheme, _)) = registry.split_once("://") {
            return Err(self.error(
                "build.registry",
                format!("`build.registry` has a scheme `{scheme}://`"),
                format!("{help}: image references carry no scheme"),
            ));
        }
        let registry = registry.trim_end_matches('/').to_string();
        let (host, path) = registry.split_once('/').unwrap_or((&registry, ""));
        let host_ok = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
            && (host.contains(['.', ':']) || host == "localhost");
        let path_ok = !path.is_empty()
            && path.split('/').all(|part| {
                !part.is_empty()
                    && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
            });
        if !host_ok || !path_ok {
            return Err(self.error("build.registry", format!("`{registry}` is not a registry with a path"), help));
        }
        Ok(registry)
    }

    pub(super) fn assets(&self, function: &str, raw: Vec<RawAsset>) -> Checked<Vec<Asset>> {
        let mut assets: Vec<Asset> = Vec::new();
        for (index, asset) in raw.into_iter().enumerate() {
            let path = format!("{function}.assets[{index}].to");
            let to = &asset.to;
            let normal = to.starts_with('/')
                && !to.ends_with('/')
                && to[1..].split('/').all(|part| !part.is_empty() && part != "." && part != "..");
            if !normal {
                return Err(self.error(
                    &path,
                    format!("asset destination `{to}` is not an absolute file path"),
                    "write where the file goes inside the image, like `/opt/videosearcher/models/model.onnx`",
                ));
            }
            if let Some(first) = assets.iter().position(|other| &other.to == to) {
                return Err(self.error(
                    &path,
                    format!("two assets go to `{to}`"),
                    format!("give each its own destination (the first is `{function}.assets[{first}]`)"),
                ));
            }
            let at = format!("{function}.assets[{index}]");
            let from: PathBuf = match (asset.from, asset.detector_model) {
                (Some(from), false) => self.dir.join(from),
                (None, true) => self.detector_model.to_path_buf(),
                (Some(_), true) => {
                    return Err(self.source.error_at_key(
                        &format!("{at}.detector_model"),
                        "an asset is either a file (`from`) or the detector model (`detector_model: true`), not both",
                        Some("remove `from:`: the detector model is the file `parameters.detector.model` names".into()),
                    ))
                }
                (None, false) => {
                    return Err(self.error(
                        &at,
                        format!("asset `{at}` says nothing to copy"),
                        "add `from:` (a file, relative to the pipeline file's folder), or `detector_model: true` for the model `parameters.detector.model` names",
                    ))
                }
            };
            assets.push(Asset { from, to: asset.to });
        }
        Ok(assets)
    }
}
