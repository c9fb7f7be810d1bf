//! Drop boxes in the share lifecycle: a drop box is a share that receives. It is created,
//! published, ended and revoked like every share (its own onion service and key); what
//! differs is what it holds: the uploads it received ([`StoredItem`]s), kept after the box
//! ends until the owner deletes them.
//!
//! Invariants:
//! - An item is listed only once every byte of it is stored and the box's tag holds it: the
//!   tag is moved to the new collection first, then the record is written (a crash between
//!   leaves data no record lists, which [`Shares::start`] releases by tagging the record's
//!   collection again).
//! - The box's limits are checked again under its lock when an item is added, so uploads that
//!   ran at once never take more than the box allows together.
//! - Ending a box stops taking uploads and removes its address for good, and keeps its items
//!   (an ended box with none has its data deleted like a share's).

use iroh_blobs::api::TempTag;
use rand::RngCore;
use tokio_util::sync::CancellationToken;
use veilshare_shared::{CreateDropBox, CreateShareFields, ShareId, ShareState, ShareView};

use super::{ShareError, Shares, now_secs};
use crate::core::{
    crash, log_id,
    store::{DropBoxRecord, ImportPermit, StoredFile, StoredItem},
};

/// Why a drop box does not take an upload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefusal {
    /// No such drop box.
    #[error("there is no drop box here")]
    NotFound,
    /// Closed, expired, or its upload quota is used up.
    #[error("this drop box is closed and takes no more uploads")]
    Closed,
    /// A file is larger than the box allows.
    #[error("a file is larger than this drop box takes ({0} at most)")]
    FileTooLarge(String),
    /// The upload does not fit in what is left of the box.
    #[error("the upload is larger than what this drop box still takes ({0})")]
    TooLarge(String),
    /// As many uploads as a box takes at once are running.
    #[error("this drop box is taking other uploads right now")]
    Busy,
}

/// Uploads one drop box takes at once: each may fill the scratch folder up to what the box
/// still takes before its limits are checked together, so strangers cannot multiply that by
/// opening hundreds of streams.
pub const MAX_CONCURRENT_UPLOADS: u32 = 4;

/// An upload admitted into a drop box. Dropping it ends it (the box can then end idle).
#[derive(Debug)]
pub struct Upload {
    shares: Shares,
    id: ShareId,
    /// Bytes one file may have.
    pub max_file: Option<u64>,
    /// Bytes the box still takes, when limited.
    pub bytes_left: Option<u64>,
    /// Whether the box takes a message.
    pub text: bool,
    /// The age recipient to encrypt files to, when the box encrypts.
    pub encrypt_to: Option<String>,
    cancel: CancellationToken,
}

/// An upload, received and stored, to be added to its box.
#[derive(Debug)]
pub struct NewItem {
    /// The files as stored (age files when encrypted).
    pub files: Vec<StoredFile>,
    /// Their temporary tags, which hold them until the box's tag does.
    pub held: Vec<TempTag>,
    /// The uploader's message.
    pub message: Option<String>,
    /// For an encrypted upload: what the uploader sent (plaintext names, sizes, hashes).
    pub sent: Option<Vec<veilshare_shared::FileEntry>>,
    /// Identifying metadata found in the files (unencrypted uploads).
    pub metadata: Vec<veilshare_shared::MetadataReport>,
}

impl Upload {
    /// Cancelled when the owner closes the box.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Checks a file's size so far against the limits; `upload_bytes` is the whole upload's.
    pub fn check(&self, file_bytes: u64, upload_bytes: u64) -> Result<(), UploadRefusal> {
        if let Some(max) = self.max_file
            && file_bytes > max
        {
            return Err(UploadRefusal::FileTooLarge(veilshare_shared::human_size(
                max,
            )));
        }
        if let Some(left) = self.bytes_left
            && upload_bytes > left
        {
            return Err(UploadRefusal::TooLarge(veilshare_shared::human_size(left)));
        }
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.shares.release_flight(&self.id, 0);
    }
}

/// A fresh item id: 64 random bits, hex.
fn new_item_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    data_encoding::HEXLOWER.encode(&bytes)
}

impl Shares {
    /// Creates a drop box: a share whose data is the (empty, at first) collection of what it
    /// received, published like every share.
    pub async fn create_dropbox(
        &self,
        request: CreateDropBox,
        permit: ImportPermit,
    ) -> Result<ShareView, ShareError> {
        let collection = self.0.store.store_collection(&permit, &[]).await?;
        let fields = CreateShareFields {
            max_downloads: None,
            expires_in_secs: request.expires_in_secs,
            label: request.label,
            direct: false,
            restricted: request.restricted,
            keep_metadata: false,
            keep_log: request.keep_log,
            recipients: Vec::new(),
        };
        let dropbox = DropBoxRecord {
            limits: veilshare_shared::DropBoxLimits {
                max_bytes: request.max_bytes,
                max_file: request.max_file,
                max_uploads: request.max_uploads,
                text: request.text,
                encrypt_to: request.encrypt_to,
            },
            uploads: 0,
            items: Vec::new(),
        };
        self.create_record(
            "dropbox",
            Vec::new(),
            collection,
            fields,
            super::RecordExtra {
                dropbox: Some(dropbox),
                metadata: Vec::new(),
            },
            permit,
        )
        .await
    }

    /// Admits an upload into the drop box `id`, or says why not.
    pub fn begin_upload(&self, id: &ShareId) -> Result<Upload, UploadRefusal> {
        let now = now_secs();
        let admitted = self
            .with_entry(id, |entry| {
                let record = &entry.record;
                let dropbox = record.dropbox.as_ref()?;
                let open = !record.state.is_ended()
                    && !crate::core::policy::is_expired(&record.policy, now)
                    && dropbox
                        .limits
                        .max_uploads
                        .is_none_or(|max| dropbox.uploads < max);
                if !open {
                    return Some(Err(UploadRefusal::Closed));
                }
                if entry.flight.transfers >= MAX_CONCURRENT_UPLOADS {
                    return Some(Err(UploadRefusal::Busy));
                }
                entry.flight.transfers += 1;
                let bytes_left = dropbox
                    .limits
                    .max_bytes
                    .map(|max| max.saturating_sub(dropbox.bytes()));
                Some(Ok((
                    dropbox.limits.clone(),
                    bytes_left,
                    entry.cancel.child_token(),
                )))
            })
            .flatten()
            .ok_or(UploadRefusal::NotFound)??;
        let (limits, bytes_left, cancel) = admitted;
        Ok(Upload {
            shares: self.clone(),
            id: id.clone(),
            max_file: limits.max_file,
            bytes_left,
            text: limits.text,
            encrypt_to: limits.encrypt_to,
            cancel,
        })
    }

    /// Adds a received upload to its drop box, checking the box's limits again under its lock
    /// (uploads that ran at once must fit together). The files are stored and held by `held`
    /// until the box's tag holds them. Ends the box when its quota is used up.
    pub async fn add_item(
        &self,
        upload: &Upload,
        new: NewItem,
        permit: ImportPermit,
    ) -> Result<veilshare_shared::ReceivedItem, AddItemError> {
        let NewItem {
            files,
            held,
            message,
            sent,
            metadata,
        } = new;
        let id = &upload.id;
        let persist = self
            .with_entry(id, |e| e.persist.clone())
            .ok_or(UploadRefusal::NotFound)?;
        let guard = persist.lock().await;
        let mut record = self
            .with_entry(id, |e| e.record.clone())
            .ok_or(UploadRefusal::NotFound)?;
        let now = now_secs();
        let Some(dropbox) = record.dropbox.as_mut() else {
            return Err(UploadRefusal::NotFound.into());
        };
        if record.state.is_ended()
            || crate::core::policy::is_expired(&record.policy, now)
            || dropbox
                .limits
                .max_uploads
                .is_some_and(|max| dropbox.uploads >= max)
        {
            return Err(UploadRefusal::Closed.into());
        }
        // The limits count what the uploader sent (an age file is a little larger).
        let size: u64 = match &sent {
            Some(sent) => sent.iter().map(|f| f.size).sum(),
            None => files.iter().map(|f| f.size).sum(),
        };
        if let Some(max) = dropbox.limits.max_bytes {
            let left = max.saturating_sub(dropbox.bytes());
            if size > left {
                return Err(UploadRefusal::TooLarge(veilshare_shared::human_size(left)).into());
            }
        }
        let item = StoredItem {
            id: new_item_id(),
            received_at: now - now % 60,
            files,
            message,
            encrypted: sent.is_some(),
            sent: sent.unwrap_or_default(),
            metadata,
        };
        dropbox.items.push(item.clone());
        dropbox.uploads += 1;
        let quota_used = dropbox
            .limits
            .max_uploads
            .is_some_and(|max| dropbox.uploads >= max)
            || dropbox
                .limits
                .max_bytes
                .is_some_and(|max| dropbox.bytes() >= max);
        let collection = self
            .0
            .store
            .store_collection(&permit, &dropbox.collection_files())
            .await?;
        self.0.store.tag_share(id, &collection).await?;
        crash::point("dropbox.tagged");
        self.0.store.update(record.clone(), None).await?;
        crash::point("dropbox.item_recorded");
        self.with_entry(id, |e| e.record = record);
        drop(guard);
        drop((held, collection, permit));
        // Debug only: the log's timestamp is to the microsecond, and the moment of an upload
        // is what could tie an uploader to their Tor traffic (what is kept is to the minute).
        tracing::debug!(share = %log_id(id), files = item.files.len(), bytes = size, "drop box received an upload");
        let event = veilshare_shared::AuditEvent::Upload {
            files: item.files.len(),
            bytes: size,
        };
        self.0.audit.record(id, now, event).await;
        self.publish_updated(id);
        if quota_used {
            tracing::info!(share = %log_id(id), "drop box quota used up");
            if let Err(error) = self.end(id, ShareState::Exhausted).await {
                tracing::error!(share = %log_id(id), %error, "could not end a full drop box");
            }
        }
        Ok(item_view(&item))
    }

    /// Deletes one item of a drop box (open or ended): its files go with the next collection.
    pub async fn delete_item(&self, id: &ShareId, item: &str) -> Result<(), ShareError> {
        let persist = self
            .with_entry(id, |e| e.persist.clone())
            .ok_or_else(|| ShareError::NotFound(id.clone()))?;
        let guard = persist.lock().await;
        let mut record = self
            .with_entry(id, |e| e.record.clone())
            .ok_or_else(|| ShareError::NotFound(id.clone()))?;
        let Some(dropbox) = record.dropbox.as_mut() else {
            return Err(ShareError::NotFound(id.clone()));
        };
        let before = dropbox.items.len();
        dropbox.items.retain(|kept| kept.id != item);
        if dropbox.items.len() == before {
            return Err(ShareError::ItemNotFound(item.to_owned()));
        }
        let files = dropbox.collection_files();
        let last_of_ended = record.state.is_ended() && files.is_empty();
        let permit = self.0.store.import_permit().await?;
        let collection = self.0.store.store_collection(&permit, &files).await?;
        self.0.store.tag_share(id, &collection).await?;
        self.0.store.update(record.clone(), None).await?;
        self.with_entry(id, |e| e.record = record);
        drop(guard);
        drop((collection, permit));
        tracing::info!(share = %log_id(id), "drop box item deleted");
        let event = veilshare_shared::AuditEvent::UploadDeleted;
        self.0.audit.record(id, now_secs(), event).await;
        self.publish_updated(id);
        if last_of_ended {
            // An ended box that holds nothing has its data deleted like a share's (and says
            // so only once a collection ran).
            let shares = self.clone();
            let id = id.clone();
            tokio::spawn(async move { shares.delete_data_until_done(&id).await });
        } else {
            let store = self.0.store.clone();
            tokio::spawn(async move {
                store.collect_garbage().await;
            });
        }
        Ok(())
    }

    /// At start: tags every drop box's collection as its record lists it, so that data a
    /// crash left tagged but unlisted (an item stored, its record not written) is released.
    pub(super) async fn retag_dropbox(&self, id: &ShareId) -> Result<(), ShareError> {
        let Some(files) = self
            .with_entry(id, |e| {
                e.record
                    .dropbox
                    .as_ref()
                    .map(DropBoxRecord::collection_files)
            })
            .flatten()
        else {
            return Ok(());
        };
        let permit = self.0.store.import_permit().await?;
        let collection = self.0.store.store_collection(&permit, &files).await?;
        self.0.store.tag_share(id, &collection).await?;
        Ok(())
    }
}

/// Why an item was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddItemError {
    /// The box refuses it.
    #[error(transparent)]
    Refused(#[from] UploadRefusal),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] crate::core::store::StoreError),
}

/// An item as the API shows it.
pub(super) fn item_view(item: &StoredItem) -> veilshare_shared::ReceivedItem {
    veilshare_shared::ReceivedItem {
        id: item.id.clone(),
        received_at: item.received_at,
        files: item
            .files
            .iter()
            .map(|f| veilshare_shared::FileEntry {
                name: f.name.clone(),
                size: f.size,
                hash: f.hash.clone(),
            })
            .collect(),
        message: item.message.clone(),
        encrypted: item.encrypted,
        sent: item.sent.clone(),
        metadata: item.metadata.clone(),
    }
}
