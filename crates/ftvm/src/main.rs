//! The ftvm command line.
fn main() {}
