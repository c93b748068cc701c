//! Files over HTTP. In: `POST /api/v1/rooms.upload/<rid>`, `multipart/form-data` with one `file`
//! part and optional `msg`, `description`, `tmid` fields (what Rocket.Chat clients send); the file is
//! streamed into the [`FileStore`](::chat::files::FileStore) as it arrives and posted as a message with
//! an attachment. Out: `GET /file-upload/<fileId>/<name>`, streamed, to members of the file's room only.
//!
//! Order of checks on upload, so that refusals cost nothing and leave nothing: credentials, then
//! "may post in this room" (a non-member of a private room gets the same 404 as for no room), then
//! framing and the declared length (413 at once when `Content-Length` exceeds
//! `FileUpload_MaxFileSize` plus [`FORM_OVERHEAD_BYTES`]), then the part's media type
//! (`FileUpload_MediaTypeWhiteList`/`BlackList`, 415), then the bytes (413 the moment they pass the
//! limit; the partial file is removed). If posting the message fails, the stored file is removed.
//!
//! Downloads authenticate like every request (`X-Auth-Token` + `X-User-Id`), or with Rocket.Chat's
//! `rc_token` and `rc_uid` cookies or query parameters, which browsers send for `<img src>` links.
//! Anyone who is not a member of the room — public channels included, as with Rocket.Chat's
//! `FileUpload_Restrict_to_room_members` — gets 404, the same answer as for an unknown file.

use ::chat::files::{media_type_allowed, FileWriter, NewUpload, Upload};
use ::chat::ids::{MessageId, RoomId};
use ::chat::service::{Caller, SendInput};
use ::chat::ChatError;
use serde_json::{json, Value};

use super::conn::Conn;
use super::multipart::{boundary, Multipart};
use super::{percent_decode, Reply, Rest, RestError};

/// What a form may carry besides the file (its text fields), in bytes.
pub const FORM_OVERHEAD_BYTES: u64 = 64 * 1024;
/// Longest text field of the form.
const MAX_FIELD_BYTES: usize = 16 * 1024;

/// The text fields of an upload form.
#[derive(Default)]
struct Fields {
    msg: Option<String>,
    description: Option<String>,
    tmid: Option<String>,
}

fn not_found() -> RestError {
    RestError::from(ChatError::NotFound { what: "file" })
}

/// `POST /api/v1/rooms.upload/<rid>`.
pub async fn upload(rest: &Rest, conn: &mut Conn, rid: &str) -> Result<Reply, RestError> {
    let caller = rest.authenticate(&conn.head, false).await?;
    let rid = RoomId::from(
        percent_decode(rid).ok_or_else(|| RestError::from(ChatError::NotFound { what: "room" }))?.as_str(),
    );
    let svc = rest.chat().service().clone();
    svc.check_post(&caller, &rid).await?;
    let Some(files) = rest.config().files.clone() else {
        return Err(RestError::http(503, "error-uploads-disabled", "uploads are not configured on this node"));
    };
    let max = svc.settings().file_upload_max_file_size;
    let length = conn.content_length()?;
    if length > max.saturating_add(FORM_OVERHEAD_BYTES) {
        return Err(RestError::too_large(max, length));
    }
    let content_type = conn.head.header("content-type").unwrap_or_default().to_owned();
    let Some(boundary) = boundary(&content_type) else {
        return Err(RestError::http(415, "error-invalid-content-type", "send multipart/form-data with a `file` part"));
    };
    let mut form = Multipart::new(conn, &boundary);
    let mut fields = Fields::default();
    let mut stored: Option<Upload> = None;
    let read = read_form(rest, &caller, &rid, max, &mut form, &mut fields, &mut stored).await;
    let upload = match (read, stored) {
        (Ok(()), Some(upload)) => upload,
        (Ok(()), None) => return Err(RestError::http(400, "error-invalid-param", "the form has no `file` part")),
        (Err(e), stored) => return Err(discard(&*files, stored, e).await),
    };
    match post(rest, &caller, &upload, fields).await {
        Ok(message) => Ok(Reply::Json(200, json!({ "message": message }))),
        Err(e) => Err(discard(&*files, Some(upload), e).await),
    }
}

/// Reads every part: the file into the store (`stored` once complete), the text fields into `fields`.
async fn read_form(
    rest: &Rest,
    caller: &Caller,
    rid: &RoomId,
    max: u64,
    form: &mut Multipart<'_>,
    fields: &mut Fields,
    stored: &mut Option<Upload>,
) -> Result<(), RestError> {
    let svc = rest.chat().service();
    let files = rest.config().files.clone().ok_or(ChatError::Unavailable)?;
    while let Some(part) = form.next_part().await? {
        if part.name == "file" && part.filename.is_some() {
            if stored.is_some() {
                return Err(RestError::http(400, "error-invalid-param", "one file per upload"));
            }
            let new = NewUpload::new(
                rid.clone(),
                caller.uid.clone(),
                part.filename.as_deref().unwrap_or_default(),
                part.content_type.as_deref(),
                max,
            )?;
            if !media_type_allowed(&svc.settings(), &new.media_type) {
                let message = format!("{} files are not allowed", new.media_type);
                return Err(RestError::http(415, "error-invalid-file-type", message));
            }
            let writer = files.create(new).await?;
            *stored = Some(stream_into(form, writer).await?);
            continue;
        }
        let value = read_field(form).await?;
        match part.name.as_str() {
            "msg" => fields.msg = Some(value),
            "description" => fields.description = Some(value),
            "tmid" => fields.tmid = Some(value),
            // Other Rocket.Chat fields (alias, avatar, …) are not supported and are ignored.
            _ => {}
        }
    }
    Ok(())
}

/// Streams the current part into `writer`; on any failure the partial file is removed.
async fn stream_into(form: &mut Multipart<'_>, mut writer: Box<dyn FileWriter>) -> Result<Upload, RestError> {
    loop {
        let piece = match form.read().await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        if let Err(e) = writer.write(&piece).await {
            writer.abort().await;
            return Err(e.into());
        }
    }
    Ok(writer.finish().await?)
}

async fn read_field(form: &mut Multipart<'_>) -> Result<String, RestError> {
    let mut value = Vec::new();
    while let Some(piece) = form.read().await? {
        if value.len() + piece.len() > MAX_FIELD_BYTES {
            return Err(RestError::too_large(MAX_FIELD_BYTES as u64, (value.len() + piece.len()) as u64));
        }
        value.extend_from_slice(&piece);
    }
    String::from_utf8(value).map_err(|_| RestError::http(400, "error-invalid-param", "form fields must be UTF-8"))
}

/// Removes a stored upload after a later failure, and returns that failure.
async fn discard(files: &dyn ::chat::files::FileStore, upload: Option<Upload>, e: RestError) -> RestError {
    if let Some(u) = upload {
        if let Err(d) = files.delete(&u.id).await {
            tracing::warn!(error = %d, id = %u.id, "could not remove an upload whose message failed");
        }
    }
    e
}

/// Where a file is served: `/file-upload/<id>/<name>`, the name percent-encoded.
#[must_use]
pub fn file_url(u: &Upload) -> String {
    let name: String = u
        .name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect();
    format!("/file-upload/{}/{name}", u.id)
}

/// The attachment of an upload's message, Rocket.Chat-shaped (`title_link` to download; images also
/// as `image_url`), with the file's id, size and SHA-256.
fn attachment(u: &Upload, description: Option<String>) -> Value {
    let url = file_url(u);
    let mut a = json!({
        "type": "file", "title": u.name, "title_link": url, "title_link_download": true,
        "fileId": u.id, "size": u.size, "contentType": u.media_type, "sha256": u.sha256,
    });
    if let Some(d) = description.filter(|d| !d.is_empty()) {
        a["description"] = d.into();
    }
    if u.media_type.starts_with("image/") {
        a["image_url"] = url.into();
        a["image_type"] = u.media_type.clone().into();
        a["image_size"] = u.size.into();
    }
    a
}

async fn post(rest: &Rest, caller: &Caller, u: &Upload, fields: Fields) -> Result<Value, RestError> {
    let input = SendInput {
        rid: u.rid.clone(),
        msg: fields.msg.unwrap_or_default(),
        client_msg_id: None,
        tmid: fields.tmid.as_deref().map(MessageId::from),
        tshow: false,
    };
    let svc = rest.chat().service();
    let out = svc.send_with_attachments(caller, input, vec![attachment(u, fields.description)]).await?;
    let message = serde_json::to_value(&out.value.message).unwrap_or_default();
    rest.chat().apply(out.effects).await;
    Ok(message)
}

/// `GET /file-upload/<fileId>/<name>` (the name is only for the browser; the id decides).
pub async fn download(rest: &Rest, conn: &mut Conn, path: &str) -> Result<Reply, RestError> {
    if conn.head.method != "GET" {
        return Err(RestError::http(405, "error-method-not-allowed", "use GET"));
    }
    let caller = rest.authenticate(&conn.head, true).await?;
    let id = path.split('/').next().unwrap_or_default();
    let Some(files) = rest.config().files.clone() else { return Err(not_found()) };
    let Some(upload) = files.get(id).await? else { return Err(not_found()) };
    match rest.chat().service().room_info(&caller, &upload.rid).await {
        Ok((_, Some(_member))) => {}
        Ok((_, None)) | Err(ChatError::NotFound { .. } | ChatError::NotAllowed { .. }) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    }
    let Some((upload, mut reader)) = files.open(id).await? else { return Err(not_found()) };
    // Images (but not SVG, which can carry script) may show inline; everything else downloads.
    let inline = upload.media_type.starts_with("image/") && upload.media_type != "image/svg+xml";
    let disposition = format!(
        "{}; filename=\"{}\"",
        if inline { "inline" } else { "attachment" },
        upload.name.replace(|c: char| !c.is_ascii() || c == '\\', "_")
    );
    let headers = [
        ("Content-Type", upload.media_type.clone()),
        ("Content-Disposition", disposition),
        ("X-Content-Type-Options", "nosniff".to_owned()),
        ("Cache-Control", "private, max-age=0".to_owned()),
        ("ETag", format!("\"{}\"", upload.sha256)),
    ];
    if let Err(e) = conn.respond_stream(&headers, upload.size, &mut reader).await {
        tracing::debug!(error = %e, id, "a download stopped early");
    }
    Ok(Reply::Sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(name: &str, t: &str) -> Upload {
        Upload {
            id: "F1".into(),
            rid: RoomId::from("r"),
            user_id: ::chat::ids::UserId::from("u"),
            name: name.into(),
            media_type: t.into(),
            size: 3,
            sha256: "ab".into(),
            uploaded_at: 0,
            store: "fs".into(),
        }
    }

    #[test]
    fn file_links_are_percent_encoded_and_images_show_as_images() {
        assert_eq!(file_url(&upload("a b/é.png", "image/png")), "/file-upload/F1/a%20b%2F%C3%A9.png");
        let a = attachment(&upload("x.png", "image/png"), Some("look".into()));
        assert_eq!(a["image_url"], "/file-upload/F1/x.png");
        assert_eq!(a["description"], "look");
        let a = attachment(&upload("x.pdf", "application/pdf"), None);
        assert!(a.get("image_url").is_none() && a.get("description").is_none());
        assert_eq!(a["title_link_download"], true);
    }
}
