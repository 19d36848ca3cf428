//! Everything of ftvm that touches the host: guest images, terminal, backends.

pub mod images;
