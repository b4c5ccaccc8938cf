//! Attachments (ATTACHMENTS_API.md): uploads streamed into the blob store,
//! who may download them, and the cleanup job. Attaching happens in the send
//! (`messages.rs`), in the send's transaction.
//!
//! An upload's bytes go to the blob store as they arrive, counted against
//! `--max-upload-bytes` and what is left of the uploader's quota; only the
//! first bytes are kept (to sniff the type), and the whole file only when it
//! is a small raster image (for its thumbnail). The row is inserted once the
//! blobs are stored; whatever stops the upload before that (a limit, a
//! broken body, the client leaving) removes the blobs.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chatterly_store::{Attachment, Id, NewAttachment, StoreError, CONFLICT_QUOTA};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

use super::auth::Identity;
use super::validate::Errors;
use super::{Domain, DomainError, DomainResult};
use crate::blobs::{BlobError, Blobs};
use crate::media;
use crate::views::AttachmentView;

/// Longest file name kept, in characters.
const NAME_MAX: usize = 255;
/// Hidden attachments the cleanup removes per round (one claim, then their
/// blobs, then one delete).
const CLEANUP_BATCH: u32 = 500;

fn blob_error(e: BlobError) -> DomainError {
    DomainError::Internal(e.to_string())
}

/// What to serve for a download: decided by [`Domain::download`], read by
/// [`Domain::read_download`].
#[derive(Debug, Clone)]
pub struct Download {
    pub size: u64,
    pub content_type: String,
    /// The uploader's file name.
    pub name: String,
    /// Whether a browser may show it in place (else it is a download).
    pub inline: bool,
    /// Changes only if the bytes could (they never do: blobs are immutable).
    pub etag: String,
    key: String,
    /// A thumbnail, read whole (it is small).
    bytes: Option<Bytes>,
}

/// Which bytes of an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendition {
    Content,
    Thumbnail,
}

/// Blobs written for an upload whose row is not written yet: removed if the
/// upload stops before (an error, or the request being dropped).
struct Pending {
    blobs: Arc<Blobs>,
    keys: Vec<String>,
}

impl Pending {
    fn keep(mut self) {
        self.keys.clear();
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let blobs = Arc::clone(&self.blobs);
        let keys = std::mem::take(&mut self.keys);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for key in keys {
                    if let Err(e) = blobs.delete(&key).await {
                        // The blob stays, unreferenced; logged to be found.
                        tracing::warn!(%key, error = %e, "removing an unfinished upload failed");
                    }
                }
            });
        }
    }
}

/// The name as kept: the last path component the client sent, trimmed.
fn clean_name(name: Option<String>) -> DomainResult<String> {
    let name = name.unwrap_or_default();
    let base = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut errors = Errors::default();
    errors.required("Name", Some(&base));
    errors.max_chars("Name", Some(&base), NAME_MAX);
    if base.chars().any(char::is_control) {
        errors.add("Name must not contain control characters");
    }
    errors.into_result()?;
    Ok(base)
}

impl Domain {
    /// Streams `body` (the file's bytes) into the blob store and records the
    /// attachment, unattached, for the caller. Stops at the first error of
    /// `body` (returned as is), at `--max-upload-bytes` (`FileTooLarge`) and
    /// at the caller's quota (`QuotaExceeded`), leaving nothing behind. The
    /// caller may keep reading its request afterwards (to answer a client
    /// that is still sending).
    pub async fn upload_attachment<S>(
        &self,
        identity: &Identity,
        name: Option<String>,
        body: &mut S,
    ) -> DomainResult<AttachmentView>
    where
        S: Stream<Item = DomainResult<Bytes>> + Unpin + Send,
    {
        let name = clean_name(name)?;
        let quota = self.limits.upload_quota_bytes;
        let left = match quota {
            Some(quota) => {
                let used = self.store.attachment_usage(identity.user_id).await?;
                Some(quota.saturating_sub(u64::try_from(used).unwrap_or(0)))
            }
            None => None,
        };
        let stem = uuid::Uuid::new_v4().simple().to_string();
        let key = format!("attachments/{stem}");
        let mut writer = self.blobs.writer(&key).await.map_err(blob_error)?;
        let mut size: u64 = 0;
        let mut head: Vec<u8> = Vec::new();
        // The whole file, while it may still become a thumbnail.
        let mut whole: Option<Vec<u8>> = Some(Vec::new());
        while let Some(chunk) = body.next().await {
            // Dropping `writer` on any early return aborts the blob.
            let chunk = chunk?;
            size += chunk.len() as u64;
            if let Some(limit) = self.limits.max_upload_bytes.filter(|l| size > *l) {
                writer.abort().await;
                return Err(DomainError::FileTooLarge { limit });
            }
            if let (Some(left), Some(quota)) = (left, quota) {
                if size > left {
                    writer.abort().await;
                    return Err(DomainError::QuotaExceeded { quota });
                }
            }
            if head.len() < media::SNIFF_BYTES {
                let take = (media::SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            if let Some(bytes) = whole.as_mut() {
                let decided = head.len() >= 512;
                if size > media::THUMBNAIL_SOURCE_MAX_BYTES
                    || (decided && !media::is_raster_image(&media::sniff(&head)))
                {
                    whole = None;
                } else {
                    bytes.extend_from_slice(&chunk);
                }
            }
            writer.write(&chunk).await.map_err(blob_error)?;
        }
        writer.finish().await.map_err(blob_error)?;
        let mut pending = Pending {
            blobs: Arc::clone(&self.blobs),
            keys: vec![key.clone()],
        };

        let content_type = media::sniff(&head);
        let picture = match whole {
            Some(bytes) if media::is_raster_image(&content_type) => {
                let kind = content_type.clone();
                tokio::task::spawn_blocking(move || media::picture(&kind, &bytes))
                    .await
                    .map_err(|e| DomainError::Internal(format!("thumbnail task failed: {e}")))?
            }
            _ => media::dimensions(&content_type, &head).map(|(width, height)| media::Picture {
                width,
                height,
                thumbnail: None,
            }),
        };
        let mut thumbnail_key = None;
        if let Some(thumbnail) = picture.as_ref().and_then(|p| p.thumbnail.as_ref()) {
            let extension = if thumbnail.content_type == "image/png" {
                "png"
            } else {
                "jpg"
            };
            let key = format!("thumbnails/{stem}.{extension}");
            pending.keys.push(key.clone());
            self.blobs
                .put(&key, Bytes::from(thumbnail.bytes.clone()))
                .await
                .map_err(blob_error)?;
            thumbnail_key = Some(key);
        }
        let dimension = |value: u32| i32::try_from(value).ok();
        let attachment = self
            .store
            .create_attachment(NewAttachment {
                user_id: identity.user_id,
                name,
                content_type,
                size: i64::try_from(size).unwrap_or(i64::MAX),
                width: picture.as_ref().and_then(|p| dimension(p.width)),
                height: picture.as_ref().and_then(|p| dimension(p.height)),
                blob_key: key,
                thumbnail_key,
                quota: quota.map(|q| i64::try_from(q).unwrap_or(i64::MAX)),
            })
            .await
            .map_err(|e| match (e, quota) {
                (StoreError::Conflict(CONFLICT_QUOTA), Some(quota)) => {
                    DomainError::QuotaExceeded { quota }
                }
                (e, _) => e.into(),
            })?;
        pending.keep();
        Ok(AttachmentView::from(&attachment))
    }

    /// The attachment if the caller may see it: its uploader while it is
    /// unattached, afterwards the members of its message's conversation.
    /// Hidden ones (deleted messages) and everyone else: `NotFound`.
    async fn visible_attachment(&self, identity: &Identity, id: Id) -> DomainResult<Attachment> {
        let attachment = match self.store.attachment_by_id(id).await? {
            Some(a) if a.deleted_at.is_none() => a,
            _ => return Err(DomainError::NotFound),
        };
        match attachment.conversation_id {
            None if attachment.user_id == identity.user_id => Ok(attachment),
            None => Err(DomainError::NotFound),
            Some(conversation_id) => {
                self.member_of(identity, conversation_id).await?;
                Ok(attachment)
            }
        }
    }

    /// Authorizes a download and says what it is (its bytes are read by
    /// [`Domain::read_download`]).
    pub async fn download(
        &self,
        identity: &Identity,
        id: Id,
        rendition: Rendition,
    ) -> DomainResult<Download> {
        let attachment = self.visible_attachment(identity, id).await?;
        match rendition {
            Rendition::Content => Ok(Download {
                size: u64::try_from(attachment.size).unwrap_or(0),
                inline: media::inline_safe(&attachment.content_type),
                content_type: attachment.content_type,
                name: attachment.name,
                etag: format!("\"a{}\"", attachment.id),
                key: attachment.blob_key,
                bytes: None,
            }),
            Rendition::Thumbnail => {
                let key = attachment.thumbnail_key.ok_or(DomainError::NotFound)?;
                let bytes = self.blobs.read_all(&key).await.map_err(|e| {
                    if e.is_not_found() {
                        DomainError::NotFound
                    } else {
                        blob_error(e)
                    }
                })?;
                let content_type = if key.ends_with(".png") {
                    "image/png"
                } else {
                    "image/jpeg"
                };
                Ok(Download {
                    size: bytes.len() as u64,
                    content_type: content_type.to_owned(),
                    name: attachment.name,
                    inline: true,
                    etag: format!("\"t{}\"", attachment.id),
                    key,
                    bytes: Some(bytes),
                })
            }
        }
    }

    /// The bytes of an authorized download, or of `range` within it (the
    /// caller has checked it lies within `size`).
    pub async fn read_download(
        &self,
        download: &Download,
        range: Option<Range<u64>>,
    ) -> DomainResult<BoxStream<'static, Result<Bytes, BlobError>>> {
        if let Some(bytes) = &download.bytes {
            let bytes = match range {
                Some(r) => bytes.slice(r.start as usize..r.end as usize),
                None => bytes.clone(),
            };
            return Ok(futures::stream::once(async move { Ok(bytes) }).boxed());
        }
        if download.size == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        self.blobs.read(&download.key, range).await.map_err(|e| {
            if e.is_not_found() {
                DomainError::NotFound
            } else {
                blob_error(e)
            }
        })
    }

    /// The cleanup job: hides the uploads never attached within
    /// `--attachment-grace-secs`, then deletes the blobs and rows of every
    /// hidden attachment (these, and those of deleted messages and
    /// conversations and of retention). Idempotent: a blob already gone
    /// counts as deleted, and a row goes only after its blobs. Returns how
    /// many attachments it removed.
    pub async fn clean_attachments(&self) -> DomainResult<u64> {
        let now = chatterly_store::now();
        let unattached_before = now - self.limits.attachment_grace;
        let mut removed = 0;
        loop {
            let hidden = self
                .store
                .hidden_attachments(unattached_before, now, CLEANUP_BATCH)
                .await?;
            for attachment in &hidden {
                for key in std::iter::once(&attachment.blob_key).chain(&attachment.thumbnail_key) {
                    self.blobs.delete(key).await.map_err(blob_error)?;
                }
            }
            let ids: Vec<Id> = hidden.iter().map(|a| a.id).collect();
            removed += self.store.remove_attachments(&ids).await?;
            if hidden.len() < CLEANUP_BATCH as usize {
                return Ok(removed);
            }
        }
    }

    /// The caller's attachments among `ids` as a send needs them: every one
    /// an upload of theirs, not yet attached nor hidden (else a 422 naming
    /// it). The store checks it again in the send's transaction. With a
    /// `client_message_id` (`retry`) an attached one passes here: a retry
    /// of the send that attached it gets that message back, and any other
    /// send is refused by the store.
    pub(super) async fn attachments_to_send(
        &self,
        identity: &Identity,
        ids: &[Id],
        retry: bool,
    ) -> DomainResult<Vec<Attachment>> {
        let found = self.store.attachments_by_ids(ids).await?;
        for id in ids {
            let usable = found.iter().any(|a| {
                a.id == *id
                    && a.user_id == identity.user_id
                    && (a.message_id.is_none() || retry)
                    && a.deleted_at.is_none()
            });
            if !usable {
                return Err(DomainError::invalid(format!(
                    "Attachment {id} is not an upload of yours waiting to be sent"
                )));
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_the_last_path_component() {
        assert_eq!(
            clean_name(Some("cat.png".into())).ok().as_deref(),
            Some("cat.png")
        );
        assert_eq!(
            clean_name(Some("C:\\Users\\me\\cat.png".into()))
                .ok()
                .as_deref(),
            Some("cat.png")
        );
        assert_eq!(
            clean_name(Some("../../etc/passwd".into())).ok().as_deref(),
            Some("passwd")
        );
        for bad in [
            None,
            Some(String::new()),
            Some("dir/".into()),
            Some("a\u{7}b".into()),
        ] {
            assert!(
                matches!(clean_name(bad.clone()), Err(DomainError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(clean_name(Some("x".repeat(256))).is_err());
        assert!(clean_name(Some("é".repeat(255))).is_ok());
    }
}
