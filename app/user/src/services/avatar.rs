//! The signed-in user's avatar: the image in object storage, its key on the user row.
//!
//! A new avatar is stored first, then the row points at it. If that transaction fails,
//! the new object is deleted again; once it commits, the replaced object is deleted.
//! Only a crash between the two steps can leave an object no row names: it then stays
//! under `avatars/<user id>/` until an operator sweeps that prefix (`docs/storage.md`).

use std::time::Duration;

use crate::actions;
use bytes::Bytes;
use keel_activity::record;
use keel_core::ApiError;
use keel_core::auth::Principal;
use keel_core::crud::CrudBase;
use keel_core::storage::ObjectKey;
use serde_json::json;

use super::{UserService, own_account_entry, profile_key, profile_stamp};
use crate::crud::users::{self, UserCrud};
use crate::models::{Profile, ProfileDetails, UserChanges};

/// How long an avatar link in a response stays usable.
const AVATAR_URL_TTL: Duration = Duration::from_secs(15 * 60);

/// The image types an avatar may be, decided by the bytes, never by the client's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl ImageType {
    /// The type whose signature starts `bytes`, if it is one we accept.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Self::Png),
            [0xFF, 0xD8, 0xFF, ..] => Some(Self::Jpeg),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Self::Gif),
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'E',
                b'B',
                b'P',
                ..,
            ] => Some(Self::Webp),
            _ => None,
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }
}

impl UserService {
    /// The largest avatar accepted, in bytes (`AVATAR_MAX_BYTES`).
    pub fn avatar_max_bytes(&self) -> usize {
        self.avatar_max_bytes
    }

    /// The caller as `/me` shows them, with a fresh link to their avatar.
    pub async fn me(&self, caller: &Principal) -> Result<Profile, ApiError> {
        let id = caller.user_id;
        // The miss and the avatar link are boxed: their futures (a pooled query, an S3
        // presign) are kilobytes, which every request would otherwise carry and copy
        // through each layer of middleware, cached or not.
        let load = || {
            Box::pin(async move {
                let mut conn = self.db.conn().await?;
                Ok::<_, ApiError>(ProfileDetails::from(UserCrud::get(&mut conn, id).await?))
            })
        };
        let (key, stamp) = (profile_key(id), profile_stamp(id));
        let details = self
            .cache
            .get_or_compute_stamped(&key, &[&stamp], self.profile_ttl, load)
            .await?;
        let avatar_url = match details.avatar_key.as_deref() {
            Some(key) => Box::pin(self.avatar_url(key)).await?,
            None => None,
        };
        Ok(Profile {
            principal: caller.clone(),
            avatar_url,
            details,
        })
    }

    async fn avatar_url(&self, key: &str) -> Result<Option<String>, ApiError> {
        let Ok(key) = ObjectKey::new(key) else {
            return Ok(None);
        };
        Ok(Some(self.storage.presign_get(&key, AVATAR_URL_TTL).await?))
    }

    /// Stores `image` as the caller's avatar, replacing the previous one. 415 unless it
    /// is a PNG, JPEG, GIF or WebP image (the size limit is the route's).
    pub async fn set_avatar(&self, caller: &Principal, image: Bytes) -> Result<Profile, ApiError> {
        let kind = ImageType::sniff(&image).ok_or_else(|| {
            ApiError::UnsupportedMediaType(
                "An avatar must be a PNG, JPEG, GIF or WebP image.".to_owned(),
            )
        })?;
        let id = caller.user_id;
        let key = ObjectKey::new(&format!(
            "avatars/{id}/{}.{}",
            uuid::Uuid::now_v7(),
            kind.extension()
        ))
        .map_err(ApiError::internal)?;
        let size = image.len();
        self.storage.put_bytes(&key, image, kind.mime()).await?;

        let entry = own_account_entry(actions::AVATAR_CHANGED, caller, "changed their avatar")
            .metadata(json!({"type": kind.mime(), "bytes": size}));
        let new_key = key.as_str().to_owned();
        let replaced = self
            .db
            .transaction(async move |conn| {
                let before = users::lock(conn, id).await?;
                let changes = UserChanges {
                    avatar_key: Some(Some(new_key)),
                    ..UserChanges::default()
                };
                UserCrud::update(conn, id, &changes).await?;
                record(conn, entry).await?;
                Ok::<_, ApiError>(before.avatar_key)
            })
            .await;
        let replaced = match replaced {
            Ok(replaced) => replaced,
            Err(err) => {
                self.discard(key.as_str()).await;
                return Err(err);
            }
        };
        // Forgotten before the old image goes, so no replica links to a deleted object.
        self.user_changed(id).await;
        if let Some(old) = replaced {
            self.discard(&old).await;
        }
        self.me(caller).await
    }

    /// Removes the caller's avatar; removing none is not an error.
    pub async fn delete_avatar(&self, caller: &Principal) -> Result<(), ApiError> {
        let id = caller.user_id;
        let entry = own_account_entry(actions::AVATAR_REMOVED, caller, "removed their avatar");
        let removed = self
            .db
            .transaction(async move |conn| {
                let before = users::lock(conn, id).await?;
                if before.avatar_key.is_some() {
                    let changes = UserChanges {
                        avatar_key: Some(None),
                        ..UserChanges::default()
                    };
                    UserCrud::update(conn, id, &changes).await?;
                    record(conn, entry).await?;
                }
                Ok::<_, ApiError>(before.avatar_key)
            })
            .await?;
        if let Some(old) = removed {
            self.user_changed(id).await;
            self.discard(&old).await;
        }
        Ok(())
    }

    /// Deletes an object no row points at any more; a failure leaves it behind (logged).
    async fn discard(&self, key: &str) {
        let deleted = match ObjectKey::new(key) {
            Ok(key) => self.storage.delete(&key).await.map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(error) = deleted {
            tracing::warn!(key, %error, "avatar object left behind; sweep avatars/ later");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ImageType;

    #[test]
    fn types_are_decided_by_the_bytes() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0];
        assert_eq!(ImageType::sniff(&png), Some(ImageType::Png));
        assert_eq!(
            ImageType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageType::Jpeg)
        );
        assert_eq!(ImageType::sniff(b"GIF89a...."), Some(ImageType::Gif));
        assert_eq!(
            ImageType::sniff(b"RIFF\x10\0\0\0WEBPVP8 "),
            Some(ImageType::Webp)
        );
        for other in [
            &b"<svg xmlns="[..],
            b"<html>",
            b"RIFF\0\0\0\0WAVE",
            b"\x89PN",
            b"",
        ] {
            assert_eq!(ImageType::sniff(other), None);
        }
    }
}
