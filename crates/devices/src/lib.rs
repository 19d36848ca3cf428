//! Device models of ftvm: CLINT, PLIC, UART, power, RTC, virtio. Pure models: no threads, no clocks.
