//! Fetches the default guest images: `cargo run -p ftvm-host --example fetch_images [DIR [MIRROR]]`.
//!
//! `FTVM_IMAGES_REFRESH=1` asks the archive for newer packages even when the cache is complete.
//!
//! The command line's `ftvm images fetch` does the same; this example is for working on
//! the fetcher alone.

use std::process::ExitCode;

use ftvm_host::images::{default_cache_dir, fetch, FetchOptions};

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(Into::into)
        .unwrap_or_else(default_cache_dir);
    let opts = FetchOptions {
        progress: true,
        mirror: std::env::args().nth(2),
        refresh: std::env::var_os("FTVM_IMAGES_REFRESH").is_some(),
    };
    match fetch(&dir, &opts) {
        Ok(images) => {
            println!("firmware {}", images.firmware.display());
            println!("kernel   {}", images.kernel.display());
            println!("initrd   {}", images.initrd.display());
            println!("release  {}", images.kernel_version);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
