//! Zeroed memory for the frozen matcher, asked to be backed by transparent huge pages.
//!
//! A lookup in a big list lands on a random page every time: with 4 KiB pages a million
//! rules span about 9,000 of them, far more than the TLB holds, so each miss in the data
//! cache is also a page walk (two-dimensional, and so slower still, under a hypervisor).
//! With 2 MiB pages the same tables fit in a few dozen TLB entries. Big regions are
//! therefore anonymous mappings with `MADV_HUGEPAGE` (honoured when the kernel's THP mode
//! is `always` or `madvise`, ignored otherwise); small ones stay on the heap. The mapping
//! is returned to the system when the list is dropped (a reload frees the old list's
//! memory at once, instead of leaving it to the allocator).

use memmap2::{Advice, MmapMut};

/// Regions from this size up are mapped (a huge page is 2 MiB; smaller gain nothing).
const MAP_FROM: usize = 2 << 20;

/// A fixed-size, zero-initialised array of `u64`, also readable as bytes.
pub(super) enum Words {
    /// An anonymous mapping (page-aligned, so `u64`-aligned).
    Map(MmapMut),
    /// A heap array, for small regions or when the mapping failed.
    Heap(Box<[u64]>),
}

impl Default for Words {
    fn default() -> Self {
        Self::Heap(Box::default())
    }
}

impl std::fmt::Debug for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Self::Map(_) => "map",
            Self::Heap(_) => "heap",
        };
        write!(f, "Words({kind}, {} words)", self.as_slice().len())
    }
}

impl Words {
    /// `n` zero words.
    pub(super) fn zeroed(n: usize) -> Self {
        let bytes = n.saturating_mul(8);
        if bytes >= MAP_FROM
            && let Ok(map) = MmapMut::map_anon(bytes)
        {
            if let Err(e) = map.advise(Advice::HugePage) {
                tracing::debug!(error = %e, "huge pages not available for the block list");
            }
            return Self::Map(map);
        }
        Self::Heap(vec![0; n].into_boxed_slice())
    }

    /// The words.
    #[inline]
    pub(super) fn as_slice(&self) -> &[u64] {
        match self {
            Self::Map(m) => bytemuck::cast_slice(&m[..]),
            Self::Heap(b) => b,
        }
    }

    /// The words, writable.
    pub(super) fn as_mut_slice(&mut self) -> &mut [u64] {
        match self {
            Self::Map(m) => bytemuck::cast_slice_mut(&mut m[..]),
            Self::Heap(b) => b,
        }
    }

    /// The same memory as bytes.
    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self.as_slice())
    }

    /// The same memory as bytes, writable.
    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(self.as_mut_slice())
    }

    /// Bytes held.
    pub(super) fn size(&self) -> usize {
        self.as_slice().len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_mapped_regions_are_zeroed_and_writable() {
        for n in [0, 10, MAP_FROM / 8 + 3] {
            let mut w = Words::zeroed(n);
            assert_eq!(w.as_slice().len(), n);
            assert!(w.as_slice().iter().all(|&x| x == 0));
            if n > 0 {
                w.as_mut_slice()[n - 1] = u64::MAX;
                assert_eq!(w.bytes()[n * 8 - 1], 0xff);
                w.bytes_mut()[0] = 7;
                assert_eq!(w.as_slice()[0], 7);
            }
            assert_eq!(w.size(), n * 8);
        }
        assert!(matches!(Words::zeroed(MAP_FROM / 8), Words::Map(_)));
    }
}
