//! ZIP archives of blobs, written over the [`BlobStore`] port: each item is read from the
//! store as a stream into a ZIP writer whose output streams, through a bounded pipe,
//! into the store's write. Memory stays bounded (a few chunks, whatever the archive's
//! size), and the archive appears under its key only once complete: the store's write
//! publishes whole or not at all.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;
use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, StreamWriter, ZipWriter};

use crate::ports::{BlobError, BlobStore, BlobWrite, ByteRange, ByteStream, StoredBlob};

/// One blob to copy into an archive.
#[derive(Debug, Clone)]
pub struct ArchiveEntry {
    /// The path inside the archive (already safe: see `dataset_item::parse_item_path`).
    pub name: String,
    pub blob_key: String,
    pub size_bytes: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the item {0} is missing from the blob store")]
    MissingItem(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("the ZIP writer failed")]
    Zip(#[from] zip::result::ZipError),
    #[error("the archive writer stopped")]
    Stopped(#[source] tokio::task::JoinError),
}

/// Chunks that may wait between the ZIP writer and the store (each an item's read
/// chunk, 256 KiB from the local store, plus a header at most).
const PIPE_CHUNKS: usize = 4;

/// What the ZIP writer writes, until it is handed on down the pipe.
#[derive(Clone, Default)]
struct Tap(Arc<Mutex<BytesMut>>);

impl Tap {
    fn take(&self) -> Bytes {
        self.0.lock().map(|mut b| b.split().freeze()).unwrap_or_default()
    }
}

impl std::io::Write for Tap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut held = self.0.lock().map_err(|_| std::io::Error::other("archive buffer poisoned"))?;
        held.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The producing half: items in, ZIP bytes out down `pipe`.
struct Producer {
    blobs: Arc<dyn BlobStore>,
    tap: Tap,
    zip: ZipWriter<StreamWriter<Tap>>,
    pipe: mpsc::Sender<std::io::Result<Bytes>>,
}

/// Hands on what the writer produced. False: the store's write has stopped (it failed,
/// and says why), so there is no point going on.
async fn flush(tap: &Tap, pipe: &mpsc::Sender<std::io::Result<Bytes>>) -> bool {
    let bytes = tap.take();
    bytes.is_empty() || pipe.send(Ok(bytes)).await.is_ok()
}

impl Producer {
    async fn run(
        self,
        entries: Vec<ArchiveEntry>,
        generated: Vec<(String, Vec<u8>)>,
        progress: &(dyn Fn(u8) + Send + Sync),
    ) -> Result<(), ArchiveError> {
        let Producer { blobs, tap, mut zip, pipe } = self;
        let total: i64 = entries.iter().map(|e| e.size_bytes.max(0)).sum::<i64>().max(1);
        let mut done: i64 = 0;
        for entry in &entries {
            // Stored, not compressed: images compress badly.
            let large = entry.size_bytes >= u32::MAX as i64;
            let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored).large_file(large);
            zip.start_file(entry.name.as_str(), options)?;
            let blob =
                blobs.open(&entry.blob_key, ByteRange::Full).await?.ok_or_else(|| ArchiveError::MissingItem(entry.blob_key.clone()))?;
            let mut body = blob.body;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(BlobError::Unavailable)?;
                zip.write_all(&chunk).map_err(BlobError::Unavailable)?;
                done += chunk.len() as i64;
                if !flush(&tap, &pipe).await {
                    return Ok(());
                }
            }
            progress(((done * 99) / total).clamp(0, 99) as u8);
        }
        for (name, bytes) in &generated {
            zip.start_file(name.as_str(), SimpleFileOptions::default().compression_method(CompressionMethod::Stored))?;
            zip.write_all(bytes).map_err(BlobError::Unavailable)?;
        }
        zip.finish()?;
        flush(&tap, &pipe).await;
        Ok(())
    }
}

/// Writes a ZIP of `entries` (copied from the store) and `generated` files (manifests)
/// to `key`. `progress` gets 0-99 as items are copied and 100 once the archive is
/// published. Nothing appears under `key` unless the whole archive was written.
pub async fn write_archive(
    blobs: Arc<dyn BlobStore>,
    key: &str,
    entries: Vec<ArchiveEntry>,
    generated: Vec<(String, Vec<u8>)>,
    progress: Arc<dyn Fn(u8) + Send + Sync>,
) -> Result<StoredBlob, ArchiveError> {
    let (pipe, out) = mpsc::channel::<std::io::Result<Bytes>>(PIPE_CHUNKS);
    // Set once the producer has written the archive's last byte: a pipe that closes
    // before then (a producer that failed or panicked) must not read as a whole archive.
    let complete = Arc::new(AtomicBool::new(false));
    let tap = Tap::default();
    let producer = Producer { blobs: blobs.clone(), zip: ZipWriter::new_stream(tap.clone()), tap, pipe: pipe.clone() };
    let producing = {
        let (complete, progress) = (complete.clone(), progress.clone());
        // Its own task, so copying items into the ZIP runs beside the store's hashing
        // and writing rather than taking turns with it.
        tokio::spawn(async move {
            let result = producer.run(entries, generated, &*progress).await;
            match &result {
                Ok(()) => complete.store(true, Ordering::Release),
                Err(e) => {
                    let _ = pipe.send(Err(std::io::Error::other(e.to_string()))).await;
                }
            }
            result
        })
    };
    let body: ByteStream = futures::stream::unfold((out, false), move |(mut out, ended)| {
        let complete = complete.clone();
        async move {
            if ended {
                return None;
            }
            match out.recv().await {
                Some(chunk) => Some((chunk, (out, false))),
                None if complete.load(Ordering::Acquire) => None,
                None => Some((Err(std::io::Error::other("the archive writer stopped early")), (out, true))),
            }
        }
    })
    .boxed();
    let stored = blobs.put_stream(key, body, BlobWrite::UNHASHED).await;
    // The producer's own error says more than the store's "the source failed".
    let produced = producing.await.map_err(ArchiveError::Stopped)?;
    produced?;
    let stored = stored?;
    progress(100);
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Read as _;

    use async_trait::async_trait;

    use super::*;
    use crate::ports::BlobRead;

    /// Blobs in memory; a write lands only once its stream has ended cleanly.
    #[derive(Default)]
    struct MemoryBlobs(Mutex<HashMap<String, Bytes>>);

    #[async_trait]
    impl BlobStore for MemoryBlobs {
        async fn put_stream(&self, key: &str, mut body: ByteStream, _write: BlobWrite) -> Result<StoredBlob, BlobError> {
            let mut whole = BytesMut::new();
            while let Some(chunk) = body.next().await {
                whole.extend_from_slice(&chunk.map_err(BlobError::Source)?);
            }
            let size = whole.len() as u64;
            self.0.lock().unwrap().insert(key.to_string(), whole.freeze());
            Ok(StoredBlob { size, sha256: None })
        }

        async fn open(&self, key: &str, range: ByteRange) -> Result<Option<BlobRead>, BlobError> {
            let Some(bytes) = self.0.lock().unwrap().get(key).cloned() else { return Ok(None) };
            let size = bytes.len() as u64;
            let range = range.resolve(size).ok_or(BlobError::RangeNotSatisfiable { size })?;
            let part = bytes.slice(range.start as usize..range.end as usize);
            // Small chunks, so an item takes many turns through the pipe.
            let chunks: Vec<std::io::Result<Bytes>> = part.chunks(3).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            Ok(Some(BlobRead { size, range, modified: None, version: None, body: futures::stream::iter(chunks).boxed() }))
        }

        async fn delete(&self, key: &str) -> Result<(), BlobError> {
            self.0.lock().unwrap().remove(key);
            Ok(())
        }
    }

    fn entry(name: &str, key: &str, size: usize) -> ArchiveEntry {
        ArchiveEntry { name: name.into(), blob_key: key.into(), size_bytes: size as i64 }
    }

    #[tokio::test]
    async fn items_stream_from_the_store_into_an_archive_published_whole() {
        let store = Arc::new(MemoryBlobs::default());
        let a = b"first item bytes".repeat(50);
        store.put_stream("items/1/1", crate::blobs::one_chunk(a.clone()), BlobWrite::UNHASHED).await.unwrap();
        store.put_stream("items/1/2", crate::blobs::one_chunk(&b"second"[..]), BlobWrite::UNHASHED).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let progress: Arc<dyn Fn(u8) + Send + Sync> = {
            let seen = seen.clone();
            Arc::new(move |p| seen.lock().unwrap().push(p))
        };
        let entries = vec![entry("ward/1-a.png", "items/1/1", a.len()), entry("ward/2-b.png", "items/1/2", 6)];
        let manifest = vec![("manifest.csv".to_string(), b"dataset,item\n".to_vec())];
        let stored = write_archive(store.clone(), "collections/1.zip", entries, manifest, progress).await.unwrap();

        let zip_bytes = store.0.lock().unwrap()["collections/1.zip"].clone();
        assert_eq!(stored.size, zip_bytes.len() as u64);
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
        let mut read = |name: &str| {
            let mut file = archive.by_name(name).unwrap();
            assert_eq!(file.compression(), CompressionMethod::Stored);
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).unwrap();
            bytes
        };
        assert_eq!(read("ward/1-a.png"), a);
        assert_eq!(read("ward/2-b.png"), b"second");
        assert_eq!(read("manifest.csv"), b"dataset,item\n");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.last(), Some(&100));
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    }

    #[tokio::test]
    async fn an_archive_with_a_missing_item_is_not_published() {
        let store = Arc::new(MemoryBlobs::default());
        store.put_stream("items/1/1", crate::blobs::one_chunk(&b"here"[..]), BlobWrite::UNHASHED).await.unwrap();
        let entries = vec![entry("a", "items/1/1", 4), entry("b", "items/1/404", 4)];
        let built = write_archive(store.clone(), "collections/2.zip", entries, vec![], Arc::new(|_| {})).await;
        assert!(matches!(built, Err(ArchiveError::MissingItem(key)) if key == "items/1/404"));
        assert!(!store.0.lock().unwrap().contains_key("collections/2.zip"));
    }
}
