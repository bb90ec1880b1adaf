//! Receive one request body (PutObject, UploadPart) into a staging file while
//! hashing it, then check every digest the client declared. Only a body that
//! passed all checks leaves here; anything else deletes its temp file.
//!
//! `x-amz-content-sha256` with a concrete hash is verified by s3s itself
//! (`sig_v4::UploadStream` fails the body stream at its end); that failure is
//! reported here as `XAmzContentSHA256Mismatch`. A client that declares the
//! same digest as `x-amz-checksum-sha256` (object_store does) has it checked
//! by that verification alone: the body is not hashed a second time.

use std::path::Path;

use http::{HeaderMap, StatusCode};
use base64::Engine as _;
use futures::StreamExt as _;
use md5::Digest as _;
use s3s::checksum::ChecksumHasher;
use s3s::dto::{Checksum, ChecksumAlgorithm, StreamingBlob};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result, TrailingHeaders};
use tokio::io::AsyncWriteExt as _;

use super::layout::{internal, Checksums};

const WRITE_BUFFER: usize = 1 << 20;

/// Digests a request promises for its body.
#[derive(Debug, Default)]
pub(super) struct Declared {
    /// `Content-MD5`, base64.
    pub content_md5: Option<String>,
    /// `x-amz-checksum-*` headers, base64 (trailer values are added after the body).
    pub checksum: Checksum,
    /// `x-amz-checksum-algorithm` / `x-amz-sdk-checksum-algorithm`: compute and store it.
    pub algorithm: Option<ChecksumAlgorithm>,
    /// `x-amz-trailer`: a checksum that arrives after the body.
    pub trailer: Option<String>,
    /// `x-amz-content-sha256` when it is a digest (s3s verifies it).
    pub content_sha256: Option<[u8; 32]>,
}

impl Declared {
    pub fn from_headers(headers: &HeaderMap, content_md5: Option<String>, checksum: Checksum, algorithm: Option<ChecksumAlgorithm>) -> Self {
        let algorithm = algorithm.or_else(|| {
            let sdk = headers.get("x-amz-sdk-checksum-algorithm")?.to_str().ok()?;
            Some(ChecksumAlgorithm::from(sdk.to_ascii_uppercase()))
        });
        let trailer = headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let content_sha256 = headers
            .get("x-amz-content-sha256")
            .and_then(|v| hex::decode(v.as_bytes()).ok())
            .and_then(|digest| <[u8; 32]>::try_from(digest).ok());
        Self { content_md5, checksum, algorithm, trailer, content_sha256 }
    }

    /// Whether the declared `x-amz-checksum-sha256` is the signed payload
    /// digest, which s3s verifies over the same bytes.
    fn sha256_verified_by_signature(&self) -> bool {
        let declared = self.checksum.checksum_sha256.as_deref().and_then(|v| decode_digest(v, 32));
        matches!((declared, &self.content_sha256), (Some(declared), Some(signed)) if declared == signed)
    }
}

/// A body that matched everything declared, waiting in staging to be renamed.
#[derive(Debug)]
pub(super) struct Staged {
    pub temp: tempfile::TempPath,
    pub size: u64,
    pub md5: [u8; 16],
    /// Computed checksums of the declared algorithms.
    pub checksums: Checksums,
}

impl Staged {
    pub fn etag(&self) -> String {
        hex::encode(self.md5)
    }
}

/// Algorithms S3 knows, with their header name and digest length in bytes.
const ALGORITHMS: [(&str, &str, usize); 5] = [
    (ChecksumAlgorithm::CRC32, "x-amz-checksum-crc32", 4),
    (ChecksumAlgorithm::CRC32C, "x-amz-checksum-crc32c", 4),
    (ChecksumAlgorithm::CRC64NVME, "x-amz-checksum-crc64nvme", 8),
    (ChecksumAlgorithm::SHA1, "x-amz-checksum-sha1", 20),
    (ChecksumAlgorithm::SHA256, "x-amz-checksum-sha256", 32),
];

fn slot<'a>(c: &'a mut Checksum, algorithm: &str) -> &'a mut Option<String> {
    match algorithm {
        ChecksumAlgorithm::CRC32 => &mut c.checksum_crc32,
        ChecksumAlgorithm::CRC32C => &mut c.checksum_crc32c,
        ChecksumAlgorithm::CRC64NVME => &mut c.checksum_crc64nvme,
        ChecksumAlgorithm::SHA1 => &mut c.checksum_sha1,
        _ => &mut c.checksum_sha256,
    }
}

/// Hashers for every checksum declared, but a SHA-256 that `signed_sha256`
/// says s3s verifies already.
fn hasher_for(declared: &Declared, signed_sha256: bool) -> S3Result<ChecksumHasher> {
    let mut hasher = ChecksumHasher::default();
    let mut declared_checksum = declared.checksum.clone();
    for (algorithm, header, _) in ALGORITHMS {
        if algorithm == ChecksumAlgorithm::SHA256 && signed_sha256 {
            continue;
        }
        let wanted = slot(&mut declared_checksum, algorithm).is_some()
            || declared.algorithm.as_ref().is_some_and(|a| a.as_str() == algorithm)
            || declared.trailer.as_deref() == Some(header);
        if wanted {
            match algorithm {
                ChecksumAlgorithm::CRC32 => hasher.crc32 = Some(Default::default()),
                ChecksumAlgorithm::CRC32C => hasher.crc32c = Some(Default::default()),
                ChecksumAlgorithm::CRC64NVME => hasher.crc64nvme = Some(Default::default()),
                ChecksumAlgorithm::SHA1 => hasher.sha1 = Some(Default::default()),
                _ => hasher.sha256 = Some(Default::default()),
            }
        }
    }
    if let Some(a) = &declared.algorithm {
        if !ALGORITHMS.iter().any(|(name, _, _)| *name == a.as_str()) {
            return Err(s3_error!(InvalidRequest, "checksum algorithm `{}` is not supported", a.as_str()));
        }
    }
    Ok(hasher)
}

/// Decode a base64 digest of `len` bytes; `None` if it is not one.
pub(super) fn decode_digest(value: &str, len: usize) -> Option<Vec<u8>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
    (bytes.len() == len).then_some(bytes)
}

/// Stream `body` into a new file in `staging`, hashing as it goes, and verify it.
pub(super) async fn receive(
    staging: &Path,
    body: StreamingBlob,
    mut declared: Declared,
    trailers: Option<TrailingHeaders>,
) -> S3Result<Staged> {
    let content_md5 = match &declared.content_md5 {
        Some(v) => Some(decode_digest(v, 16).ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 `{v}` is not a base64 MD5"))?),
        None => None,
    };
    check_declared_format(&mut declared.checksum)?;
    // Decided before any trailer adds checksums: those are always computed.
    let signed_sha256 = declared.sha256_verified_by_signature();
    let mut hasher = hasher_for(&declared, signed_sha256)?;

    let staging = staging.to_owned();
    let temp = tokio::task::spawn_blocking(move || tempfile::Builder::new().prefix("body-").tempfile_in(staging))
        .await
        .map_err(|e| internal(e, "create staging file"))?
        .map_err(|e| internal(e, "create staging file"))?;
    let (file, temp) = temp.into_parts();
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file));

    let mut md5 = md5::Md5::new();
    let mut size = 0u64;
    let mut body = body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(body_error)?;
        md5.update(&chunk);
        hasher.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk).await.map_err(|e| internal(e, "write staging file"))?;
    }
    out.flush().await.map_err(|e| internal(e, "write staging file"))?;
    out.into_inner().sync_all().await.map_err(|e| internal(e, "sync staging file"))?;

    if let Some(headers) = trailers.and_then(|t| t.take()) {
        for (algorithm, header, _) in ALGORITHMS {
            if let Some(v) = headers.get(header) {
                let v = v.to_str().map_err(|_| s3_error!(InvalidRequest, "trailer {header} is not text"))?;
                *slot(&mut declared.checksum, algorithm) = Some(v.to_owned());
            }
        }
        check_declared_format(&mut declared.checksum)?;
    }

    let md5: [u8; 16] = md5.finalize().into();
    if content_md5.is_some_and(|want| want != md5) {
        return Err(s3_error!(BadDigest, "the Content-MD5 you specified did not match what was received"));
    }
    let mut computed = hasher.finalize();
    if signed_sha256 {
        // The stream ended without s3s's mismatch error: the body has this digest.
        computed.checksum_sha256 = declared.checksum.checksum_sha256.clone();
    }
    if let Some(header) = mismatch(&declared.checksum, &computed) {
        return Err(s3_error!(BadDigest, "the {header} you specified did not match what was received"));
    }
    Ok(Staged { temp, size, md5, checksums: computed.into() })
}

/// Header name of the first checksum in `declared` that `actual` lacks or disagrees with.
pub(super) fn mismatch(declared: &Checksum, actual: &Checksum) -> Option<&'static str> {
    let (mut declared, mut actual) = (declared.clone(), actual.clone());
    ALGORITHMS.into_iter().find_map(|(algorithm, header, len)| {
        let want = slot(&mut declared, algorithm).as_deref().map(|v| decode_digest(v, len))?;
        let got = slot(&mut actual, algorithm).as_deref().and_then(|v| decode_digest(v, len));
        (want.is_none() || want != got).then_some(header)
    })
}

/// Reject declared checksums that are not base64 digests of the right length.
fn check_declared_format(checksum: &mut Checksum) -> S3Result<()> {
    for (algorithm, header, len) in ALGORITHMS {
        if let Some(v) = slot(checksum, algorithm) {
            if decode_digest(v, len).is_none() {
                return Err(s3_error!(InvalidRequest, "value for {header} header is invalid"));
            }
        }
    }
    Ok(())
}

/// Map a failed body stream to the S3 error a client expects. s3s's payload
/// verifier is private, so its SHA-256 failure is recognised by name.
fn body_error(err: s3s::StdError) -> S3Error {
    let text = err.to_string();
    if text.contains("Sha256Mismatch") {
        let code: S3ErrorCode = "XAmzContentSHA256Mismatch".parse().unwrap_or(S3ErrorCode::BadDigest);
        let mut e = S3Error::with_message(code, "the provided x-amz-content-sha256 does not match what was computed");
        e.set_status_code(StatusCode::BAD_REQUEST);
        return e;
    }
    s3_error!(IncompleteBody, "request body ended early: {text}")
}
