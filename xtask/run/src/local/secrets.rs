//! The runtime's secrets: one file each in `<state>/secrets` (mode 0600),
//! the pipeline's generated at start, others created, updated and deleted
//! through the gateway's `/system/secrets`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context as _;

pub struct Secrets {
    dir: PathBuf,
    values: Mutex<BTreeMap<String, String>>,
}

/// Why a change to the secrets was refused.
#[derive(Debug)]
pub enum Refused {
    BadName(String),
    Exists,
    Missing,
    Io(anyhow::Error),
}

impl Secrets {
    pub fn new(dir: PathBuf, values: Vec<(String, String)>) -> Secrets {
        Secrets { dir, values: Mutex::new(values.into_iter().collect()) }
    }

    fn values(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn names(&self) -> Vec<String> {
        self.values().keys().cloned().collect()
    }

    /// The values of `names`, or the first name that has none.
    pub fn get(&self, names: &[String]) -> Result<Vec<(String, String)>, String> {
        let values = self.values();
        names.iter().map(|name| values.get(name).map(|v| (name.clone(), v.clone())).ok_or_else(|| name.clone())).collect()
    }

    pub fn create(&self, name: &str, value: &str) -> Result<(), Refused> {
        check_name(name)?;
        let mut values = self.values();
        if values.contains_key(name) {
            return Err(Refused::Exists);
        }
        self.write(name, value)?;
        values.insert(name.to_string(), value.to_string());
        Ok(())
    }

    pub fn update(&self, name: &str, value: &str) -> Result<(), Refused> {
        let mut values = self.values();
        if !values.contains_key(name) {
            return Err(Refused::Missing);
        }
        self.write(name, value)?;
        values.insert(name.to_string(), value.to_string());
        Ok(())
    }

    pub fn delete(&self, name: &str) -> Result<(), Refused> {
        let mut values = self.values();
        if values.remove(name).is_none() {
            return Err(Refused::Missing);
        }
        let path = self.dir.join(name);
        std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display())).map_err(Refused::Io)
    }

    /// Write the file whole (temp file, then rename), readable by its owner only.
    fn write(&self, name: &str, value: &str) -> Result<(), Refused> {
        let path = self.dir.join(name);
        let temp = self.dir.join(format!(".{name}.tmp"));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
            file.write_all(value.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        })();
        written.with_context(|| format!("write secret {}", path.display())).map_err(Refused::Io)
    }
}

/// A secret's name is a file name: letters, digits, `-`, `_`, `.`, not starting with `.`.
fn check_name(name: &str) -> Result<(), Refused> {
    let fine = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(())
    } else {
        Err(Refused::BadName(format!(
            "secret name `{name}` is not allowed: use letters, digits, `-`, `_` and `.`, not starting with `.`"
        )))
    }
}
