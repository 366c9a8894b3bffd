//! The enforcer's live heap: bytes allocated and not yet freed, counted by the global allocator
//! the binary installs ([`Counting`]) and exported as `palisade_enforcer_heap_bytes`.
//!
//! Resident memory is a poor leak signal for a process whose heap is a few MiB: the allocator
//! keeps freed pages, and every thread of the blocking pool (one per `iptables-restore` in
//! flight) brings a stack, so the two enforcers of one fresh install were measured 1 MiB of RSS apart.
//! The live heap counts neither; it is what grows when something is kept that should not be.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting the bytes it hands out and takes back.
pub struct Counting;

// SAFETY: every call is forwarded to `System` unchanged; the counter only observes the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, hence from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; on failure the old block stays allocated and counted.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

/// Bytes allocated through [`Counting`] and not yet freed; 0 in a process that did not install
/// it as its global allocator.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// [`live_bytes`] as a Prometheus gauge, read when the metrics are rendered.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeapGauge;

impl prometheus_client::encoding::EncodeMetric for HeapGauge {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&(live_bytes() as u64))
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Gauge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_is_allocated_until_it_is_freed() {
        let a = Counting;
        let layout = Layout::from_size_align(4096, 8).expect("a valid layout");
        let before = live_bytes();
        // SAFETY: a non-zero layout; the block is grown, then freed with the layout it has.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(live_bytes() - before, 4096);
            let p = a.realloc(p, layout, 10_000);
            assert!(!p.is_null());
            assert_eq!(live_bytes() - before, 10_000);
            a.dealloc(
                p,
                Layout::from_size_align(10_000, 8).expect("a valid layout"),
            );
        }
        assert_eq!(live_bytes(), before);
    }
}
