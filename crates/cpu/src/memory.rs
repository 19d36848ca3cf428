//! Guest RAM.
//!
//! One contiguous block of physical memory at a base address (0x8000_0000 on
//! the `virt` board). The hart reaches it directly, without going through the
//! [`Bus`](crate::Bus); the loader and device DMA use [`Memory::read_bytes`] and
//! [`Memory::write_bytes`], which are bounds-checked.

use crate::decode::CodeCache;

/// An access by the host (loader, DMA) outside guest RAM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The range `addr..addr+len` is not entirely inside RAM.
    #[error("Access of {len} bytes at {addr:#x} is outside guest RAM {base:#x}..{end:#x}")]
    OutOfRange {
        /// First guest-physical address of the access.
        addr: u64,
        /// Length of the access in bytes.
        len: u64,
        /// First address of RAM.
        base: u64,
        /// First address after RAM.
        end: u64,
    },
}

/// Guest RAM: `size` bytes of zero-initialised memory at physical `base`.
pub struct Memory {
    base: u64,
    pub(crate) data: Vec<u8>,
    generation: u64,
    /// Decoded instructions of the pages the hart executes from.
    pub(crate) code: CodeCache,
    /// One bit per 4 KiB page that may have been written since the last
    /// [`Memory::take_dirty`]: a superset of the pages really written.
    dirty: Vec<u64>,
}

impl Memory {
    /// Creates `size` bytes of zeroed RAM at guest-physical address `base`.
    ///
    /// The hart caches translations per 4 KiB page; a trailing partial page
    /// is still usable but served by the slow path.
    pub fn new(base: u64, size: u64) -> Memory {
        let data = vec![0; usize::try_from(size).unwrap_or(usize::MAX)];
        let pages = data.len() >> 12;
        Memory {
            base,
            generation: 0,
            code: CodeCache::new(pages),
            dirty: vec![0; (data.len() >> 12).div_ceil(64) + 1],
            data,
        }
    }

    /// The first guest-physical address of RAM.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The size of RAM in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// Counts calls to [`Memory::write_bytes`]. A cache of decoded guest code
    /// compares it to notice writes that did not come from the hart.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The whole of RAM, for snapshots and digests.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, MemoryError> {
        let err = || MemoryError::OutOfRange {
            addr,
            len: len as u64,
            base: self.base,
            end: self.base + self.size(),
        };
        let off = addr.checked_sub(self.base).ok_or_else(err)?;
        let end = off.checked_add(len as u64).ok_or_else(err)?;
        if end > self.size() {
            return Err(err());
        }
        Ok(off as usize..end as usize)
    }

    /// Copies RAM at guest-physical `addr` into `buf`.
    pub fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }

    /// Copies `data` into RAM at guest-physical `addr`.
    pub fn write_bytes(&mut self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        let r = self.range(addr, data.len())?;
        self.code.invalidate_range(r.start, r.end);
        if !data.is_empty() {
            for page in r.start >> 12..=(r.end - 1) >> 12 {
                self.mark_dirty(page << 12);
            }
        }
        self.data[r].copy_from_slice(data);
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// Notes that the page holding RAM offset `off` may have been written.
    #[inline(always)]
    pub(crate) fn mark_dirty(&mut self, off: usize) {
        let page = off >> 12;
        if let Some(w) = self.dirty.get_mut(page >> 6) {
            *w |= 1 << (page & 63);
        }
    }

    /// The RAM page numbers (offset / 4096) that may have been written since
    /// the last call, in increasing order; clears the record. The hart must
    /// also forget its write translations (see `Hart::take_dirty_pages`).
    pub(crate) fn take_dirty(&mut self) -> Vec<usize> {
        let mut pages = Vec::new();
        for (i, w) in self.dirty.iter_mut().enumerate() {
            let mut bits = std::mem::take(w);
            while bits != 0 {
                pages.push(i * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
        pages
    }

    /// The offset into RAM of physical `addr` if `len` bytes from there are RAM.
    #[inline(always)]
    pub(crate) fn offset(&self, addr: u64, len: u64) -> Option<usize> {
        let off = addr.wrapping_sub(self.base);
        if off < self.data.len() as u64 && off + len <= self.data.len() as u64 {
            Some(off as usize)
        } else {
            None
        }
    }

    /// Reads `len` (1, 2, 4 or 8) bytes little-endian at RAM offset `off`.
    #[inline(always)]
    pub(crate) fn load(&self, off: usize, len: usize) -> u64 {
        let mut b = [0u8; 8];
        b[..len].copy_from_slice(&self.data[off..off + len]);
        u64::from_le_bytes(b)
    }

    /// Writes the low `len` bytes of `v` little-endian at RAM offset `off`.
    #[inline(always)]
    pub(crate) fn store(&mut self, off: usize, len: usize, v: u64) {
        self.data[off..off + len].copy_from_slice(&v.to_le_bytes()[..len]);
    }
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("base", &format_args!("{:#x}", self.base))
            .field("size", &format_args!("{:#x}", self.size()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_write_then_read_bytes_round_trips() {
        let mut m = Memory::new(0x8000_0000, 0x1000);
        m.write_bytes(0x8000_0ffc, &[1, 2, 3, 4]).expect("in RAM");
        let mut b = [0; 4];
        m.read_bytes(0x8000_0ffc, &mut b).expect("in RAM");
        assert_eq!(b, [1, 2, 3, 4]);
        assert_eq!(m.generation(), 1);
    }

    #[test]
    fn test_write_past_end_is_an_error_naming_the_address() {
        let mut m = Memory::new(0x8000_0000, 0x1000);
        let e = m.write_bytes(0x8000_0ffe, &[0; 4]).expect_err("past end");
        assert!(e.to_string().contains("0x80000ffe"));
    }

    #[test]
    fn test_read_below_base_is_an_error() {
        let m = Memory::new(0x8000_0000, 0x1000);
        let mut b = [0; 1];
        assert!(m.read_bytes(0x7fff_ffff, &mut b).is_err());
    }
}
