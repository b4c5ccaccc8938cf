//! The blob store: where attachment bytes live. A directory (by default
//! `<data-dir>/blobs`) or an S3-compatible bucket, both through
//! `object_store`, so the rest of the server sees one interface: a streaming
//! writer with bounded memory, ranged reads, idempotent deletes.
//!
//! Keys are chosen by the caller (`attachments/<uuid>`); a blob is written
//! whole before anything refers to it, and is never changed afterwards.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};

/// Bytes buffered per part of a local upload; S3 parts must be at least
/// 5 MiB (but the last).
const LOCAL_PART: usize = 1024 * 1024;
const S3_PART: usize = 5 * 1024 * 1024;
/// Parts of one upload being written at once: with the part size, bounds
/// the memory an upload holds whatever the file's size.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
#[error("blob store: {0}")]
pub struct BlobError(#[from] object_store::Error);

impl BlobError {
    pub fn is_not_found(&self) -> bool {
        matches!(self.0, object_store::Error::NotFound { .. })
    }
}

/// Where an S3-compatible bucket is (`--s3-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// E.g. `http://127.0.0.1:9000` for MinIO or moto; AWS when unset.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// The blob store. Cheap to share.
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    part_size: usize,
    /// `local` or `s3`, for logs.
    kind: &'static str,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").field("kind", &self.kind).finish()
    }
}

impl Blobs {
    /// Blobs as files under `dir` (created if missing).
    pub fn local(dir: &Path) -> Result<Blobs, BlobError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            BlobError(object_store::Error::Generic {
                store: "local",
                source: Box::new(e),
            })
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
        Ok(Blobs {
            store: Arc::new(store),
            part_size: LOCAL_PART,
            kind: "local",
        })
    }

    /// Blobs in an S3-compatible bucket (path-style requests; plain HTTP
    /// allowed when the endpoint is an `http://` one).
    pub fn s3(settings: &S3Settings) -> Result<Blobs, BlobError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(id) = &settings.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        Ok(Blobs {
            store: Arc::new(builder.build()?),
            part_size: S3_PART,
            kind: "s3",
        })
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Starts writing the blob `key`. Nothing is visible under `key` until
    /// [`BlobWriter::finish`]; a writer dropped unfinished aborts.
    pub async fn writer(&self, key: &str) -> Result<BlobWriter, BlobError> {
        let key = Key::from(key);
        let upload = self.store.put_multipart(&key).await?;
        Ok(BlobWriter {
            upload: Some(WriteMultipart::new_with_chunk_size(upload, self.part_size)),
            store: Arc::clone(&self.store),
            key,
        })
    }

    /// Writes a small blob (a thumbnail) in one request.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        self.store.put(&Key::from(key), bytes.into()).await?;
        Ok(())
    }

    /// The blob's bytes, or those of `range` (which must lie within it).
    pub async fn read(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self.store.get_opts(&Key::from(key), options).await?;
        Ok(result
            .into_stream()
            .map(|chunk| chunk.map_err(BlobError))
            .boxed())
    }

    /// A small blob (a thumbnail), whole.
    pub async fn read_all(&self, key: &str) -> Result<Bytes, BlobError> {
        Ok(self.store.get(&Key::from(key)).await?.bytes().await?)
    }

    /// Whether the store answers, without writing: a listing of a prefix
    /// nothing is ever written under. An empty answer is the healthy one; a
    /// missing bucket, refused credentials or an unreachable endpoint fail.
    pub async fn probe(&self) -> Result<(), BlobError> {
        self.store
            .list_with_delimiter(Some(&Key::from("chatterly-doctor-probe")))
            .await?;
        Ok(())
    }

    /// Deletes the blob; one that is not there counts as deleted, so a
    /// repeated cleanup is harmless.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&Key::from(key)).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(BlobError(e)),
        }
    }
}

/// A blob being written, part by part: at most [`PARTS_IN_FLIGHT`] parts
/// are buffered or being sent at once, so memory stays flat whatever the
/// size. Dropped before [`BlobWriter::finish`] (an error, a client that went
/// away, a cancelled request), it aborts the upload in the background: the
/// staged parts are removed and nothing appears under the key.
pub struct BlobWriter {
    upload: Option<WriteMultipart>,
    store: Arc<dyn ObjectStore>,
    key: Key,
}

impl BlobWriter {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let Some(upload) = self.upload.as_mut() else {
            return Ok(());
        };
        upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        upload.write(bytes);
        Ok(())
    }

    /// Completes the blob: it is then stored whole under its key.
    pub async fn finish(mut self) -> Result<(), BlobError> {
        if let Some(upload) = self.upload.take() {
            if let Err(e) = upload.finish().await {
                // Whatever part of it landed must not stay.
                let _ = self.store.delete(&self.key).await;
                return Err(BlobError(e));
            }
        }
        Ok(())
    }

    /// Gives up the blob: nothing stays under its key.
    pub async fn abort(mut self) {
        if let Some(upload) = self.upload.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(key = %self.key, error = %e, "aborting a blob upload failed");
            }
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        let Some(upload) = self.upload.take() else {
            return;
        };
        let key = self.key.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(%key, error = %e, "aborting an abandoned blob upload failed");
                    }
                });
            }
            // No runtime (shutting down): dropping the upload is all that
            // can be done (a local one removes its staging file itself).
            Err(_) => drop(upload),
        }
    }
}
