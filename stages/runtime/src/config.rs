//! Everything a function is told comes from its environment, the way OpenFaaS
//! passes it: `PORT`, `max_inflight`, `exec_timeout`, `write_timeout`,
//! secrets as files.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};

#[derive(Debug, Clone)]
pub struct Config {
    pub function: String,
    pub port: u16,
    /// 0 means unlimited.
    pub max_inflight: usize,
    pub exec_timeout: Duration,
    /// By when an answer is written (the watchdog's `write_timeout`): a
    /// drain never holds the process longer than this past its last call.
    pub write_timeout: Duration,
    /// How long `/_/health` fails after SIGTERM before the server stops accepting.
    pub drain_delay: Duration,
    pub memory_limit_mb: u64,
    pub store: StoreConfig,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Config> {
        let function = var("FUNCTION_NAME")?.unwrap_or_else(|| {
            std::env::args()
                .next()
                .and_then(|a| PathBuf::from(a).file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "function".into())
        });
        let secrets_dir =
            PathBuf::from(var("SECRETS_DIR")?.unwrap_or_else(|| "/var/openfaas/secrets".into()));
        let secret = |name_var: &str, default: &str| -> anyhow::Result<String> {
            let name = var(name_var)?.unwrap_or_else(|| default.into());
            let path = secrets_dir.join(&name);
            let value = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read secret `{name}` from {}", path.display()))?;
            Ok(value.trim().to_string())
        };
        let exec_timeout = duration_var("exec_timeout", Duration::from_secs(60))?;
        Ok(Config {
            port: parse_var("PORT", 8080)?,
            max_inflight: parse_var("max_inflight", 0)?,
            exec_timeout,
            write_timeout: duration_var("write_timeout", exec_timeout)?.max(exec_timeout),
            drain_delay: duration_var("healthcheck_interval", Duration::from_secs(0))?,
            memory_limit_mb: parse_var("MEMORY_LIMIT_MB", 0)?,
            store: StoreConfig {
                endpoint: var("S3_ENDPOINT")?.unwrap_or_else(|| "http://127.0.0.1:9000".into()),
                bucket: var("S3_BUCKET")?.unwrap_or_else(|| "videosearcher".into()),
                region: var("S3_REGION")?.unwrap_or_else(|| "us-east-1".into()),
                access_key: secret("S3_ACCESS_KEY_SECRET", "s3-access-key")?,
                secret_key: secret("S3_SECRET_KEY_SECRET", "s3-secret-key")?,
            },
            function,
        })
    }
}

/// An environment variable, `None` when unset or empty.
pub fn var(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => bail!("environment variable {name}: {e}"),
    }
}

/// A parsed environment variable with a default.
pub fn parse_var<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match var(name)? {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e| anyhow::anyhow!("environment variable {name}={v:?}: {e}")),
    }
}

fn duration_var(name: &str, default: Duration) -> anyhow::Result<Duration> {
    match var(name)? {
        None => Ok(default),
        Some(v) => parse_duration(&v).with_context(|| format!("environment variable {name}={v:?}")),
    }
}

/// `90s`, `500ms`, `2m`, `1h`, or bare seconds (`30`, `1.5`), as OpenFaaS writes them.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().with_context(|| format!("`{text}` is not a duration"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => bail!("`{text}` has unknown unit `{unit}`; use ms, s, m or h"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_openfaas_notation() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }
}
