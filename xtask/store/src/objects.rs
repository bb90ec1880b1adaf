//! Object operations: put, get, head, delete, copy, and the commit step that
//! makes a verified staging file visible.
//!
//! Consistency: the data file and its sidecar are renamed into place together
//! under the key's write lock; readers open the data file and read the
//! sidecar under its read lock, then stream from the open descriptor. A reader
//! therefore sees the old object or the new one, never a mix or a partial file.

use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use md5::Digest as _;
use s3s::dto::*;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{s3_error, S3Request, S3Response, S3Result};
use tokio::io::{AsyncRead, ReadBuf};

use super::ingest::{self, Declared};
use super::layout::{internal, prune_empty_dirs, read_json, stage_json, unix_ms, Checksums, Meta, ObjectPaths};
use super::Store;

const READ_CHUNK: usize = 256 * 1024;

/// Conditions a write must meet at the moment it becomes visible.
#[derive(Debug, Default)]
pub(super) struct Precondition {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
}

impl Precondition {
    fn check(&self, current: Option<&Meta>) -> S3Result<()> {
        if let Some(cond) = &self.if_none_match {
            let clash = match (cond, current) {
                (_, None) => false,
                (ETagCondition::Any, Some(_)) => true,
                (ETagCondition::ETag(e), Some(m)) => e.value() == m.etag,
            };
            if clash {
                return Err(s3_error!(PreconditionFailed, "the object already exists"));
            }
        }
        if let Some(cond) = &self.if_match {
            let Some(m) = current else { return Err(s3_error!(NoSuchKey, "If-Match given but the object does not exist")) };
            if let ETagCondition::ETag(e) = cond {
                if e.value() != m.etag {
                    return Err(s3_error!(PreconditionFailed, "the object's ETag does not match If-Match"));
                }
            }
        }
        Ok(())
    }
}

/// Current metadata of the object at `paths`, if there is one.
fn current_meta(paths: &ObjectPaths) -> io::Result<Option<Meta>> {
    match std::fs::metadata(&paths.data) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
        Err(e) => return Err(e),
    }
    match read_json(&paths.meta) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Meta::from_bare_file(&paths.data).map(Some),
        Err(e) => Err(e),
    }
}

fn conflict_or_internal(err: io::Error, key: &str) -> s3s::S3Error {
    match err.kind() {
        io::ErrorKind::IsADirectory | io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty => {
            s3_error!(InvalidArgument, "key `{key}` clashes with an existing key that is its prefix or has it as a prefix (`a` vs `a/b`), which this local store cannot hold")
        }
        _ => internal(err, "rename object into place"),
    }
}

/// Open the object's bytes and read its sidecar as one consistent snapshot.
pub(super) fn open_snapshot(paths: &ObjectPaths) -> io::Result<Option<(std::fs::File, Meta)>> {
    let file = match std::fs::File::open(&paths.data) {
        Ok(f) => f,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    let meta = match read_json(&paths.meta) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Meta::from_bare_file(&paths.data)?,
        Err(e) => return Err(e),
    };
    Ok(Some((file, meta)))
}

impl Store {
    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> S3Result<T> + Send + 'static) -> S3Result<T> {
        tokio::task::spawn_blocking(f).await.map_err(|e| internal(e, "blocking task"))?
    }

    /// Make a verified staging file the object `key`, with `meta` as its sidecar.
    pub(super) async fn commit(&self, bucket: &str, key: &str, data: tempfile::TempPath, meta: Meta, pre: Precondition) -> S3Result<Meta> {
        let paths = self.layout.object(bucket, key)?;
        let staging = self.layout.staging.clone();
        let sidecar = Self::blocking(move || stage_json(&staging, &meta).map(|p| (p, meta)).map_err(|e| internal(e, "write sidecar")));
        let (sidecar, mut meta) = sidecar.await?;

        let bucket_dir = self.layout.bucket_dir(bucket);
        let _guard = self.locks.of(bucket, key).write().await;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        Self::blocking(move || {
            // Checked under the lock: a bucket deleted meanwhile must not be recreated.
            if !bucket_dir.is_dir() {
                return Err(s3_error!(NoSuchBucket, "bucket `{bucket}` does not exist"));
            }
            pre.check(current_meta(&paths).map_err(|e| internal(e, "read current object"))?.as_ref())?;
            meta.last_modified_ms = unix_ms(std::time::SystemTime::now());
            for (from, to) in [(data, &paths.data), (sidecar, &paths.meta)] {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| conflict_or_internal(e, &key))?;
                }
                from.persist(to).map_err(|e| conflict_or_internal(e.error, &key))?;
            }
            Ok(meta)
        })
        .await
    }

    /// Open an object for reading, or the S3 error for why it cannot be.
    async fn open_object(&self, bucket: &str, key: &str) -> S3Result<(std::fs::File, Meta)> {
        let paths = self.layout.object(bucket, key)?;
        let found = {
            let _guard = self.locks.of(bucket, key).read().await;
            Self::blocking(move || open_snapshot(&paths).map_err(|e| internal(e, "open object"))).await?
        };
        match found {
            Some(found) => Ok(found),
            None => {
                self.layout.require_bucket(bucket).await?;
                Err(s3_error!(NoSuchKey, "no object `{key}` in bucket `{bucket}`"))
            }
        }
    }

    pub(super) async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        self.layout.object(&input.bucket, &input.key)?;
        self.layout.require_bucket(&input.bucket).await?;
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody, "PutObject without a body"))?;
        let checksum = Checksum {
            checksum_crc32: input.checksum_crc32,
            checksum_crc32c: input.checksum_crc32c,
            checksum_crc64nvme: input.checksum_crc64nvme,
            checksum_sha1: input.checksum_sha1,
            checksum_sha256: input.checksum_sha256,
            checksum_type: None,
        };
        let declared = Declared::from_headers(&req.headers, input.content_md5, checksum, input.checksum_algorithm);
        let staged = ingest::receive(&self.layout.staging, body, declared, req.trailing_headers).await?;

        let meta = Meta {
            size: staged.size,
            etag: staged.etag(),
            content_type: input.content_type,
            content_encoding: input.content_encoding,
            content_disposition: input.content_disposition,
            content_language: input.content_language,
            cache_control: input.cache_control,
            user_metadata: input.metadata.unwrap_or_default().into_iter().collect(),
            checksums: staged.checksums.clone(),
            ..Meta::default()
        };
        let pre = Precondition { if_match: input.if_match, if_none_match: input.if_none_match };
        let meta = self.commit(&input.bucket, &input.key, staged.temp, meta, pre).await?;
        let c: Checksum = meta.checksums.into();
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(meta.etag)),
            size: i64::try_from(meta.size).ok(),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    pub(super) async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (mut file, meta) = self.open_object(&input.bucket, &input.key).await?;
        check_read_conditions(&meta, input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let (start, end, content_range) = match &input.range {
            None => (0, meta.size, None),
            Some(range) => {
                let r = range.check(meta.size)?;
                let content_range = format!("bytes {}-{}/{}", r.start, r.end - 1, meta.size);
                (r.start, r.end, Some(content_range))
            }
        };
        let file = Self::blocking(move || {
            file.seek(io::SeekFrom::Start(start)).map_err(|e| internal(e, "seek object"))?;
            Ok(file)
        })
        .await?;
        let whole = content_range.is_none();
        let c = checksums_if(&meta, whole && wants_checksums(input.checksum_mode.as_ref()));
        let body = FileStream { file: tokio::fs::File::from_std(file), remaining: end - start };
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::new(body)),
            content_length: i64::try_from(end - start).ok(),
            content_range,
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(ETag::Strong(meta.etag.clone())),
            last_modified: Some(meta.last_modified()),
            content_type: meta.content_type,
            content_encoding: meta.content_encoding,
            content_disposition: meta.content_disposition,
            content_language: meta.content_language,
            cache_control: meta.cache_control,
            metadata: Some(meta.user_metadata.into_iter().collect()),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            checksum_type: c.checksum_type,
            ..Default::default()
        }))
    }

    pub(super) async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (_, meta) = self.open_object(&input.bucket, &input.key).await?;
        check_read_conditions(&meta, input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let c = checksums_if(&meta, wants_checksums(input.checksum_mode.as_ref()));
        Ok(S3Response::new(HeadObjectOutput {
            content_length: i64::try_from(meta.size).ok(),
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(ETag::Strong(meta.etag.clone())),
            last_modified: Some(meta.last_modified()),
            content_type: meta.content_type,
            content_encoding: meta.content_encoding,
            content_disposition: meta.content_disposition,
            content_language: meta.content_language,
            cache_control: meta.cache_control,
            metadata: Some(meta.user_metadata.into_iter().collect()),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            checksum_type: c.checksum_type,
            ..Default::default()
        }))
    }

    /// Remove `key`; a missing key is not an error (S3 answers 204 either way).
    pub(super) async fn remove(&self, bucket: &str, key: &str) -> S3Result<()> {
        let paths = self.layout.object(bucket, key)?;
        let (data_root, meta_root) = (self.layout.bucket_dir(bucket), self.layout.bucket_meta_dir(bucket));
        let _guard = self.locks.of(bucket, key).write().await;
        Self::blocking(move || {
            for (path, root) in [(&paths.data, &data_root), (&paths.meta, &meta_root)] {
                match std::fs::remove_file(path) {
                    Ok(()) => prune_empty_dirs(path, root),
                    Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory) => {}
                    Err(e) => return Err(internal(e, "delete object")),
                }
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        self.layout.require_bucket(&input.bucket).await?;
        self.remove(&input.bucket, &input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    pub(super) async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        self.layout.require_bucket(&input.bucket).await?;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            match self.remove(&input.bucket, &object.key).await {
                Ok(()) => deleted.push(DeletedObject { key: Some(object.key), ..Default::default() }),
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_owned()),
                    message: e.message().map(str::to_owned),
                    key: Some(object.key),
                    version_id: None,
                }),
            }
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    pub(super) async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let CopySource::Bucket { bucket: src_bucket, key: src_key, .. } = &input.copy_source else {
            return Err(s3_error!(NotImplemented, "only bucket copy sources are supported"));
        };
        self.layout.object(&input.bucket, &input.key)?;
        self.layout.require_bucket(&input.bucket).await?;
        let (mut src, src_meta) = self.open_object(src_bucket, src_key).await?;
        check_read_conditions(&src_meta, input.copy_source_if_match.as_ref(), input.copy_source_if_none_match.as_ref())?;

        let staging: PathBuf = self.layout.staging.clone();
        let (temp, md5) = Self::blocking(move || {
            let mut copy = || -> io::Result<_> {
                let temp = tempfile::Builder::new().prefix("copy-").tempfile_in(&staging)?;
                let (mut out, temp) = temp.into_parts();
                let mut md5 = md5::Md5::new();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = src.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    md5.update(&buf[..n]);
                    out.write_all(&buf[..n])?;
                }
                out.sync_all()?;
                Ok((temp, hex::encode(md5.finalize())))
            };
            copy().map_err(|e| internal(e, "copy object"))
        })
        .await?;

        let replace = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let whole_object_checksums = src_meta.checksums.checksum_type.as_deref() != Some(ChecksumType::COMPOSITE);
        let meta = Meta {
            size: src_meta.size,
            etag: md5,
            checksums: if whole_object_checksums { src_meta.checksums.clone() } else { Checksums::default() },
            ..if replace {
                Meta {
                    content_type: input.content_type,
                    content_encoding: input.content_encoding,
                    content_disposition: input.content_disposition,
                    content_language: input.content_language,
                    cache_control: input.cache_control,
                    user_metadata: input.metadata.unwrap_or_default().into_iter().collect(),
                    ..Meta::default()
                }
            } else {
                src_meta
            }
        };
        let meta = self.commit(&input.bucket, &input.key, temp, meta, Precondition::default()).await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(meta.etag.clone())),
                last_modified: Some(meta.last_modified()),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

fn wants_checksums(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
}

/// Stored checksums when the caller asked for them (`x-amz-checksum-mode: ENABLED`).
fn checksums_if(meta: &Meta, wanted: bool) -> Checksum {
    if wanted {
        meta.checksums.clone().into()
    } else {
        Checksum::default()
    }
}

fn check_read_conditions(meta: &Meta, if_match: Option<&ETagCondition>, if_none_match: Option<&ETagCondition>) -> S3Result<()> {
    if let Some(ETagCondition::ETag(e)) = if_match {
        if e.value() != meta.etag {
            return Err(s3_error!(PreconditionFailed, "the object's ETag does not match If-Match"));
        }
    }
    match if_none_match {
        Some(ETagCondition::Any) => Err(s3_error!(NotModified)),
        Some(ETagCondition::ETag(e)) if e.value() == meta.etag => Err(s3_error!(NotModified)),
        _ => Ok(()),
    }
}

/// The bytes of an open object file, `remaining` of them from its current offset.
struct FileStream {
    file: tokio::fs::File,
    remaining: u64,
}

impl futures::Stream for FileStream {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(READ_CHUNK);
        let mut buf = vec![0u8; want];
        let mut read_buf = ReadBuf::new(&mut buf);
        match Pin::new(&mut self.file).poll_read(cx, &mut read_buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(Ok(())) => {
                let n = read_buf.filled().len();
                if n == 0 {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "object file is shorter than its metadata says");
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                self.remaining -= n as u64;
                buf.truncate(n);
                Poll::Ready(Some(Ok(Bytes::from(buf))))
            }
        }
    }
}

impl ByteStream for FileStream {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(usize::try_from(self.remaining).unwrap_or(usize::MAX))
    }
}
