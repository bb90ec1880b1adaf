//! Claim-check I/O against S3: objects are named by `s3://bucket/key` URIs,
//! streamed to and from files, and every upload carries a SHA-256 of exactly
//! the bytes sent, so the store can refuse a damaged one before it is visible.

use std::path::Path;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, Checksum};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::StoreConfig;
use crate::error::{ErrorKind, StageError};

/// Files above this size are uploaded in parts; smaller ones in one request.
const PART_SIZE: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct Store {
    bucket: String,
    inner: Arc<dyn ObjectStore>,
}

impl Store {
    pub fn new(config: &StoreConfig) -> anyhow::Result<Store> {
        let inner = AmazonS3Builder::new()
            .with_endpoint(&config.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key)
            .with_secret_access_key(&config.secret_key)
            .with_virtual_hosted_style_request(false)
            .with_checksum_algorithm(Checksum::SHA256)
            .build()?;
        Ok(Store { bucket: config.bucket.clone(), inner: Arc::new(inner) })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// The key of `uri`, checked: our bucket, no `..`, no empty or absolute segments.
    pub fn key_of(&self, uri: &str) -> Result<String, StageError> {
        let rest = uri.strip_prefix("s3://").ok_or_else(|| {
            StageError::bad_input("invalid_uri", format!("`{uri}` is not an s3://bucket/key URI"))
        })?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket != self.bucket {
            return Err(StageError::bad_input(
                "invalid_uri",
                format!("`{uri}` is outside the pipeline's bucket `{}`", self.bucket),
            ));
        }
        check_key(key)?;
        Ok(key.to_string())
    }

    /// Download `uri` into `dest`, streaming. Returns the byte count.
    pub async fn download(&self, uri: &str, dest: &Path) -> Result<u64, StageError> {
        let key = self.key_of(uri)?;
        let result = self.inner.get(&ObjectPath::from(key.as_str())).await.map_err(|e| classify(uri, e))?;
        let mut stream = result.into_stream();
        let mut file = tokio::fs::File::create(dest).await.map_err(|e| io_error(dest, e))?;
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify(uri, e))?;
            bytes += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(|e| io_error(dest, e))?;
        }
        file.flush().await.map_err(|e| io_error(dest, e))?;
        Ok(bytes)
    }

    /// The size of the object at `uri`, without reading it.
    pub async fn size(&self, uri: &str) -> Result<u64, StageError> {
        let key = self.key_of(uri)?;
        let meta = self.inner.head(&ObjectPath::from(key.as_str())).await.map_err(|e| classify(uri, e))?;
        Ok(meta.size as u64)
    }

    /// The whole object in memory; for small documents (JSON) only.
    pub async fn get_bytes(&self, uri: &str) -> Result<bytes::Bytes, StageError> {
        let key = self.key_of(uri)?;
        let result = self.inner.get(&ObjectPath::from(key.as_str())).await.map_err(|e| classify(uri, e))?;
        result.bytes().await.map_err(|e| classify(uri, e))
    }

    pub async fn put_bytes(&self, key: &str, bytes: bytes::Bytes) -> Result<String, StageError> {
        check_key(key)?;
        let uri = self.uri(key);
        self.inner
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await
            .map_err(|e| classify(&uri, e))?;
        Ok(uri)
    }

    /// Upload the file at `src` as `key`, in parts when it is large. Returns
    /// the URI and the byte count.
    pub async fn upload(&self, src: &Path, key: &str) -> Result<(String, u64), StageError> {
        check_key(key)?;
        let uri = self.uri(key);
        let mut file = tokio::fs::File::open(src).await.map_err(|e| io_error(src, e))?;
        let size = file.metadata().await.map_err(|e| io_error(src, e))?.len();
        let path = ObjectPath::from(key);
        if size as usize <= PART_SIZE {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf).await.map_err(|e| io_error(src, e))?;
            self.inner.put(&path, PutPayload::from(buf)).await.map_err(|e| classify(&uri, e))?;
            return Ok((uri, size));
        }
        let upload = self.inner.put_multipart(&path).await.map_err(|e| classify(&uri, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = file.read(&mut buf).await.map_err(|e| io_error(src, e))?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(2).await.map_err(|e| classify(&uri, e))?;
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(|e| classify(&uri, e))?;
        Ok((uri, size))
    }

    /// Every key under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StageError> {
        let mut keys: Vec<String> = self
            .inner
            .list(Some(&ObjectPath::from(prefix)))
            .map(|meta| meta.map(|m| m.location.to_string()))
            .try_collect()
            .await
            .map_err(|e| classify(&self.uri(prefix), e))?;
        keys.sort();
        Ok(keys)
    }

    /// Whether the bucket exists and the credentials are accepted.
    pub async fn probe(&self) -> Result<(), StageError> {
        let mut list = self.inner.list(Some(&ObjectPath::from("requests")));
        match list.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(classify(&self.uri(""), e)),
        }
    }
}

/// A key the store and the file system can hold safely.
pub fn check_key(key: &str) -> Result<(), StageError> {
    let bad = |why: &str| StageError::bad_input("invalid_key", format!("object key `{key}` {why}"));
    if key.is_empty() {
        return Err(bad("is empty"));
    }
    if key.len() > 1024 {
        return Err(bad("is longer than 1024 bytes"));
    }
    if key.contains('\0') || key.contains('\\') {
        return Err(bad("contains a NUL or backslash"));
    }
    if key.starts_with('/') {
        return Err(bad("is absolute"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(bad("has an empty segment")),
            "." | ".." => return Err(bad("contains a `.` or `..` segment")),
            _ => {}
        }
    }
    Ok(())
}

fn classify(uri: &str, err: object_store::Error) -> StageError {
    match err {
        object_store::Error::NotFound { .. } => {
            StageError::new(ErrorKind::NotFound, "missing_object", format!("{uri} does not exist"))
        }
        other => StageError::internal("store", format!("{uri}: {other}")),
    }
}

fn io_error(path: &Path, err: std::io::Error) -> StageError {
    StageError::internal("io", format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_escape_are_refused() {
        for key in ["../etc/passwd", "requests/../x", "/abs", "a//b", "a/./b", ""] {
            let err = check_key(key).unwrap_err();
            assert_eq!(err.code, "invalid_key", "{key}");
            assert_eq!(err.kind.status(), 400);
        }
        check_key("requests/r1/extract-audio/audio.wav").unwrap();
    }
}
