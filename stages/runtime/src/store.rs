//! Claim-check I/O against S3: objects are named by `s3://bucket/key` URIs,
//! streamed to and from files, and every upload carries a SHA-256 of exactly
//! the bytes sent, so the store can refuse a damaged one before it is visible.

use std::path::Path;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, Checksum, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::StoreConfig;
use crate::error::{ErrorKind, StageError};

/// Files above this size are uploaded in parts; smaller ones in one request.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// How the client retries a failed request (5xx, connection errors,
/// timeouts), set on purpose rather than object_store's defaults (10
/// retries for up to 3 minutes): a stage gives up on the store within
/// seconds, long before its own exec timeout, instead of retrying after its
/// caller has given up on it. The orchestrator retries whole steps.
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(10),
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(2),
            base: 2.0,
        },
    }
}

/// Connections are made within seconds; a request as a whole has no
/// timeout of its own (a large video takes as long as it takes): the
/// stage's exec timeout bounds it.
fn client_options() -> object_store::ClientOptions {
    object_store::ClientOptions::new().with_connect_timeout(std::time::Duration::from_secs(5)).with_timeout_disabled()
}

#[derive(Clone)]
pub struct Store {
    bucket: String,
    inner: Arc<dyn ObjectStore>,
}

impl Store {
    pub fn new(config: &StoreConfig) -> anyhow::Result<Store> {
        let inner = AmazonS3Builder::new()
            // First: it replaces every client option, `allow_http` too.
            .with_client_options(client_options())
            .with_endpoint(&config.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key)
            .with_secret_access_key(&config.secret_key)
            .with_virtual_hosted_style_request(false)
            .with_checksum_algorithm(Checksum::SHA256)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(retry())
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
        // Written in large pieces: each write of a tokio file is a round trip to a blocking thread.
        let file = tokio::fs::File::create(dest).await.map_err(|e| io_error(dest, e))?;
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
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

    /// The whole object in memory; for small documents (JSON) only: one
    /// above [`DOCUMENT_LIMIT`] is refused before it is read.
    pub async fn get_bytes(&self, uri: &str) -> Result<bytes::Bytes, StageError> {
        let read = self.get_versioned(uri).await?;
        read.map(|(bytes, _)| bytes).ok_or_else(|| missing(uri))
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

    /// The small object at `uri` and its ETag, or `None` when there is none
    /// (refused above [`DOCUMENT_LIMIT`] as [`Store::get_bytes`] is).
    pub async fn get_versioned(&self, uri: &str) -> Result<Option<(bytes::Bytes, String)>, StageError> {
        let key = self.key_of(uri)?;
        let result = match self.inner.get(&ObjectPath::from(key.as_str())).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(classify(uri, e)),
        };
        check_document_size(uri, result.meta.size as u64)?;
        let etag = result.meta.e_tag.clone().unwrap_or_default();
        Ok(Some((result.bytes().await.map_err(|e| classify(uri, e))?, etag)))
    }

    /// Write `bytes` as `key` only if the object is still as the writer last
    /// saw it: absent (`None`), or with the ETag `Some(etag)`. Returns the new
    /// ETag; another writer's change in between is a [`ErrorKind::Conflict`].
    pub async fn put_if(&self, key: &str, bytes: bytes::Bytes, seen: Option<&str>) -> Result<String, StageError> {
        check_key(key)?;
        let uri = self.uri(key);
        let mode = match seen {
            None => PutMode::Create,
            Some(etag) => PutMode::Update(UpdateVersion { e_tag: Some(etag.to_string()), version: None }),
        };
        let path = ObjectPath::from(key);
        match self.inner.put_opts(&path, PutPayload::from(bytes), PutOptions { mode, ..Default::default() }).await {
            Ok(result) => Ok(result.e_tag.unwrap_or_default()),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Err(StageError::new(
                ErrorKind::Conflict,
                "changed_meanwhile",
                format!("{uri} was written by someone else since it was read"),
            )),
            Err(e) => Err(classify(&uri, e)),
        }
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
        let written = async {
            loop {
                let n = file.read(&mut buf).await.map_err(|e| io_error(src, e))?;
                if n == 0 {
                    return Ok(());
                }
                writer.wait_for_capacity(2).await.map_err(|e| classify(&uri, e))?;
                writer.write(&buf[..n]);
            }
        };
        if let Err(err) = written.await {
            // Its parts would stay in the store, named by no object.
            let _ = writer.abort().await;
            return Err(err);
        }
        // `finish` aborts the upload itself when completing it fails.
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

/// The most a document read whole into memory may hold: the state, the
/// plan's items, a transcript are kilobytes; media is streamed to files.
pub const DOCUMENT_LIMIT: u64 = 16 * 1024 * 1024;

fn check_document_size(uri: &str, size: u64) -> Result<(), StageError> {
    if size <= DOCUMENT_LIMIT {
        return Ok(());
    }
    let message = format!("{uri} is {size} bytes: a document read whole may hold at most {DOCUMENT_LIMIT} bytes (media is streamed to a file instead)");
    Err(StageError::unprocessable("document_too_large", message))
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
        object_store::Error::NotFound { .. } => missing(uri),
        // The function's own credentials: a deployment to mend, not an input.
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => StageError::internal(
            "store_denied",
            format!("{uri}: the object store refused this function's credentials; check the secrets named by `storage:` in pipeline.yaml ({err})"),
        ),
        other => StageError::internal("store", format!("{uri}: {other}")),
    }
}

fn missing(uri: &str) -> StageError {
    StageError::new(ErrorKind::NotFound, "missing_object", format!("{uri} does not exist"))
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
