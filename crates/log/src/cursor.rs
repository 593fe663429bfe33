//! Sequential, buffered decoding of the records of one segment file.

use crate::record::{DecodeFault, RECORD_HEADER_BYTES, RecordView, decode, encoded_len};
use crate::segment::SEGMENT_HEADER_BYTES;
use crate::storage::StorageFile;
use cairn_types::limits::RECORD_PAYLOAD_BYTES_MAX;
use std::io;
use std::sync::Arc;

const READ_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// What the cursor finds at its position.
pub(crate) enum Step<'a> {
    /// An intact record (CRC checked) at `offset`, `len` bytes long.
    Record {
        view: RecordView<'a>,
        offset: u64,
        len: usize,
    },
    /// The file ends exactly here.
    End { offset: u64 },
    /// Bytes that are not an intact record start at `offset`.
    Fault { offset: u64, fault: DecodeFault },
}

pub(crate) struct SegmentCursor {
    file: Arc<dyn StorageFile>,
    file_len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    /// Index in `buf` of the next record.
    pos: usize,
}

impl SegmentCursor {
    /// A cursor at the first record, after the header.
    pub(crate) fn new(file: Arc<dyn StorageFile>) -> io::Result<Self> {
        let file_len = file.len()?;
        Ok(SegmentCursor {
            file,
            file_len,
            buf: Vec::new(),
            buf_offset: SEGMENT_HEADER_BYTES,
            pos: 0,
        })
    }

    /// File offset of the next record.
    pub(crate) fn offset(&self) -> u64 {
        self.buf_offset + self.pos as u64
    }

    pub(crate) fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Looks at the file's length again (a live segment grows).
    pub(crate) fn refresh_len(&mut self) -> io::Result<()> {
        self.file_len = self.file.len()?;
        Ok(())
    }

    pub(crate) fn advance(&mut self, len: usize) {
        self.pos += len;
    }

    /// Ensures `needed` bytes from `pos` are buffered, or as many as the file has.
    fn fill(&mut self, needed: usize) -> io::Result<()> {
        if self.pos > self.buf.len() {
            // Advanced past what was read (skipping records by their length): read from there.
            self.buf_offset += self.pos as u64;
            self.buf.clear();
            self.pos = 0;
        }
        if self.buf.len() - self.pos >= needed {
            return Ok(());
        }
        self.buf.drain(..self.pos);
        self.buf_offset += self.pos as u64;
        self.pos = 0;
        let file_left = self
            .file_len
            .saturating_sub(self.buf_offset + self.buf.len() as u64);
        let want = needed.max(READ_CHUNK_BYTES).saturating_sub(self.buf.len());
        let want = usize::try_from(file_left).map_or(want, |left| want.min(left));
        if want == 0 {
            return Ok(());
        }
        let start = self.buf.len();
        self.buf.resize(start + want, 0);
        let read_offset = self.buf_offset + start as u64;
        let mut filled = 0;
        while filled < want {
            let count = self
                .file
                .read_at(read_offset + filled as u64, &mut self.buf[start + filled..])?;
            if count == 0 {
                break;
            }
            filled += count;
        }
        self.buf.truncate(start + filled);
        Ok(())
    }

    /// Decodes the record at the cursor without moving past it.
    pub(crate) fn peek(&mut self) -> io::Result<Step<'_>> {
        let offset = self.offset();
        if offset >= self.file_len {
            return Ok(Step::End { offset });
        }
        self.fill(crate::record::RECORD_OVERHEAD_BYTES)?;
        if let Err(DecodeFault::Incomplete { needed }) = decode(&self.buf[self.pos..]) {
            self.fill(needed)?;
        }
        Ok(match decode(&self.buf[self.pos..]) {
            Ok((view, len)) => Step::Record { view, offset, len },
            Err(fault) => Step::Fault { offset, fault },
        })
    }

    /// The LSN and encoded length of the record at the cursor, read from its length and LSN
    /// fields alone: nothing is checked but that the length is possible and the bytes are there.
    /// For skipping records that need no check; `None` where no whole record could be.
    pub(crate) fn peek_frame(&mut self) -> io::Result<Option<(u64, usize)>> {
        let offset = self.offset();
        if offset >= self.file_len {
            return Ok(None);
        }
        self.fill(RECORD_HEADER_BYTES)?;
        let head = &self.buf[self.pos..];
        if head.len() < RECORD_HEADER_BYTES {
            return Ok(None);
        }
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&head[0..4]);
        let payload_len = u32::from_le_bytes(len_bytes);
        if payload_len > RECORD_PAYLOAD_BYTES_MAX {
            return Ok(None);
        }
        let mut lsn_bytes = [0u8; 8];
        lsn_bytes.copy_from_slice(&head[8..16]);
        let len = encoded_len(payload_len as usize);
        if offset + len as u64 > self.file_len {
            return Ok(None);
        }
        Ok(Some((u64::from_le_bytes(lsn_bytes), len)))
    }

    /// Reads every byte from `offset` to the end of the file (for damage analysis).
    pub(crate) fn read_rest(&self, offset: u64) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.file_len.saturating_sub(offset))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "segment too large"))?;
        let mut rest = vec![0u8; len];
        crate::storage::read_exact_at(self.file.as_ref(), offset, &mut rest)?;
        Ok(rest)
    }
}
