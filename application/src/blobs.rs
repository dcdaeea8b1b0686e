//! Small helpers over the [`BlobStore`] port for callers that hold, or must hold, a
//! blob's bytes whole: an uploaded image about to be decoded, a model about to be
//! loaded. Everything large goes through the port's streams instead.

use bytes::Bytes;
use futures::StreamExt;

use crate::ports::{BlobError, BlobStore, ByteRange, ByteStream};

/// Bytes already in memory, as the one chunk of a stream.
pub fn one_chunk(bytes: impl Into<Bytes>) -> ByteStream {
    let bytes: Bytes = bytes.into();
    futures::stream::once(async move { Ok(bytes) }).boxed()
}

/// The whole blob under `key` in memory (None: there is none), for callers that
/// need every byte at once and have bounded what they stored.
pub async fn read_to_vec(blobs: &dyn BlobStore, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
    let Some(blob) = blobs.open(key, ByteRange::Full).await? else { return Ok(None) };
    let mut bytes = Vec::with_capacity(usize::try_from(blob.size).unwrap_or(0));
    let mut body = blob.body;
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.map_err(BlobError::Unavailable)?);
    }
    Ok(Some(bytes))
}
