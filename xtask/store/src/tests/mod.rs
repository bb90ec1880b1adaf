//! The store through the client the stages use: `object_store`'s `AmazonS3`.

mod raw;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use md5::Digest as _;
use object_store::aws::{AmazonS3, AmazonS3Builder, Checksum};
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, Attributes, GetOptions, GetRange, ObjectStore, PutMode, PutOptions, PutPayload};

use s3s::dto::{GetObjectInput, PutObjectInput, StreamingBlob};
use s3s::{S3Request, S3};

use super::{RunningStore, Store};

pub(super) const ACCESS_KEY: &str = "local-access";
pub(super) const SECRET_KEY: &str = "local-secret-key";
pub(super) const BUCKET: &str = "media";

pub(super) struct Fixture {
    pub root: tempfile::TempDir,
    pub server: RunningStore,
}

impl Fixture {
    pub fn start() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let server = Store::start(root.path(), "127.0.0.1:0".parse().unwrap(), ACCESS_KEY, SECRET_KEY).unwrap();
        server.ensure_bucket(BUCKET).unwrap();
        Fixture { root, server }
    }

    pub fn client_with(&self, access_key: &str, secret_key: &str) -> AmazonS3 {
        let retry = object_store::RetryConfig { max_retries: 0, ..Default::default() };
        AmazonS3Builder::new()
            .with_endpoint(self.server.endpoint())
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(access_key)
            .with_secret_access_key(secret_key)
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_checksum_algorithm(Checksum::SHA256)
            .with_retry(retry)
            .build()
            .unwrap()
    }

    pub fn client(&self) -> AmazonS3 {
        self.client_with(ACCESS_KEY, SECRET_KEY)
    }

    /// The stages' own store client, with `secret_key`.
    pub fn stages_client(&self, secret_key: &str) -> stage_runtime::Store {
        stages_client_at(self.server.endpoint(), secret_key)
    }

    /// Files left in the staging directory (there must be none between requests).
    pub fn staging_files(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(self.root.path().join("staging")).unwrap().map(|e| e.unwrap().path()).collect()
    }
}

/// The stages' own store client for the store at `endpoint`.
fn stages_client_at(endpoint: String, secret_key: &str) -> stage_runtime::Store {
    stage_runtime::Store::new(&stage_runtime::StoreConfig {
        endpoint,
        bucket: BUCKET.into(),
        region: "us-east-1".into(),
        access_key: ACCESS_KEY.into(),
        secret_key: secret_key.into(),
    })
    .unwrap()
}

pub(super) fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::Md5::digest(data))
}

/// Deterministic, position-dependent bytes, distinct per `seed`.
pub(super) fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

#[tokio::test]
async fn put_get_head_list_delete_round_trip() {
    let fx = Fixture::start();
    let s3 = fx.client();
    let data = pattern(1, 300_000);
    let path = ObjectPath::from("jobs/42/audio.wav");
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, "audio/wav".into());
    attributes.insert(Attribute::Metadata("stage".into()), "extract-audio".into());
    let opts = PutOptions { attributes, ..Default::default() };
    let put = s3.put_opts(&path, PutPayload::from(data.clone()), opts).await.unwrap();
    assert_eq!(put.e_tag.as_deref(), Some(format!("\"{}\"", md5_hex(&data)).as_str()));

    let got = s3.get(&path).await.unwrap();
    assert_eq!(got.attributes.get(&Attribute::ContentType).map(|v| v.as_ref()), Some("audio/wav"));
    assert_eq!(got.attributes.get(&Attribute::Metadata("stage".into())).map(|v| v.as_ref()), Some("extract-audio"));
    assert_eq!(got.bytes().await.unwrap(), data);

    let head = s3.head(&path).await.unwrap();
    assert_eq!((head.size, head.e_tag), (data.len() as u64, Some(format!("\"{}\"", md5_hex(&data)))));

    let range = s3.get_range(&path, 1000..5000).await.unwrap();
    assert_eq!(range, data[1000..5000]);
    let suffix = GetOptions { range: Some(GetRange::Suffix(10)), ..Default::default() };
    assert_eq!(s3.get_opts(&path, suffix).await.unwrap().bytes().await.unwrap(), data[data.len() - 10..]);

    s3.put(&ObjectPath::from("jobs/42/clips/0001.wav"), PutPayload::from_static(b"c1")).await.unwrap();
    s3.put(&ObjectPath::from("jobs/7/audio.wav"), PutPayload::from_static(b"other")).await.unwrap();
    let listed = s3.list_with_delimiter(Some(&ObjectPath::from("jobs/42"))).await.unwrap();
    let names: Vec<_> = listed.objects.iter().map(|o| o.location.to_string()).collect();
    assert_eq!(names, ["jobs/42/audio.wav"]);
    assert_eq!(listed.common_prefixes, [ObjectPath::from("jobs/42/clips")]);
    let all: Vec<_> = s3.list(Some(&ObjectPath::from("jobs"))).map_ok(|o| o.location.to_string()).try_collect().await.unwrap();
    assert_eq!(all, ["jobs/42/audio.wav", "jobs/42/clips/0001.wav", "jobs/7/audio.wav"]);

    s3.delete(&path).await.unwrap();
    assert!(matches!(s3.head(&path).await, Err(object_store::Error::NotFound { .. })));
    assert!(matches!(s3.get(&path).await, Err(object_store::Error::NotFound { .. })));
    assert!(fx.staging_files().is_empty());
}

#[tokio::test]
async fn listing_pages_through_more_than_a_thousand_keys() {
    let fx = Fixture::start();
    let s3 = Arc::new(fx.client());
    let keys: Vec<String> = (0..1234).map(|i| format!("frames/{:02}/{i:05}.jpg", i % 7)).collect();
    futures::stream::iter(keys.clone())
        .map(|k| {
            let s3 = s3.clone();
            async move { s3.put(&ObjectPath::from(k.as_str()), PutPayload::from(k.clone().into_bytes())).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let mut listed: Vec<String> = s3.list(Some(&ObjectPath::from("frames"))).map_ok(|o| o.location.to_string()).try_collect().await.unwrap();
    let mut expected = keys;
    expected.sort();
    assert_eq!(listed.len(), expected.len());
    listed.dedup();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn multipart_upload_round_trip() {
    let fx = Fixture::start();
    let s3 = fx.client();
    let path = ObjectPath::from("videos/input.mp4");
    let parts: Vec<Vec<u8>> = vec![pattern(10, 5 << 20), pattern(11, 5 << 20), pattern(12, 5 << 20), pattern(13, 123_457)];
    let mut upload = s3.put_multipart(&path).await.unwrap();
    for part in &parts {
        upload.put_part(PutPayload::from(part.clone())).await.unwrap();
    }
    let result = upload.complete().await.unwrap();

    let mut md5s = md5::Md5::new();
    parts.iter().for_each(|p| md5s.update(md5::Md5::digest(p)));
    let expected_etag = format!("\"{}-{}\"", hex::encode(md5s.finalize()), parts.len());
    assert_eq!(result.e_tag.as_deref(), Some(expected_etag.as_str()));

    let whole = parts.concat();
    let got = s3.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.len(), whole.len());
    assert!(got == whole, "multipart object differs from its parts");
    assert_eq!(s3.head(&path).await.unwrap().e_tag.as_deref(), Some(expected_etag.as_str()));
    assert!(fx.staging_files().is_empty());
    let uploads: Vec<_> = std::fs::read_dir(fx.root.path().join("uploads")).unwrap().collect();
    assert!(uploads.is_empty(), "completed upload left behind: {uploads:?}");
}

#[tokio::test]
async fn aborted_multipart_upload_leaves_nothing() {
    let fx = Fixture::start();
    let s3 = fx.client();
    let path = ObjectPath::from("videos/aborted.mp4");
    let mut upload = s3.put_multipart(&path).await.unwrap();
    upload.put_part(PutPayload::from(pattern(3, 1 << 20))).await.unwrap();
    upload.abort().await.unwrap();
    assert!(matches!(s3.head(&path).await, Err(object_store::Error::NotFound { .. })));
    assert_eq!(std::fs::read_dir(fx.root.path().join("uploads")).unwrap().count(), 0);
}

/// What a run that died left (an upload never completed, a staging file) is
/// gone when the store opens again; objects stay.
#[tokio::test]
async fn reopening_sweeps_what_a_dead_run_left() {
    let fx = Fixture::start();
    let s3 = fx.client();
    s3.put(&ObjectPath::from("kept"), PutPayload::from_static(b"kept")).await.unwrap();
    let mut upload = s3.put_multipart(&ObjectPath::from("videos/never-completed.mp4")).await.unwrap();
    upload.put_part(PutPayload::from(pattern(4, 1 << 20))).await.unwrap();
    std::fs::write(fx.root.path().join("staging/left-behind"), b"x").unwrap();
    let Fixture { root, server } = fx;
    server.shutdown().await.unwrap();
    assert_eq!(std::fs::read_dir(root.path().join("uploads")).unwrap().count(), 1, "the upload was there");

    let store = Store::open(root.path()).unwrap();
    assert_eq!(std::fs::read_dir(root.path().join("uploads")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(root.path().join("staging")).unwrap().count(), 0);
    let get = GetObjectInput { bucket: BUCKET.into(), key: "kept".into(), ..Default::default() };
    assert!(S3::get_object(&store, request(get)).await.is_ok(), "objects stay");
}

#[tokio::test]
async fn a_sweep_while_serving_removes_only_stale_leftovers() {
    let fx = Fixture::start();
    let s3 = fx.client();
    let mut stale = s3.put_multipart(&ObjectPath::from("videos/abandoned.mp4")).await.unwrap();
    stale.put_part(PutPayload::from(pattern(5, 1 << 20))).await.unwrap();
    let uploads = fx.root.path().join("uploads");
    let stale_dir = std::fs::read_dir(&uploads).unwrap().next().unwrap().unwrap().path();
    let mut fresh = s3.put_multipart(&ObjectPath::from("videos/in-flight.mp4")).await.unwrap();
    fresh.put_part(PutPayload::from(pattern(6, 5 << 20))).await.unwrap();
    let staging = fx.root.path().join("staging");
    std::fs::write(staging.join("body-stale"), b"x").unwrap();
    std::fs::write(staging.join("body-fresh"), b"x").unwrap();
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
    for path in [&stale_dir, &staging.join("body-stale")] {
        std::fs::File::open(path).unwrap().set_modified(two_days_ago).unwrap();
    }

    // The serving store's own sweep, as its periodic task runs it.
    assert_eq!(fx.server.store.sweep(super::STALE_AFTER).unwrap(), 2, "the abandoned upload and the old staging file");
    assert!(!stale_dir.exists());
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 1, "the upload in flight stays");
    assert!(staging.join("body-fresh").exists() && !staging.join("body-stale").exists());
    fresh.put_part(PutPayload::from(pattern(7, 1 << 20))).await.unwrap();
    fresh.complete().await.expect("the upload in flight completes after the sweep");
    assert_eq!(s3.get(&ObjectPath::from("videos/in-flight.mp4")).await.unwrap().bytes().await.unwrap().len(), 6 << 20);
}

#[tokio::test]
async fn concurrent_puts_to_same_and_different_keys_never_mix() {
    let fx = Fixture::start();
    let s3 = Arc::new(fx.client());
    let payloads: Vec<Vec<u8>> = (0..32).map(|i| pattern(100 + i, 256 * 1024 + i as usize * 4099)).collect();
    let mut tasks = Vec::new();
    for (i, data) in payloads.iter().enumerate() {
        for key in ["same/key.bin".to_owned(), format!("different/{i:02}.bin")] {
            let (s3, data) = (s3.clone(), data.clone());
            tasks.push(tokio::spawn(async move { s3.put(&ObjectPath::from(key.as_str()), PutPayload::from(data)).await }));
        }
    }
    // Meanwhile a reader must only ever see one whole payload with its own ETag.
    let reader = {
        let (s3, payloads) = (s3.clone(), payloads.clone());
        tokio::spawn(async move {
            let mut seen = 0;
            for _ in 0..40 {
                match s3.get(&ObjectPath::from("same/key.bin")).await {
                    Ok(got) => {
                        let etag = got.meta.e_tag.clone().unwrap();
                        let bytes = got.bytes().await.unwrap();
                        assert!(payloads.iter().any(|p| p.as_slice() == bytes), "read a partial or mixed object");
                        assert_eq!(etag, format!("\"{}\"", md5_hex(&bytes)), "ETag of another version");
                        seen += 1;
                    }
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            seen
        })
    };
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    reader.await.unwrap();
    for (i, data) in payloads.iter().enumerate() {
        let got = s3.get(&ObjectPath::from(format!("different/{i:02}.bin"))).await.unwrap().bytes().await.unwrap();
        assert!(got == data.as_slice(), "different/{i:02}.bin holds other bytes");
    }
    let same = s3.get(&ObjectPath::from("same/key.bin")).await.unwrap();
    let etag = same.meta.e_tag.clone().unwrap();
    let same = same.bytes().await.unwrap();
    let winner = payloads.iter().position(|p| p.as_slice() == same).expect("same/key.bin is not any one put's bytes");
    assert_eq!(etag, format!("\"{}\"", md5_hex(&payloads[winner])));
    assert!(fx.staging_files().is_empty());
}

#[tokio::test]
async fn conditional_create_refuses_an_existing_object() {
    let fx = Fixture::start();
    let s3 = fx.client();
    let path = ObjectPath::from("results/transcript.json");
    let create = || PutOptions { mode: PutMode::Create, ..Default::default() };
    s3.put_opts(&path, PutPayload::from_static(b"{}"), create()).await.unwrap();
    let again = s3.put_opts(&path, PutPayload::from_static(b"[]"), create()).await;
    assert!(matches!(again, Err(object_store::Error::AlreadyExists { .. })), "{again:?}");
    assert_eq!(s3.get(&path).await.unwrap().bytes().await.unwrap(), Bytes::from_static(b"{}"));
}

#[tokio::test]
async fn copy_duplicates_bytes_and_metadata() {
    let fx = Fixture::start();
    let s3 = fx.client();
    let (from, to) = (ObjectPath::from("a/src.bin"), ObjectPath::from("b/dst.bin"));
    let data = pattern(7, 70_000);
    s3.put(&from, PutPayload::from(data.clone())).await.unwrap();
    s3.copy(&from, &to).await.unwrap();
    assert_eq!(s3.get(&to).await.unwrap().bytes().await.unwrap(), data);
    assert_eq!(s3.head(&to).await.unwrap().e_tag, Some(format!("\"{}\"", md5_hex(&data))));
}

/// `x-amz-metadata-directive: REPLACE` gives the copy the request's
/// metadata; without it (COPY) the copy keeps the source's.
#[tokio::test]
async fn copy_with_replace_keeps_the_new_metadata() {
    use s3s::dto::{CopyObjectInput, CopySource, HeadObjectInput, MetadataDirective};
    let fx = Fixture::start();
    let store = &fx.server.store;
    let body = StreamingBlob::from(s3s::Body::from(Bytes::from_static(b"the source")));
    let metadata = |pairs: &[(&str, &str)]| Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let put = PutObjectInput {
        bucket: BUCKET.into(),
        key: "src".into(),
        body: Some(body),
        content_type: Some("text/plain".into()),
        metadata: metadata(&[("origin", "source")]),
        ..Default::default()
    };
    S3::put_object(store, request(put)).await.unwrap();
    let copy = |key: &str, directive: Option<&str>| {
        CopyObjectInput::builder()
            .bucket(BUCKET.into())
            .key(key.into())
            .copy_source(CopySource::Bucket { bucket: BUCKET.into(), key: "src".into(), version_id: None })
            .metadata_directive(directive.map(|d| MetadataDirective::from(d.to_string())))
            .content_type(Some("application/json".into()))
            .metadata(metadata(&[("origin", "copy")]))
            .build()
            .unwrap()
    };
    S3::copy_object(store, request(copy("replaced", Some(MetadataDirective::REPLACE)))).await.unwrap();
    S3::copy_object(store, request(copy("copied", None))).await.unwrap();
    let head = |key: &str| {
        let input = HeadObjectInput { bucket: BUCKET.into(), key: key.into(), ..Default::default() };
        async move { S3::head_object(store, request(input)).await.unwrap().output }
    };
    let replaced = head("replaced").await;
    assert_eq!(replaced.content_type.as_deref(), Some("application/json"));
    assert_eq!(replaced.metadata.unwrap().get("origin").map(String::as_str), Some("copy"));
    let copied = head("copied").await;
    assert_eq!(copied.content_type.as_deref(), Some("text/plain"));
    assert_eq!(copied.metadata.unwrap().get("origin").map(String::as_str), Some("source"));
}

/// A presigned GET (no credentials on the request itself) honours `Range`.
#[tokio::test]
async fn presigned_get_honours_range() {
    use object_store::signer::Signer as _;
    let fx = Fixture::start();
    let s3 = fx.client();
    let path = ObjectPath::from("media/clip.bin");
    let data = pattern(3, 10_000);
    s3.put(&path, PutPayload::from(data.clone())).await.unwrap();
    let url = s3.signed_url(reqwest::Method::GET, &path, std::time::Duration::from_secs(60)).await.unwrap();
    let client = reqwest::Client::new();
    let answer = client.get(url.as_str()).header("range", "bytes=100-199").send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 206);
    assert_eq!(answer.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(answer.bytes().await.unwrap(), data[100..200]);
    let whole = client.get(url.as_str()).send().await.unwrap();
    assert_eq!(whole.status().as_u16(), 200);
    assert_eq!(whole.bytes().await.unwrap().len(), data.len());
    // The signature covers the path: another key is refused.
    let other = url.as_str().replace("clip.bin", "other.bin");
    assert_eq!(client.get(other).send().await.unwrap().status().as_u16(), 403);
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let fx = Fixture::start();
    let path = ObjectPath::from("x.bin");
    for (access, secret) in [(ACCESS_KEY, "not-the-secret"), ("someone-else", SECRET_KEY)] {
        let err = fx.client_with(access, secret).put(&path, PutPayload::from_static(b"x")).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("403"), "{access}/{secret}: {text}");
    }
    assert!(matches!(fx.client().head(&path).await, Err(object_store::Error::NotFound { .. })));
}

#[tokio::test]
async fn bare_files_are_served_with_a_computed_etag() {
    let fx = Fixture::start();
    let file = fx.root.path().join("buckets").join(BUCKET).join("seed/video.mp4");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"seeded bytes").unwrap();
    let s3 = fx.client();
    let head = s3.head(&ObjectPath::from("seed/video.mp4")).await.unwrap();
    assert_eq!(head.e_tag, Some(format!("\"{}\"", md5_hex(b"seeded bytes"))));
    let got = s3.get(&ObjectPath::from("seed/video.mp4")).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, Bytes::from_static(b"seeded bytes"));
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let fx = Fixture::start();
    let s3 = fx.client();
    s3.put(&ObjectPath::from("k"), PutPayload::from_static(b"v")).await.unwrap();
    let Fixture { root, server } = fx;
    let addr = server.addr();
    server.shutdown().await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(Path::new(&root.path().join("buckets").join(BUCKET).join("k")).is_file());
}

fn request<T>(input: T) -> S3Request<T> {
    S3Request {
        input,
        method: Default::default(),
        uri: Default::default(),
        headers: Default::default(),
        extensions: Default::default(),
        credentials: None,
        region: None,
        service: None,
        trailing_headers: None,
    }
}

#[tokio::test]
async fn keys_that_could_escape_the_bucket_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    store.ensure_bucket(BUCKET).unwrap();
    std::fs::write(root.path().join("secret"), b"outside").unwrap();
    for key in ["../outside", "a/../../../outside", "/abs", "a//b", "a/./b", "a/", ".", "..", "nul\0byte", ""] {
        let body = StreamingBlob::from(s3s::Body::from(Bytes::from_static(b"x")));
        let put = PutObjectInput { bucket: BUCKET.into(), key: key.into(), body: Some(body), ..Default::default() };
        let err = S3::put_object(&store, request(put)).await.unwrap_err();
        assert_eq!(err.code().as_str(), "InvalidArgument", "{key:?}");
    }
    for key in ["../secret", "../../secret"] {
        let get = GetObjectInput { bucket: BUCKET.into(), key: key.into(), ..Default::default() };
        assert_eq!(S3::get_object(&store, request(get)).await.unwrap_err().code().as_str(), "InvalidArgument", "{key:?}");
    }
    let mut top: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    top.sort();
    assert_eq!(top, ["buckets", "meta", "secret", "staging", "uploads"]);
    assert_eq!(std::fs::read_dir(root.path().join("buckets").join(BUCKET)).unwrap().count(), 0);
}

/// A function holding the wrong secret gets a classified error that says so,
/// not a bare store failure.
#[tokio::test]
async fn the_stages_client_names_refused_credentials() {
    let fx = Fixture::start();
    fx.client().put(&ObjectPath::from("state.json"), PutPayload::from_static(b"{}")).await.unwrap();
    let store = fx.stages_client("not-the-secret");
    let err = store.get_bytes(&store.uri("state.json")).await.unwrap_err();
    assert_eq!((err.code.as_str(), err.kind.status()), ("store_denied", 500), "{err}");
    assert!(err.message.contains("credentials"), "{err}");
}

/// The stages' client reads a document whole only up to its limit; a larger
/// one is refused before it is read, with the size and the limit.
#[tokio::test]
async fn the_stages_client_refuses_to_read_a_huge_document_whole() {
    use stage_runtime::DOCUMENT_LIMIT;
    let fx = Fixture::start();
    let s3 = fx.client();
    let limit = DOCUMENT_LIMIT as usize;
    s3.put(&ObjectPath::from("big.json"), PutPayload::from(vec![b' '; limit + 1])).await.unwrap();
    s3.put(&ObjectPath::from("fits.json"), PutPayload::from(vec![b' '; limit])).await.unwrap();
    let store = fx.stages_client(SECRET_KEY);
    let err = store.get_bytes(&store.uri("big.json")).await.unwrap_err();
    assert_eq!((err.code.as_str(), err.kind.status()), ("document_too_large", 422), "{err}");
    assert!(err.message.contains(&format!("{} bytes", limit + 1)), "{err}");
    assert_eq!(store.get_bytes(&store.uri("fits.json")).await.unwrap().len(), limit);
}

/// The stages' client gives up on a store that keeps failing after a stated
/// number of retries (`stage_runtime::store::retry`: 3, within 10 s), not
/// object_store's default of 10 over up to 3 minutes, long after the
/// stage's caller has timed out. A stub answers every request 503 and
/// counts them.
#[tokio::test]
async fn the_stages_client_gives_up_on_a_failing_store_after_three_retries() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let stub = tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = socket.write_all(answer).await;
            });
        }
    });
    let store = stages_client_at(endpoint, SECRET_KEY);
    let started = std::time::Instant::now();
    let err = store.get_bytes(&store.uri("state.json")).await.unwrap_err();
    let took = started.elapsed();
    stub.abort();
    assert_eq!((err.code.as_str(), err.kind.status()), ("store", 500), "{err}");
    assert_eq!(requests.load(Ordering::SeqCst), 4, "one request and three retries, in {took:?}: {err}");
}
