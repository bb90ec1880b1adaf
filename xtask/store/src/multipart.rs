//! Multipart uploads. Each part is verified like a PutObject body and kept in
//! `uploads/<id>/`; completion freezes the upload (renames its directory so no
//! part can change), checks the client's part list, concatenates the parts on
//! disk and commits the result like any other object.

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use md5::Digest as _;
use s3s::crypto::{Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};

use super::ingest::{self, Declared};
use super::layout::{internal, read_json, stage_json, unix_ms, Checksums, Meta};
use super::objects::Precondition;
use super::Store;

/// S3's minimum size of every part but the last.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;

#[derive(Debug, Serialize, Deserialize)]
struct UploadInfo {
    bucket: String,
    key: String,
    /// Content type, user metadata etc. the finished object gets.
    meta: Meta,
    checksum_algorithm: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PartInfo {
    size: u64,
    etag: String,
    last_modified_ms: u64,
    checksums: Checksums,
}

fn part_paths(dir: &Path, number: i32) -> (PathBuf, PathBuf) {
    (dir.join(format!("{number:05}.part")), dir.join(format!("{number:05}.json")))
}

/// The upload's description, if `dir` holds the upload of `bucket`/`key`.
fn read_upload(dir: &Path, bucket: &str, key: &str) -> S3Result<UploadInfo> {
    match read_json::<UploadInfo>(&dir.join("upload.json")) {
        Ok(info) if info.bucket == bucket && info.key == key => Ok(info),
        Ok(_) => Err(s3_error!(NoSuchUpload, "the upload belongs to another object")),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Err(s3_error!(NoSuchUpload)),
        Err(e) => Err(internal(e, "read upload")),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> S3Result<T> + Send + 'static) -> S3Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| internal(e, "blocking task"))?
}

impl Store {
    pub(super) async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        self.layout.object(&input.bucket, &input.key)?;
        self.layout.require_bucket(&input.bucket).await?;
        if input.checksum_type.as_ref().is_some_and(|t| t.as_str() != ChecksumType::COMPOSITE) {
            return Err(s3_error!(NotImplemented, "only COMPOSITE multipart checksums are supported"));
        }
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let info = UploadInfo {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            meta: Meta {
                content_type: input.content_type,
                content_encoding: input.content_encoding,
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                cache_control: input.cache_control,
                user_metadata: input.metadata.unwrap_or_default().into_iter().collect(),
                ..Meta::default()
            },
            checksum_algorithm: input.checksum_algorithm.as_ref().map(|a| a.as_str().to_owned()),
        };
        let (dir, staging) = (self.layout.upload_dir(&id)?, self.layout.staging.clone());
        blocking(move || {
            let create = || -> io::Result<()> {
                let staged = stage_json(&staging, &info)?;
                std::fs::create_dir_all(&dir)?;
                staged.persist(dir.join("upload.json")).map_err(|e| e.error)
            };
            create().map_err(|e| internal(e, "create upload"))
        })
        .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            checksum_algorithm: input.checksum_algorithm,
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        if !(1..=MAX_PART_NUMBER).contains(&input.part_number) {
            return Err(s3_error!(InvalidArgument, "part number must be an integer between 1 and {MAX_PART_NUMBER}"));
        }
        let dir = self.layout.upload_dir(&input.upload_id)?;
        let info = read_upload(&dir, &input.bucket, &input.key)?;
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody, "UploadPart without a body"))?;
        let checksum = Checksum {
            checksum_crc32: input.checksum_crc32,
            checksum_crc32c: input.checksum_crc32c,
            checksum_crc64nvme: input.checksum_crc64nvme,
            checksum_sha1: input.checksum_sha1,
            checksum_sha256: input.checksum_sha256,
            checksum_type: None,
        };
        let algorithm = input.checksum_algorithm.or_else(|| info.checksum_algorithm.map(ChecksumAlgorithm::from));
        let declared = Declared::from_headers(&req.headers, input.content_md5, checksum, algorithm);
        let staged = ingest::receive(&self.layout.staging, body, declared, req.trailing_headers).await?;

        let part = PartInfo {
            size: staged.size,
            etag: staged.etag(),
            last_modified_ms: unix_ms(std::time::SystemTime::now()),
            checksums: staged.checksums.clone(),
        };
        let staging = self.layout.staging.clone();
        let (sidecar, part) = blocking(move || stage_json(&staging, &part).map(|s| (s, part)).map_err(|e| internal(e, "write part")))
            .await?;
        let (data_path, json_path) = part_paths(&dir, input.part_number);
        let data = staged.temp;
        let _guard = self.upload_lock(&dir).write().await;
        blocking(move || {
            if !dir.join("upload.json").is_file() {
                return Err(s3_error!(NoSuchUpload, "the upload was completed or aborted meanwhile"));
            }
            data.persist(&data_path).map_err(|e| internal(e.error, "store part"))?;
            sidecar.persist(&json_path).map_err(|e| internal(e.error, "store part"))?;
            Ok(())
        })
        .await?;
        let c: Checksum = part.checksums.into();
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(part.etag)),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    /// The lock of the upload in `dir` (`uploads/<id>`, or it renamed `<id>.<state>`).
    fn upload_lock(&self, dir: &Path) -> &tokio::sync::RwLock<()> {
        let id = dir.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        self.locks.of("uploads/", id)
    }

    /// Rename the upload directory `from` to `to` under the upload's lock.
    async fn move_upload(&self, from: &Path, to: &Path) -> S3Result<()> {
        let _guard = self.upload_lock(from).write().await;
        match tokio::fs::rename(from, to).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(s3_error!(NoSuchUpload)),
            Err(e) => Err(internal(e, "move upload")),
        }
    }

    pub(super) async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let dir = self.layout.upload_dir(&input.upload_id)?;
        read_upload(&dir, &input.bucket, &input.key)?;
        let frozen = dir.with_extension("completing");
        self.move_upload(&dir, &frozen).await?;
        match self.finish_upload(&frozen, input).await {
            Ok(out) => {
                if let Err(e) = tokio::fs::remove_dir_all(&frozen).await {
                    tracing::warn!(dir = %frozen.display(), %e, "object store: could not remove a completed upload");
                }
                Ok(S3Response::new(out))
            }
            Err(err) => {
                // Leave the upload as it was, so the client may retry or abort.
                if let Err(e) = self.move_upload(&frozen, &dir).await {
                    tracing::warn!(dir = %frozen.display(), %e, "object store: could not reopen an upload");
                }
                Err(err)
            }
        }
    }

    async fn finish_upload(&self, dir: &Path, input: CompleteMultipartUploadInput) -> S3Result<CompleteMultipartUploadOutput> {
        let info = read_upload(dir, &input.bucket, &input.key)?;
        let wanted = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        let (dir, staging) = (dir.to_owned(), self.layout.staging.clone());
        let (temp, parts) = blocking(move || {
            let parts = check_parts(&dir, &wanted)?;
            let temp = concatenate(&dir, &staging, &wanted).map_err(|e| internal(e, "concatenate parts"))?;
            Ok((temp, parts))
        })
        .await?;

        let mut md5s = md5::Md5::new();
        for part in &parts {
            md5s.update(hex::decode(&part.etag).map_err(|e| internal(e, "part ETag"))?);
        }
        let checksums = info.checksum_algorithm.as_deref().map(|a| composite(a, &parts)).unwrap_or_default();
        let meta = Meta {
            size: parts.iter().map(|p| p.size).sum(),
            etag: format!("{}-{}", hex::encode(md5s.finalize()), parts.len()),
            checksums,
            ..info.meta
        };
        let pre = Precondition { if_match: input.if_match, if_none_match: input.if_none_match };
        let meta = self.commit(&input.bucket, &input.key, temp, meta, pre).await?;
        let c: Checksum = meta.checksums.into();
        Ok(CompleteMultipartUploadOutput {
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(meta.etag)),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            checksum_type: c.checksum_type,
            ..Default::default()
        })
    }

    pub(super) async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let dir = self.layout.upload_dir(&input.upload_id)?;
        read_upload(&dir, &input.bucket, &input.key)?;
        let gone = dir.with_extension(format!("aborted-{}", uuid::Uuid::new_v4()));
        self.move_upload(&dir, &gone).await?;
        tokio::fs::remove_dir_all(&gone).await.map_err(|e| internal(e, "abort upload"))?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let dir = self.layout.upload_dir(&input.upload_id)?;
        let info = read_upload(&dir, &input.bucket, &input.key)?;
        let after = input.part_number_marker.unwrap_or(0);
        let max = usize::try_from(input.max_parts.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000);
        let mut parts = blocking(move || {
            let mut parts = Vec::new();
            for number in (after + 1)..=MAX_PART_NUMBER {
                let (_, json) = part_paths(&dir, number);
                match read_json::<PartInfo>(&json) {
                    Ok(p) => parts.push((number, p)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(internal(e, "read part")),
                }
                if parts.len() > max {
                    break;
                }
            }
            Ok(parts)
        })
        .await?;
        let truncated = parts.len() > max;
        parts.truncate(max);
        let next = parts.last().map(|(n, _)| *n);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            checksum_algorithm: info.checksum_algorithm.map(ChecksumAlgorithm::from),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            parts: Some(
                parts
                    .into_iter()
                    .map(|(number, p)| {
                        let c: Checksum = p.checksums.into();
                        Part {
                            part_number: Some(number),
                            size: i64::try_from(p.size).ok(),
                            e_tag: Some(ETag::Strong(p.etag)),
                            last_modified: Some(Meta { last_modified_ms: p.last_modified_ms, ..Meta::default() }.last_modified()),
                            checksum_crc32: c.checksum_crc32,
                            checksum_crc32c: c.checksum_crc32c,
                            checksum_crc64nvme: c.checksum_crc64nvme,
                            checksum_sha1: c.checksum_sha1,
                            checksum_sha256: c.checksum_sha256,
                        }
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}

/// The stored parts the client listed, after checking the list: ascending part
/// numbers, every part present with the ETag and checksums the client names,
/// every part but the last at least 5 MiB.
fn check_parts(dir: &Path, wanted: &[CompletedPart]) -> S3Result<Vec<PartInfo>> {
    if wanted.is_empty() {
        return Err(s3_error!(MalformedXML, "CompleteMultipartUpload needs at least one part"));
    }
    let mut parts = Vec::with_capacity(wanted.len());
    let mut previous = 0;
    for (i, want) in wanted.iter().enumerate() {
        let number = want.part_number.ok_or_else(|| s3_error!(InvalidPart, "a part has no PartNumber"))?;
        if number <= previous {
            return Err(s3_error!(InvalidPartOrder, "part numbers must be in ascending order"));
        }
        previous = number;
        let (_, json) = part_paths(dir, number);
        let part: PartInfo = match read_json(&json) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(s3_error!(InvalidPart, "part {number} was not uploaded")),
            Err(e) => return Err(internal(e, "read part")),
        };
        if want.e_tag.as_ref().is_some_and(|e| e.value().trim_matches('"') != part.etag) {
            return Err(s3_error!(InvalidPart, "part {number}: the ETag does not match the uploaded part"));
        }
        let declared = Checksum {
            checksum_crc32: want.checksum_crc32.clone(),
            checksum_crc32c: want.checksum_crc32c.clone(),
            checksum_crc64nvme: want.checksum_crc64nvme.clone(),
            checksum_sha1: want.checksum_sha1.clone(),
            checksum_sha256: want.checksum_sha256.clone(),
            checksum_type: None,
        };
        if let Some(header) = ingest::mismatch(&declared, &part.checksums.clone().into()) {
            return Err(s3_error!(InvalidPart, "part {number}: the {header} does not match the uploaded part"));
        }
        if i + 1 < wanted.len() && part.size < MIN_PART_SIZE {
            return Err(s3_error!(EntityTooSmall, "part {number} is smaller than 5 MiB and not the last part"));
        }
        parts.push(part);
    }
    Ok(parts)
}

/// Copy the listed parts, in order, into one synced staging file.
fn concatenate(dir: &Path, staging: &Path, wanted: &[CompletedPart]) -> io::Result<tempfile::TempPath> {
    let (mut out, temp) = tempfile::Builder::new().prefix("multipart-").tempfile_in(staging)?.into_parts();
    for want in wanted {
        let (data, _) = part_paths(dir, want.part_number.unwrap_or_default());
        io::copy(&mut std::fs::File::open(data)?, &mut out)?;
    }
    out.sync_all()?;
    Ok(temp)
}

/// S3's COMPOSITE checksum: the algorithm over the parts' raw digests, then `-N`.
/// Empty when a part lacks the digest.
fn composite(algorithm: &str, parts: &[PartInfo]) -> Checksums {
    fn over<C: s3s::crypto::Checksum>(digests: &[Vec<u8>]) -> Vec<u8> {
        let mut c = C::new();
        digests.iter().for_each(|d| c.update(d));
        c.finalize().as_ref().to_vec()
    }
    let stored = |p: &PartInfo| -> Option<String> {
        let c = &p.checksums;
        match algorithm {
            ChecksumAlgorithm::CRC32 => c.crc32.clone(),
            ChecksumAlgorithm::CRC32C => c.crc32c.clone(),
            ChecksumAlgorithm::CRC64NVME => c.crc64nvme.clone(),
            ChecksumAlgorithm::SHA1 => c.sha1.clone(),
            ChecksumAlgorithm::SHA256 => c.sha256.clone(),
            _ => None,
        }
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let digests: Option<Vec<Vec<u8>>> = parts.iter().map(|p| stored(p).and_then(|v| b64.decode(v).ok())).collect();
    let Some(digests) = digests else { return Checksums::default() };
    let value = |raw: Vec<u8>| Some(format!("{}-{}", b64.encode(raw), parts.len()));
    let mut out = Checksums { checksum_type: Some(ChecksumType::COMPOSITE.to_owned()), ..Checksums::default() };
    match algorithm {
        ChecksumAlgorithm::CRC32 => out.crc32 = value(over::<Crc32>(&digests)),
        ChecksumAlgorithm::CRC32C => out.crc32c = value(over::<Crc32c>(&digests)),
        ChecksumAlgorithm::CRC64NVME => out.crc64nvme = value(over::<Crc64Nvme>(&digests)),
        ChecksumAlgorithm::SHA1 => out.sha1 = value(over::<Sha1>(&digests)),
        ChecksumAlgorithm::SHA256 => out.sha256 = value(over::<Sha256>(&digests)),
        _ => return Checksums::default(),
    }
    out
}
