//! `GET`/`PUT /storage/{key}`: where the local backend's signed links lead. Each request
//! must carry an unexpired signature for its method and key (and, for PUT, its
//! `Content-Type`); anything else is 403. Downloads are sandboxed so an uploaded HTML
//! file can't run script on keel's origin.

use poem::http::{HeaderValue, StatusCode, header};
use poem::web::{Path, Query};
use poem::{Body, Endpoint, EndpointExt, Request, Response, handler};
use serde::Deserialize;

use super::{LinkMethod, ObjectKey, Storage};
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
struct Signed {
    expires: u64,
    signature: String,
}

/// The endpoint to mount at `/storage/*key`; it answers 403 to everything on S3.
pub fn endpoint(storage: Storage) -> impl Endpoint {
    poem::get(download).put(upload).data(storage)
}

fn refused() -> ApiError {
    ApiError::Forbidden("The link is invalid or has expired.".to_owned())
}

/// The key and storage of a request whose link checks out for `method`.
fn checked(
    req: &Request,
    key: &str,
    signed: &Signed,
    method: LinkMethod,
    content_type: &str,
) -> Result<(Storage, ObjectKey), ApiError> {
    let storage = req
        .data::<Storage>()
        .ok_or_else(|| ApiError::internal("no Storage installed for /storage"))?
        .clone();
    let key = ObjectKey::new(key).map_err(|_| refused())?;
    if storage.check_link(
        method,
        &key,
        content_type,
        signed.expires,
        &signed.signature,
    ) {
        Ok((storage, key))
    } else {
        Err(refused())
    }
}

#[handler]
async fn download(
    req: &Request,
    Path(key): Path<String>,
    Query(signed): Query<Signed>,
) -> Result<Response, ApiError> {
    let (storage, key) = checked(req, &key, &signed, LinkMethod::Get, "")?;
    let object = storage.get(&key).await?.ok_or(ApiError::NotFound)?;
    let content_type = HeaderValue::from_str(&object.meta.content_type)
        .unwrap_or(HeaderValue::from_static(super::DEFAULT_CONTENT_TYPE));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, object.meta.size)
        .header(header::CACHE_CONTROL, "private, max-age=60")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        )
        .body(Body::from_bytes_stream(object.body)))
}

#[handler]
async fn upload(
    req: &Request,
    Path(key): Path<String>,
    Query(signed): Query<Signed>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let content_type = req.content_type().unwrap_or_default().to_owned();
    let (storage, key) = checked(req, &key, &signed, LinkMethod::Put, &content_type)?;
    storage
        .put(&key, body.into_bytes_stream(), &content_type)
        .await?;
    Ok(StatusCode::OK)
}
