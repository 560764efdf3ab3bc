//! The memory allocator of the plugin binaries.
//!
//! A plugin lives for a few milliseconds and makes a few hundred small allocations. musl's
//! allocator (mallocng, the libc of the release builds) returns freed memory to the kernel
//! eagerly: one bridge ADD made about 60 `mmap` and 56 `munmap` calls of 4-16 KiB, and every
//! `munmap` of a process with more than one thread is a TLB shootdown on the other cores.
//! That is about a fifth of the CPU an ADD costs (measured with 16 concurrent bridge ADDs:
//! 2.4 ms of system CPU per ADD with mallocng, 1.8-2.0 ms with this allocator), which is
//! what bounds concurrent ADDs on a busy node.
//!
//! dlmalloc (the Rust port that std uses on wasm) takes memory from the kernel in 64 KiB
//! segments and gives it back only when more than 2 MiB sit free at the top, so a plugin
//! maps a few segments once. It serializes allocations behind one lock, which suits a
//! plugin (a thread or two) and would not suit the isolator's runtime threads: only the
//! plugin binaries use it, through [`plugin_allocator!`](crate::plugin_allocator).
//!
//! Forked children: the lock is not reset in a forked child, so a child must not allocate
//! before it execs or exits. Every fork in our plugins already keeps to that (the pre-exec of
//! [`crate::runtime::dies_with_parent`], the detached children of `cni_net::detach`), because
//! they may run while another thread holds any lock.

/// The allocator type: dlmalloc behind one global lock.
pub use dlmalloc::GlobalDlmalloc as PluginAllocator;

/// Makes [`PluginAllocator`] the global allocator of the binary that invokes it (once, in
/// its `main.rs`).
#[macro_export]
macro_rules! plugin_allocator {
    () => {
        #[global_allocator]
        static PLUGIN_ALLOCATOR: $crate::alloc::PluginAllocator = $crate::alloc::PluginAllocator;
    };
}
