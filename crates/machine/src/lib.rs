//! The virt board of ftvm: memory map, device tree, boot, the event boundary, run loop.
