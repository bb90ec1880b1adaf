//! Requests `object_store` will not send (wrong digests, odd keys, bucket calls),
//! signed with `object_store`'s own SigV4 signer and sent with reqwest.

use base64::Engine as _;
use md5::Digest as _;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpRequest, HttpRequestBody};
use reqwest::{Method, StatusCode};
use sha2::Sha256;

use super::{pattern, Fixture, ACCESS_KEY, BUCKET, SECRET_KEY};

struct Raw<'a> {
    fx: &'a Fixture,
    secret: &'a str,
}

struct Reply {
    status: StatusCode,
    data: Vec<u8>,
    body: String,
}

impl Reply {
    /// The `<Code>` of an S3 error body.
    fn code(&self) -> &str {
        let start = self.body.find("<Code>").map_or(0, |i| i + 6);
        let end = self.body[start..].find("</Code>").map_or(start, |i| start + i);
        &self.body[start..end]
    }

    fn tag(&self, name: &str) -> String {
        let open = format!("<{name}>");
        let start = self.body.find(&open).unwrap_or_else(|| panic!("no <{name}> in {}", self.body)) + open.len();
        let end = self.body[start..].find(&format!("</{name}>")).unwrap() + start;
        self.body[start..end].to_owned()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl<'a> Raw<'a> {
    fn new(fx: &'a Fixture) -> Self {
        Raw { fx, secret: SECRET_KEY }
    }

    /// Sign and send; `content_sha256` overrides the payload hash that is signed.
    async fn send(&self, method: Method, path: &str, headers: &[(&str, String)], body: Vec<u8>, content_sha256: Option<[u8; 32]>) -> Reply {
        let url = format!("{}{path}", self.fx.server.endpoint());
        let mut req = HttpRequest::new(HttpRequestBody::from(body.clone()));
        *req.method_mut() = method.clone();
        *req.uri_mut() = url.parse().unwrap();
        for (name, value) in headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
            req.headers_mut().insert(name, value.parse().unwrap());
        }
        let credential = AwsCredential { key_id: ACCESS_KEY.to_owned(), secret_key: self.secret.to_owned(), token: None };
        AwsAuthorizer::new(&credential, "s3", "us-east-1").authorize(&mut req, content_sha256.as_ref().map(|d| &d[..]));
        let mut send = reqwest::Client::new().request(method, url).body(body);
        for (name, value) in req.headers() {
            send = send.header(name, value);
        }
        let resp = send.send().await.unwrap();
        let status = resp.status();
        let data = resp.bytes().await.unwrap().to_vec();
        Reply { status, body: String::from_utf8_lossy(&data).into_owned(), data }
    }

    async fn put(&self, key: &str, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
        self.send(Method::PUT, &format!("/{BUCKET}/{key}"), headers, body, None).await
    }

    async fn head(&self, key: &str) -> StatusCode {
        self.send(Method::HEAD, &format!("/{BUCKET}/{key}"), &[], Vec::new(), None).await.status
    }
}

#[tokio::test]
async fn wrong_content_md5_is_bad_digest_and_stores_nothing() {
    let fx = Fixture::start();
    let raw = Raw::new(&fx);
    let body = pattern(1, 100_000);
    let wrong = b64(&md5::Md5::digest(b"something else"));
    let reply = raw.put("clips/a.wav", &[("content-md5", wrong)], body.clone()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "BadDigest"), "{}", reply.body);
    assert_eq!(raw.head("clips/a.wav").await, StatusCode::NOT_FOUND);
    assert!(fx.staging_files().is_empty());

    let right = b64(&md5::Md5::digest(&body));
    let reply = raw.put("clips/a.wav", &[("content-md5", right)], body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(raw.head("clips/a.wav").await, StatusCode::OK);
}

#[tokio::test]
async fn wrong_checksums_are_bad_digest_and_keep_the_old_object() {
    let fx = Fixture::start();
    let raw = Raw::new(&fx);
    let body = pattern(2, 64 * 1024);
    let cases = [
        ("x-amz-checksum-sha256", b64(&Sha256::digest(b"not the body"))),
        ("x-amz-checksum-crc32", b64(&[0, 0, 0, 0])),
        ("x-amz-checksum-crc32c", b64(&[1, 2, 3, 4])),
        ("x-amz-checksum-sha1", b64(&[9; 20])),
    ];
    for (header, wrong) in cases {
        let reply = raw.put("frames/new.jpg", &[(header, wrong)], body.clone()).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "BadDigest"), "{header}: {}", reply.body);
        assert_eq!(raw.head("frames/new.jpg").await, StatusCode::NOT_FOUND, "{header}");
    }
    let malformed = raw.put("frames/new.jpg", &[("x-amz-checksum-sha256", "abc".to_owned())], body.clone()).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST, "{}", malformed.body);

    // A failed overwrite leaves the previous object intact.
    let right = b64(&Sha256::digest(&body));
    assert_eq!(raw.put("frames/old.jpg", &[("x-amz-checksum-sha256", right)], body.clone()).await.status, StatusCode::OK);
    let reply = raw.put("frames/old.jpg", &[("x-amz-checksum-sha256", b64(&[0; 32]))], pattern(3, 10)).await;
    assert_eq!(reply.code(), "BadDigest");
    let got = raw.send(Method::GET, &format!("/{BUCKET}/frames/old.jpg"), &[], Vec::new(), None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.data == body, "the failed overwrite changed the stored object");
    assert!(fx.staging_files().is_empty());
}

#[tokio::test]
async fn right_checksums_are_accepted_and_returned_on_request() {
    let fx = Fixture::start();
    let raw = Raw::new(&fx);
    let body = b"checksummed".to_vec();
    let sha = b64(&Sha256::digest(&body));
    let crc = b64(&crc32(&body).to_be_bytes());
    let reply = raw.put("c.txt", &[("x-amz-checksum-sha256", sha.clone()), ("x-amz-checksum-crc32", crc)], body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let head = reqwest_head_with_mode(&raw, "c.txt").await;
    assert_eq!(head.as_deref(), Some(sha.as_str()));
}

async fn reqwest_head_with_mode(raw: &Raw<'_>, key: &str) -> Option<String> {
    let url = format!("{}/{BUCKET}/{key}", raw.fx.server.endpoint());
    let mut req = HttpRequest::new(HttpRequestBody::empty());
    *req.method_mut() = Method::HEAD;
    *req.uri_mut() = url.parse().unwrap();
    req.headers_mut().insert("x-amz-checksum-mode", "ENABLED".parse().unwrap());
    let credential = AwsCredential { key_id: ACCESS_KEY.to_owned(), secret_key: SECRET_KEY.to_owned(), token: None };
    AwsAuthorizer::new(&credential, "s3", "us-east-1").authorize(&mut req, None);
    let mut send = reqwest::Client::new().head(url);
    for (name, value) in req.headers() {
        send = send.header(name, value);
    }
    let resp = send.send().await.unwrap();
    resp.headers().get("x-amz-checksum-sha256").map(|v| v.to_str().unwrap().to_owned())
}

/// CRC-32 (IEEE), bitwise; only to build test headers.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[tokio::test]
async fn wrong_signed_payload_hash_is_rejected_and_stores_nothing() {
    let fx = Fixture::start();
    let raw = Raw::new(&fx);
    let body = pattern(4, 200_000);
    let wrong: [u8; 32] = Sha256::digest(b"another payload").into();
    let reply = raw.send(Method::PUT, &format!("/{BUCKET}/p.bin"), &[], body, Some(wrong)).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "XAmzContentSHA256Mismatch"), "{}", reply.body);
    assert_eq!(raw.head("p.bin").await, StatusCode::NOT_FOUND);
    assert!(fx.staging_files().is_empty());
}

#[tokio::test]
async fn wrong_part_checksum_is_bad_digest_and_the_part_does_not_count() {
    let fx = Fixture::start();
    let raw = Raw::new(&fx);
    let key = "videos/big.mp4";
    let created = raw.send(Method::POST, &format!("/{BUCKET}/{key}?uploads"), &[("x-amz-checksum-algorithm", "SHA256".into())], Vec::new(), None).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let upload_id = created.tag("UploadId");
    let part_path = format!("/{BUCKET}/{key}?partNumber=1&uploadId={upload_id}");
    let part = pattern(5, 1 << 20);

    let bad = raw.send(Method::PUT, &part_path, &[("x-amz-checksum-sha256", b64(&[7; 32]))], part.clone(), None).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "BadDigest"), "{}", bad.body);
    let bad_md5 = raw.send(Method::PUT, &part_path, &[("content-md5", b64(&[7; 16]))], part.clone(), None).await;
    assert_eq!(bad_md5.code(), "BadDigest", "{}", bad_md5.body);
    let listed = raw.send(Method::GET, &format!("/{BUCKET}/{key}?uploadId={upload_id}"), &[], Vec::new(), None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert!(!listed.body.contains("<Part>"), "a rejected part was kept: {}", listed.body);

    let etag = format!("\"{}\"", hex::encode(md5::Md5::digest(&part)));
    let complete_body = format!("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>");
    let complete_path = format!("/{BUCKET}/{key}?uploadId={upload_id}");
    let early = raw.send(Method::POST, &complete_path, &[], complete_body.clone().into_bytes(), None).await;
    assert_eq!((early.status, early.code()), (StatusCode::BAD_REQUEST, "InvalidPart"), "{}", early.body);
    assert_eq!(raw.head(key).await, StatusCode::NOT_FOUND);

    let good = raw.send(Method::PUT, &part_path, &[("x-amz-checksum-sha256", b64(&Sha256::digest(&part)))], part.clone(), None).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    let wrong_etag = complete_body.replace(&etag[1..9], "00000000");
    let mismatch = raw.send(Method::POST, &complete_path, &[], wrong_etag.into_bytes(), None).await;
    assert_eq!(mismatch.code(), "InvalidPart", "{}", mismatch.body);
    let done = raw.send(Method::POST, &complete_path, &[], complete_body.into_bytes(), None).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.tag("ETag").ends_with("-1&quot;") || done.tag("ETag").ends_with("-1\""), "{}", done.body);
    assert_eq!(raw.head(key).await, StatusCode::OK);
}

#[tokio::test]
async fn small_middle_part_is_entity_too_small() {
    let fx = Fixture::start();
    let raw = Raw::new(&fx);
    let key = "small.bin";
    let upload_id = raw.send(Method::POST, &format!("/{BUCKET}/{key}?uploads"), &[], Vec::new(), None).await.tag("UploadId");
    let mut xml = String::from("<CompleteMultipartUpload>");
    for n in 1..=2 {
        let part = pattern(n, 1000);
        let path = format!("/{BUCKET}/{key}?partNumber={n}&uploadId={upload_id}");
        assert_eq!(raw.send(Method::PUT, &path, &[], part.clone(), None).await.status, StatusCode::OK);
        xml += &format!("<Part><PartNumber>{n}</PartNumber><ETag>\"{}\"</ETag></Part>", hex::encode(md5::Md5::digest(&part)));
    }
    xml += "</CompleteMultipartUpload>";
    let reply = raw.send(Method::POST, &format!("/{BUCKET}/{key}?uploadId={upload_id}"), &[], xml.into_bytes(), None).await;
    assert_eq!(reply.code(), "EntityTooSmall", "{}", reply.body);
}

#[tokio::test]
async fn wrong_secret_and_unsigned_requests_get_403() {
    let fx = Fixture::start();
    let wrong = Raw { fx: &fx, secret: "wrong-secret" };
    let reply = wrong.put("k", &[], b"v".to_vec()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "SignatureDoesNotMatch"), "{}", reply.body);
    let anonymous = reqwest::Client::new().put(format!("{}/{BUCKET}/k", fx.server.endpoint())).body("v").send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::FORBIDDEN);
    assert_eq!(Raw::new(&fx).head("k").await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn keys_that_would_leave_the_bucket_are_invalid() {
    let fx = Fixture::start();
    let raw = Raw::new(&fx);
    // HTTP clients resolve `.` and `..` segments before sending; the backend test
    // `keys_that_could_escape_the_bucket_are_refused` covers those.
    for key in ["a//b", "trailing/", "nul%00byte"] {
        let reply = raw.put(key, &[], b"x".to_vec()).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "InvalidArgument"), "{key}: {}", reply.body);
    }
    assert!(fx.staging_files().is_empty());
}

#[tokio::test]
async fn bucket_lifecycle() {
    let fx = Fixture::start();
    let raw = Raw::new(&fx);
    assert_eq!(raw.send(Method::HEAD, "/scratch", &[], Vec::new(), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(raw.send(Method::PUT, "/scratch", &[], Vec::new(), None).await.status, StatusCode::OK);
    assert_eq!(raw.send(Method::PUT, "/scratch", &[], Vec::new(), None).await.code(), "BucketAlreadyOwnedByYou");
    assert_eq!(raw.send(Method::HEAD, "/scratch", &[], Vec::new(), None).await.status, StatusCode::OK);
    let listed = raw.send(Method::GET, "/", &[], Vec::new(), None).await;
    assert!(listed.body.contains("<Name>scratch</Name>") && listed.body.contains(&format!("<Name>{BUCKET}</Name>")), "{}", listed.body);

    assert_eq!(raw.send(Method::PUT, "/scratch/deep/obj", &[], b"x".to_vec(), None).await.status, StatusCode::OK);
    let busy = raw.send(Method::DELETE, "/scratch", &[], Vec::new(), None).await;
    assert_eq!((busy.status, busy.code()), (StatusCode::CONFLICT, "BucketNotEmpty"), "{}", busy.body);
    assert_eq!(raw.send(Method::DELETE, "/scratch/deep/obj", &[], Vec::new(), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(raw.send(Method::DELETE, "/scratch", &[], Vec::new(), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(raw.send(Method::HEAD, "/scratch", &[], Vec::new(), None).await.status, StatusCode::NOT_FOUND);
    let missing = raw.put("k", &[], Vec::new()).await;
    assert_eq!(missing.status, StatusCode::OK, "{}", missing.body);
    let no_bucket = raw.send(Method::PUT, "/nobucket/k", &[], b"x".to_vec(), None).await;
    assert_eq!(no_bucket.code(), "NoSuchBucket", "{}", no_bucket.body);
}
