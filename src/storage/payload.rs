//! What a PutObject or UploadPart sends: bytes in memory, or a range of a local file read
//! as it is sent (so a large body costs one read chunk of memory, not its whole length).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

/// How much of a file one read takes.
const FILE_CHUNK: u64 = 128 * 1024;

/// A request body of known length.
pub struct Payload {
    len: u64,
    source: Source,
}

enum Source {
    Memory(Bytes),
    File { file: Arc<File>, offset: u64 },
}

impl Payload {
    /// `len` bytes of `file` from `offset`. The file is read with positional reads, so
    /// several payloads can share it, and a retried request reads its range again.
    pub fn file_range(file: Arc<File>, offset: u64, len: u64) -> Self {
        Self {
            len,
            source: Source::File { file, offset },
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn into_stream(self) -> ByteStream {
        match self.source {
            Source::Memory(bytes) => bytes.into(),
            Source::File { file, offset } => {
                let end = offset + self.len;
                ByteStream::new(SdkBody::retryable(move || {
                    SdkBody::from_body_1_x(FileRange {
                        file: file.clone(),
                        pos: offset,
                        end,
                        read: None,
                    })
                }))
            }
        }
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        Self {
            len: bytes.len() as u64,
            source: Source::Memory(bytes),
        }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

/// A range of a file as an HTTP body, one chunk read at a time on the blocking pool.
struct FileRange {
    file: Arc<File>,
    pos: u64,
    end: u64,
    read: Option<JoinHandle<io::Result<Bytes>>>,
}

impl Body for FileRange {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.pos >= self.end {
            return Poll::Ready(None);
        }
        let (pos, want) = (self.pos, (self.end - self.pos).min(FILE_CHUNK));
        let file = self.file.clone();
        let read = self.read.get_or_insert_with(|| {
            tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; want as usize];
                file.read_exact_at(&mut buf, pos)?;
                Ok(Bytes::from(buf))
            })
        });
        let chunk = ready!(Pin::new(read).poll(cx));
        self.read = None;
        let chunk = chunk.map_err(io::Error::other)??;
        self.pos += chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.pos)
    }
}
