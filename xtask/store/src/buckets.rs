//! Bucket operations and ListObjectsV2.

use std::io;

use base64::Engine as _;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::layout::{internal, walk_keys, Meta};
use super::objects::open_snapshot;
use super::Store;

const MAX_KEYS: i32 = 1000;

impl Store {
    pub(super) async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket;
        if !self.create_bucket_dirs(&bucket).map_err(|e| internal(e, "create bucket"))? {
            return Err(s3_error!(BucketAlreadyOwnedByYou, "bucket `{bucket}` already exists"));
        }
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{bucket}")) }))
    }

    /// Create the bucket's directories; `false` if the bucket already existed.
    pub(super) fn create_bucket_dirs(&self, bucket: &str) -> io::Result<bool> {
        std::fs::create_dir_all(self.layout.bucket_meta_dir(bucket))?;
        match std::fs::create_dir(self.layout.bucket_dir(bucket)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.layout.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    pub(super) async fn list_buckets(&self, _req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let root = self.layout.buckets.clone();
        let list = move || -> io::Result<Vec<Bucket>> {
            let mut buckets = Vec::new();
            for entry in std::fs::read_dir(root)? {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
                let meta = entry.metadata()?;
                if meta.is_dir() {
                    let created = meta.created().or_else(|_| meta.modified())?;
                    buckets.push(Bucket { name: Some(name), creation_date: Some(created.into()), ..Default::default() });
                }
            }
            buckets.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(buckets)
        };
        let buckets = tokio::task::spawn_blocking(list)
            .await
            .map_err(|e| internal(e, "list buckets"))?
            .map_err(|e| internal(e, "list buckets"))?;
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), ..Default::default() }))
    }

    pub(super) async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = req.input.bucket;
        self.layout.require_bucket(&bucket).await?;
        let (data, meta) = (self.layout.bucket_dir(&bucket), self.layout.bucket_meta_dir(&bucket));
        // No commit may land in a bucket being removed.
        let _guards = self.locks.all().await;
        tokio::task::spawn_blocking(move || {
            if !walk_keys(&data, "").map_err(|e| internal(e, "list bucket"))?.is_empty() {
                return Err(s3_error!(BucketNotEmpty, "bucket `{bucket}` is not empty"));
            }
            std::fs::remove_dir_all(&data).map_err(|e| internal(e, "delete bucket"))?;
            match std::fs::remove_dir_all(&meta) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(internal(e, "delete bucket")),
                _ => Ok(()),
            }
        })
        .await
        .map_err(|e| internal(e, "delete bucket"))??;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    pub(super) async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        self.layout.require_bucket(&input.bucket).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let max_keys = input.max_keys.unwrap_or(MAX_KEYS).clamp(0, MAX_KEYS) as usize;
        let resume_after = match &input.continuation_token {
            Some(token) => Some(decode_token(token)?),
            None => input.start_after.clone(),
        };

        let bucket_dir = self.layout.bucket_dir(&input.bucket);
        let walk_prefix = prefix.clone();
        let mut keys = tokio::task::spawn_blocking(move || walk_keys(&bucket_dir, &walk_prefix))
            .await
            .map_err(|e| internal(e, "list objects"))?
            .map_err(|e| internal(e, "list objects"))?;
        keys.retain(|k| k.starts_with(&prefix));
        keys.sort_unstable();

        let page = paginate(&keys, &prefix, delimiter.as_deref(), resume_after.as_deref(), max_keys);
        let contents = self.describe(&input.bucket, page.keys).await?;
        let key_count = i32::try_from(contents.len() + page.prefixes.len()).unwrap_or(i32::MAX);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            max_keys: Some(max_keys as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            start_after: input.start_after,
            is_truncated: Some(page.next.is_some()),
            next_continuation_token: page.next.map(|n| encode_token(&n)),
            contents: Some(contents),
            common_prefixes: Some(page.prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect()),
            ..Default::default()
        }))
    }

    /// Size, ETag and date of each listed key; keys deleted meanwhile are left out.
    async fn describe(&self, bucket: &str, keys: Vec<String>) -> S3Result<Vec<Object>> {
        let paths = keys.iter().map(|k| self.layout.object(bucket, k)).collect::<S3Result<Vec<_>>>()?;
        let (locks, bucket_name, names) = (self.locks.clone(), bucket.to_owned(), keys.clone());
        // Each key's snapshot under its own lock: a listing holds up no writer of other keys.
        let metas = tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .zip(&names)
                .map(|(p, key)| {
                    let _guard = locks.of(&bucket_name, key).blocking_read();
                    open_snapshot(p).map(|o| o.map(|(_, meta)| meta))
                })
                .collect::<io::Result<Vec<Option<Meta>>>>()
        })
        .await
        .map_err(|e| internal(e, "list objects"))?
        .map_err(|e| internal(e, "list objects"))?;
        Ok(keys
            .into_iter()
            .zip(metas)
            .filter_map(|(key, meta)| {
                let meta = meta?;
                Some(Object {
                    key: Some(key),
                    size: i64::try_from(meta.size).ok(),
                    e_tag: Some(ETag::Strong(meta.etag.clone())),
                    last_modified: Some(meta.last_modified()),
                    storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
                    ..Default::default()
                })
            })
            .collect())
    }
}

#[derive(Debug, Default, PartialEq)]
struct Page {
    keys: Vec<String>,
    prefixes: Vec<String>,
    /// Last entry of this page when more follow; the next page starts after it.
    next: Option<String>,
}

/// One page of `keys` (sorted, all starting with `prefix`). An entry is a key, or
/// with a delimiter the common prefix it rolls up into; entries are in ascending
/// order, so "resume after entry E" skips every key whose entry is <= E.
fn paginate(keys: &[String], prefix: &str, delimiter: Option<&str>, resume_after: Option<&str>, max: usize) -> Page {
    let mut page = Page::default();
    let mut last: Option<&str> = None;
    for key in keys {
        let entry = match delimiter.and_then(|d| key[prefix.len()..].find(d).map(|i| (i, d))) {
            Some((i, d)) => &key[..prefix.len() + i + d.len()],
            None => key.as_str(),
        };
        if resume_after.is_some_and(|r| entry <= r) || last == Some(entry) {
            continue;
        }
        if page.keys.len() + page.prefixes.len() == max {
            page.next = last.map(str::to_owned);
            break;
        }
        if entry.len() < key.len() {
            page.prefixes.push(entry.to_owned());
        } else {
            page.keys.push(entry.to_owned());
        }
        last = Some(entry);
    }
    page
}

fn encode_token(entry: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(entry)
}

fn decode_token(token: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token provided is incorrect"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn pages_with_delimiter_do_not_repeat_common_prefixes() {
        let all = keys(&["a.txt", "a/1", "a/2", "b/1", "c"]);
        let p1 = paginate(&all, "", Some("/"), None, 2);
        assert_eq!((p1.keys.clone(), p1.prefixes.clone()), (keys(&["a.txt"]), keys(&["a/"])));
        assert_eq!(p1.next.as_deref(), Some("a/"));
        let p2 = paginate(&all, "", Some("/"), p1.next.as_deref(), 2);
        assert_eq!((p2.keys.clone(), p2.prefixes.clone()), (keys(&["c"]), keys(&["b/"])));
        assert_eq!(p2.next, None);
    }

    #[test]
    fn pages_without_delimiter_cover_every_key_once() {
        let all = keys(&["x/1", "x/2", "x/3"]);
        let p1 = paginate(&all, "x/", None, None, 2);
        assert_eq!(p1.keys, keys(&["x/1", "x/2"]));
        let p2 = paginate(&all, "x/", None, p1.next.as_deref(), 2);
        assert_eq!((p2.keys, p2.next), (keys(&["x/3"]), None));
    }

    #[test]
    fn continuation_token_round_trips() {
        assert_eq!(decode_token(&encode_token("a/b c+ü")).unwrap(), "a/b c+ü");
        assert!(decode_token("!!").is_err());
    }
}
