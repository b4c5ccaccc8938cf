//! Attachments (ATTACHMENTS_API.md): the streamed upload and the downloads
//! with ranges and safe headers.

use std::ops::Range;
use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{Auth, DownloadAuth, Ids};
use super::AppState;
use crate::domain::auth::Identity;
use crate::domain::{DomainError, DomainResult, Download, Rendition};
use crate::views::AttachmentView;

/// How long the rest of a refused upload is read (and discarded) so the
/// client, still sending, gets the answer instead of a reset connection.
const DRAIN_FOR: Duration = Duration::from_secs(10);
/// Room for the multipart envelope (boundaries, part headers) when a
/// `Content-Length` alone shows the file is too large.
const ENVELOPE_BYTES: u64 = 64 * 1024;

#[derive(Serialize, ToSchema)]
pub struct AttachmentBody {
    data: AttachmentView,
}

/// The upload form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file; its filename is the attachment's name.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

fn bad_multipart(e: MultipartError) -> DomainError {
    DomainError::bad_request(format!("unreadable multipart body: {}", e.body_text()))
}

/// Upload a file, streamed to the blob store (never held whole in memory).
/// It stays the uploader's until a message attaches it (`attachment_ids`);
/// one never attached is deleted after `--attachment-grace-secs`.
#[utoipa::path(post, path = "/api/v1/attachments", tag = "attachments",
    security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "Stored; its content type sniffed from the bytes", body = AttachmentBody),
              (status = 400, description = "Not multipart/form-data, unreadable, or no `file` part"),
              (status = 413, description = "Above --max-upload-bytes, or past the uploader's quota"),
              (status = 422, description = "The file name is blank, too long or has control characters")))]
pub async fn upload(
    State(state): State<AppState>,
    Auth(identity): Auth,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> DomainResult<(StatusCode, Json<AttachmentBody>)> {
    let mut multipart = multipart.map_err(|e| {
        DomainError::bad_request(format!(
            "a multipart/form-data body with a file part is required: {}",
            e.body_text()
        ))
    })?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = state.domain.limits().max_upload_bytes;
    let surely_too_large = match (declared, limit) {
        (Some(length), Some(limit)) => length > limit.saturating_add(ENVELOPE_BYTES),
        _ => false,
    };
    while let Some(field) = multipart.next_field().await.map_err(bad_multipart)? {
        // Other parts are skipped (multer discards their bytes).
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().map(str::to_owned);
        let mut body = std::pin::pin!(field.map(|chunk| chunk.map_err(bad_multipart)));
        let outcome = match limit.filter(|_| surely_too_large) {
            Some(limit) => Err(DomainError::FileTooLarge { limit }),
            None => {
                state
                    .domain
                    .upload_attachment(&identity, name, &mut body)
                    .await
            }
        };
        if matches!(
            outcome,
            Err(DomainError::FileTooLarge { .. } | DomainError::QuotaExceeded { .. })
        ) {
            // Nothing of it is kept; reading the rest lets the client see
            // the 413 instead of a connection reset mid-send.
            let _ = tokio::time::timeout(DRAIN_FOR, async {
                while let Some(Ok(_)) = body.next().await {}
            })
            .await;
        }
        let view = outcome?;
        return Ok((StatusCode::CREATED, Json(AttachmentBody { data: view })));
    }
    Err(DomainError::bad_request(
        "the multipart body has no file part",
    ))
}

/// Download an attachment's bytes.
#[utoipa::path(get, path = "/api/v1/attachments/{id}/content", tag = "attachments",
    security(("bearer" = [])),
    params(("id" = i64, Path),
           ("access_token" = Option<String>, Query, description = "The token, for links and <img src> (instead of the Authorization header)"),
           ("Range" = Option<String>, Header, description = "One byte range, e.g. bytes=0-1023")),
    responses((status = 200, description = "The bytes, with Content-Disposition (inline only for raster images, audio and video), X-Content-Type-Options: nosniff, ETag, Accept-Ranges"),
              (status = 206, description = "The requested range, with Content-Range"),
              (status = 304, description = "If-None-Match matched"),
              (status = 401, description = "No valid token"),
              (status = 404, description = "No such attachment, not visible to the caller, or its message was deleted"),
              (status = 416, description = "The range lies outside the file")))]
pub async fn content(
    State(state): State<AppState>,
    DownloadAuth(identity): DownloadAuth,
    ids: Ids,
    headers: HeaderMap,
) -> DomainResult<Response> {
    download(&state, &identity, ids, Rendition::Content, &headers).await
}

/// Download an attachment's preview (a small JPEG or PNG).
#[utoipa::path(get, path = "/api/v1/attachments/{id}/thumbnail", tag = "attachments",
    security(("bearer" = [])),
    params(("id" = i64, Path),
           ("access_token" = Option<String>, Query, description = "The token, for <img src>")),
    responses((status = 200, description = "The thumbnail image"),
              (status = 401, description = "No valid token"),
              (status = 404, description = "No thumbnail, or not visible to the caller")))]
pub async fn thumbnail(
    State(state): State<AppState>,
    DownloadAuth(identity): DownloadAuth,
    ids: Ids,
    headers: HeaderMap,
) -> DomainResult<Response> {
    download(&state, &identity, ids, Rendition::Thumbnail, &headers).await
}

/// One rendition of an attachment, authorized, as a response.
async fn download(
    state: &AppState,
    identity: &Identity,
    ids: Ids,
    rendition: Rendition,
    headers: &HeaderMap,
) -> DomainResult<Response> {
    let download = state
        .domain
        .download(identity, ids.one()?, rendition)
        .await?;
    serve(state, &download, headers).await
}

/// The bytes of an authorized download as a response: conditional (ETag),
/// ranged, with the headers that keep a browser from running it.
async fn serve(
    state: &AppState,
    download: &Download,
    headers: &HeaderMap,
) -> DomainResult<Response> {
    let etag = HeaderValue::from_str(&download.etag)
        .map_err(|_| DomainError::Internal("an ETag that is not a header value".into()))?;
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == download.etag || t.trim() == "*")
        })
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let range = requested_range(headers, download)?;
    let bytes = state.domain.read_download(download, range.clone()).await?;
    let mut response = Response::new(Body::from_stream(bytes));
    let out = response.headers_mut();
    let content_type = if download.content_type.starts_with("text/") {
        format!("{}; charset=utf-8", download.content_type)
    } else {
        download.content_type.clone()
    };
    let fixed = [
        (header::ACCEPT_RANGES, "bytes"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Even opened directly, nothing in it runs or loads.
        (
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        ),
        // The URL may carry the access token.
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "private, max-age=3600"),
    ];
    for (name, value) in fixed {
        out.insert(name, HeaderValue::from_static(value));
    }
    out.insert(header::ETAG, etag);
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (
            header::CONTENT_DISPOSITION,
            disposition(download.inline, &download.name),
        ),
    ] {
        let value = HeaderValue::from_str(&value)
            .map_err(|_| DomainError::Internal(format!("bad {name} header value")))?;
        out.insert(name, value);
    }
    match range {
        Some(range) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let out = response.headers_mut();
            out.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(range.end - range.start),
            );
            let content_range =
                format!("bytes {}-{}/{}", range.start, range.end - 1, download.size);
            out.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&content_range)
                    .map_err(|_| DomainError::Internal("bad Content-Range".into()))?,
            );
        }
        None => {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(download.size));
        }
    }
    Ok(response)
}

/// The one byte range asked for (`Range`, honoured unless an `If-Range`
/// names another version), as a half-open range within the file. A
/// malformed header, or several ranges, are ignored (the whole file, as RFC
/// 9110 allows); a range outside the file is a 416.
fn requested_range(headers: &HeaderMap, download: &Download) -> DomainResult<Option<Range<u64>>> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        if if_range.to_str().map(str::trim).ok() != Some(download.etag.as_str()) {
            return Ok(None);
        }
    }
    let Ok(parsed) = http_range_header::parse_range_header(value) else {
        return Ok(None);
    };
    let unsatisfiable = DomainError::RangeNotSatisfiable {
        size: download.size,
    };
    match parsed.validate(download.size) {
        // (An empty file has no byte a range could name.)
        Ok(ranges) => match ranges.as_slice() {
            [one] if *one.start() < download.size => Ok(Some(*one.start()..one.end() + 1)),
            [_] => Err(unsatisfiable),
            _ => Ok(None),
        },
        Err(_) => Err(unsatisfiable),
    }
}

/// RFC 5987 `attr-char`: what may stand unescaped in `filename*`.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `inline` or `attachment`, with the name twice: a plain ASCII fallback
/// (anything else, quotes and backslashes replaced) and the exact UTF-8
/// (RFC 6266).
fn disposition(inline: bool, name: &str) -> String {
    let kind = if inline { "inline" } else { "attachment" };
    let fallback: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = utf8_percent_encode(name, ATTR_CHAR);
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{exact}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_escape_the_name() {
        assert_eq!(
            disposition(true, "cat.png"),
            "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png"
        );
        assert_eq!(
            disposition(false, "a \"b\"\\ é\r\n.html"),
            "attachment; filename=\"a _b__ ___.html\"; filename*=UTF-8''a%20%22b%22%5C%20%C3%A9%0D%0A.html"
        );
    }
}
