//! Where things live under the store root, how keys map to files, and the
//! metadata sidecar kept beside every object.
//!
//! ```text
//! root/buckets/<bucket>/<key>   object bytes (key segments become directories)
//! root/meta/<bucket>/<key>      sidecar JSON (`Meta`), same shape as the data tree
//! root/staging/                 temp files of uploads in flight, renamed into place
//! root/uploads/<upload-id>/     multipart uploads: `upload.json`, `NNNNN.part`, `NNNNN.json`
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use s3s::dto::{Checksum, ChecksumType, Timestamp};
use s3s::{s3_error, S3Error, S3Result};
use serde::{Deserialize, Serialize};

/// Longest file name most Linux file systems accept; one key segment becomes one file name.
const MAX_SEGMENT_BYTES: usize = 255;
const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub buckets: PathBuf,
    pub meta: PathBuf,
    pub staging: PathBuf,
    pub uploads: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Self {
            buckets: root.join("buckets"),
            meta: root.join("meta"),
            staging: root.join("staging"),
            uploads: root.join("uploads"),
        }
    }

    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.buckets.join(bucket)
    }

    pub fn bucket_meta_dir(&self, bucket: &str) -> PathBuf {
        self.meta.join(bucket)
    }

    /// Data and sidecar paths of `key`, after `check_key` proved it cannot leave the bucket.
    pub fn object(&self, bucket: &str, key: &str) -> S3Result<ObjectPaths> {
        check_key(key)?;
        Ok(ObjectPaths {
            data: self.bucket_dir(bucket).join(key),
            meta: self.bucket_meta_dir(bucket).join(key),
        })
    }

    pub fn upload_dir(&self, upload_id: &str) -> S3Result<PathBuf> {
        // Upload ids are ours (uuid v4); anything else is not an upload we know.
        let id = uuid::Uuid::parse_str(upload_id).map_err(|_| s3_error!(NoSuchUpload))?;
        Ok(self.uploads.join(id.hyphenated().to_string()))
    }

    pub async fn bucket_exists(&self, bucket: &str) -> S3Result<bool> {
        match tokio::fs::metadata(self.bucket_dir(bucket)).await {
            Ok(m) => Ok(m.is_dir()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(internal(e, "stat bucket")),
        }
    }

    pub async fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        if self.bucket_exists(bucket).await? {
            Ok(())
        } else {
            Err(s3_error!(NoSuchBucket, "bucket `{bucket}` does not exist"))
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct ObjectPaths {
    pub data: PathBuf,
    pub meta: PathBuf,
}

/// Reject keys that could name anything but a file strictly inside the bucket:
/// absolute paths, empty, `.` or `..` segments, NUL, overlong segments.
pub(super) fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() {
        return Err(s3_error!(InvalidArgument, "object key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(s3_error!(KeyTooLongError, "object key is longer than {MAX_KEY_BYTES} bytes"));
    }
    if key.contains('\0') {
        return Err(s3_error!(InvalidArgument, "object key contains a NUL byte"));
    }
    if key.starts_with('/') {
        return Err(s3_error!(InvalidArgument, "object key `{key}` starts with `/`"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(s3_error!(InvalidArgument, "object key `{key}` has an empty segment (`//` or trailing `/`)")),
            "." | ".." => return Err(s3_error!(InvalidArgument, "object key `{key}` has a `{segment}` segment")),
            s if s.len() > MAX_SEGMENT_BYTES => {
                return Err(s3_error!(KeyTooLongError, "object key segment is longer than {MAX_SEGMENT_BYTES} bytes"))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Sidecar of one object: everything HEAD and GET return besides the bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Meta {
    pub size: u64,
    /// Hex MD5 of the bytes, or `md5(part md5s)-N` for multipart objects; without quotes.
    pub etag: String,
    pub last_modified_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub checksums: Checksums,
}

impl Meta {
    pub fn last_modified(&self) -> Timestamp {
        Timestamp::from(UNIX_EPOCH + Duration::from_millis(self.last_modified_ms))
    }

    /// Metadata for a file that was put into `buckets/` by hand, without a sidecar.
    pub fn from_bare_file(path: &Path) -> io::Result<Self> {
        use md5::Digest as _;
        let mut file = std::fs::File::open(path)?;
        let mut md5 = md5::Md5::new();
        let size = io::copy(&mut file, &mut md5)?;
        let modified = file.metadata()?.modified()?;
        Ok(Self {
            size,
            etag: hex::encode(md5.finalize()),
            last_modified_ms: unix_ms(modified),
            ..Self::default()
        })
    }
}

/// Checksums in S3's base64 form, as `s3s::dto::Checksum` but storable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Checksums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
}

impl From<Checksum> for Checksums {
    fn from(c: Checksum) -> Self {
        Self {
            crc32: c.checksum_crc32,
            crc32c: c.checksum_crc32c,
            crc64nvme: c.checksum_crc64nvme,
            sha1: c.checksum_sha1,
            sha256: c.checksum_sha256,
            checksum_type: c.checksum_type.map(|t| t.as_str().to_owned()),
        }
    }
}

impl From<Checksums> for Checksum {
    fn from(c: Checksums) -> Self {
        Self {
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_crc64nvme: c.crc64nvme,
            checksum_sha1: c.sha1,
            checksum_sha256: c.sha256,
            checksum_type: c.checksum_type.map(ChecksumType::from),
        }
    }
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<T> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

/// Write `value` as JSON to a fresh temp file in `staging`, synced, ready to be renamed.
pub(super) fn stage_json<T: Serialize>(staging: &Path, value: &T) -> io::Result<tempfile::TempPath> {
    use std::io::Write as _;
    let mut file = tempfile::Builder::new().prefix("meta-").tempfile_in(staging)?;
    serde_json::to_writer(&mut file, value).map_err(io::Error::other)?;
    file.flush()?;
    file.as_file().sync_all()?;
    Ok(file.into_temp_path())
}

/// Remove the now empty directories between `path` and `stop` (exclusive), bottom up.
pub(super) fn prune_empty_dirs(path: &Path, stop: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == stop || !d.starts_with(stop) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Every key in `bucket_dir` whose file lies under the directory part of `prefix`,
/// unsorted. Vanishing entries (concurrent deletes) are skipped.
pub(super) fn walk_keys(bucket_dir: &Path, prefix: &str) -> io::Result<Vec<String>> {
    let base = match prefix.rfind('/') {
        Some(i) if check_key(&prefix[..i]).is_ok() => &prefix[..i],
        Some(_) => return Ok(Vec::new()),
        None => "",
    };
    let mut keys = Vec::new();
    let mut stack = vec![(bucket_dir.join(base), base.to_owned())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let key = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push((entry.path(), key)),
                Ok(t) if t.is_file() => keys.push(key),
                _ => {}
            }
        }
    }
    Ok(keys)
}

pub(super) fn internal(err: impl std::fmt::Display, what: &str) -> S3Error {
    tracing::error!(%err, "object store: {what}");
    s3_error!(InternalError, "{what}: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_the_bucket_are_rejected() {
        for key in ["", "/etc/passwd", "a/../b", "..", ".", "a/./b", "a//b", "a/", "a\0b", "../x"] {
            assert!(check_key(key).is_err(), "accepted {key:?}");
        }
        let long = "x".repeat(256);
        assert_eq!(check_key(&long).unwrap_err().code().as_str(), "KeyTooLongError");
        for key in ["a", "a/b/c.wav", "clips/0001 final.wav", "a..b/c...", ".hidden/x", "ü/ñ"] {
            check_key(key).unwrap();
        }
    }

    #[test]
    fn walk_finds_nested_keys_only_under_prefix_dir() {
        let dir = tempfile::tempdir().unwrap();
        for key in ["a/b/c", "a/d", "e"] {
            let p = dir.path().join(key);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let mut all = walk_keys(dir.path(), "").unwrap();
        all.sort();
        assert_eq!(all, ["a/b/c", "a/d", "e"]);
        let mut under = walk_keys(dir.path(), "a/b").unwrap();
        under.sort();
        assert_eq!(under, ["a/b/c", "a/d"]);
        assert!(walk_keys(dir.path(), "../").unwrap().is_empty());
    }
}
