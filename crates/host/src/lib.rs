//! Everything of ftvm that touches the host: guest images, terminal, backends.

pub mod backends;
pub mod images;
