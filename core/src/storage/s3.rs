//! The S3 backend (AWS, MinIO, R2, Spaces, …) through aws-sdk-s3, configured only from
//! settings: endpoint, region, bucket, static credentials, path-style addressing, and
//! checksums only where the API requires them (S3-compatible stores reject or mangle
//! the newer default checksums).

use std::io;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use super::{ByteStream, Object, ObjectKey, ObjectMeta, StorageError};
use crate::settings::S3Settings;

/// Uploads are sent in parts of this size (S3's minimum is 5 MiB); a body that fits in
/// one part is a single PutObject.
const PART_SIZE: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub(super) struct S3Store {
    client: Client,
    bucket: String,
}

impl S3Store {
    pub(super) fn new(settings: &S3Settings) -> Self {
        let credentials = Credentials::new(
            &settings.access_key_id,
            settings.secret_access_key.expose(),
            None,
            None,
            "keel-settings",
        );
        // HTTPS through rustls on ring, the crypto the rest of keel's TLS uses.
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http_client)
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(settings.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
        }
    }

    pub(super) async fn put(
        &self,
        key: &ObjectKey,
        mut body: impl Stream<Item = io::Result<Bytes>> + Send + Unpin,
        content_type: &str,
    ) -> Result<u64, StorageError> {
        let first = fill_part(&mut body).await?;
        if first.len() < PART_SIZE {
            let size = first.len() as u64;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .content_type(content_type)
                .body(S3Body::from(first.freeze()))
                .send()
                .await
                .map_err(backend)?;
            return Ok(size);
        }
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .send()
            .await
            .map_err(backend)?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| StorageError::Backend("S3 returned no upload id".to_owned()))?
            .to_owned();
        let sent = self.send_parts(key, &upload_id, first, &mut body).await;
        match sent {
            Ok((parts, size)) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key.as_str())
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(backend)?;
                Ok(size)
            }
            Err(err) => {
                // Parts of an abandoned upload are billed until aborted.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key.as_str())
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(err)
            }
        }
    }

    async fn send_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        first: BytesMut,
        body: &mut (impl Stream<Item = io::Result<Bytes>> + Send + Unpin),
    ) -> Result<(Vec<CompletedPart>, u64), StorageError> {
        let mut parts = Vec::new();
        let mut size = 0_u64;
        let mut part = first;
        while !part.is_empty() {
            let number = i32::try_from(parts.len() + 1)
                .map_err(|_| StorageError::Backend("too many parts".to_owned()))?;
            size += part.len() as u64;
            let sent = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .part_number(number)
                .body(S3Body::from(part.freeze()))
                .send()
                .await
                .map_err(backend)?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(sent.e_tag().map(str::to_owned))
                    .build(),
            );
            part = fill_part(body).await?;
        }
        Ok((parts, size))
    }

    pub(super) async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(head) => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: head.content_length().map_or(0, |n| n.max(0) as u64),
                content_type: head
                    .content_type()
                    .unwrap_or(super::DEFAULT_CONTENT_TYPE)
                    .to_owned(),
            })),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(err) => Err(backend(err)),
        }
    }

    pub(super) async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StorageError> {
        let got = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(got) => got,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) => return Err(backend(err)),
        };
        let meta = ObjectMeta {
            key: key.clone(),
            size: got.content_length().map_or(0, |n| n.max(0) as u64),
            content_type: got
                .content_type()
                .unwrap_or(super::DEFAULT_CONTENT_TYPE)
                .to_owned(),
        };
        let body: ByteStream = Box::pin(futures_util::stream::unfold(got.body, |mut body| async {
            body.next()
                .await
                .map(|chunk| (chunk.map_err(io::Error::other), body))
        }));
        Ok(Some(Object { meta, body }))
    }

    pub(super) async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            for object in page.map_err(backend)?.contents() {
                let Some(key) = object.key().and_then(|k| ObjectKey::new(k).ok()) else {
                    continue; // written by something else, under a key keel can't name
                };
                found.push(ObjectMeta {
                    key,
                    size: object.size().map_or(0, |n| n.max(0) as u64),
                    // Listing doesn't return it; `head` does.
                    content_type: String::new(),
                });
            }
        }
        Ok(found)
    }

    pub(super) async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<String, StorageError> {
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .presigned(presigning(expires_in)?)
            .await
            .map_err(backend)?;
        Ok(presigned.uri().to_owned())
    }

    pub(super) async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<String, StorageError> {
        let presigned = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .presigned(presigning(expires_in)?)
            .await
            .map_err(backend)?;
        Ok(presigned.uri().to_owned())
    }

    /// The bucket exists and the credentials may use it.
    pub(super) async fn ping(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }
}

fn presigning(expires_in: Duration) -> Result<PresigningConfig, StorageError> {
    PresigningConfig::expires_in(expires_in).map_err(|err| StorageError::Backend(err.to_string()))
}

/// Reads from `body` until a part is full or the body ends.
async fn fill_part(
    body: &mut (impl Stream<Item = io::Result<Bytes>> + Send + Unpin),
) -> Result<BytesMut, StorageError> {
    let mut part = BytesMut::new();
    while part.len() < PART_SIZE {
        match body.next().await {
            Some(chunk) => part.extend_from_slice(&chunk?),
            None => break,
        }
    }
    Ok(part)
}

fn backend<E: std::error::Error + Send + Sync + 'static>(err: E) -> StorageError {
    StorageError::Backend(crate::error::ErrorChain(&err).to_string())
}
