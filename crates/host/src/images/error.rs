//! The errors of fetching, building and locating guest images.

use std::path::PathBuf;

/// What went wrong while fetching, building or locating the guest images.
///
/// Every message is one line that names the bad value, so the command line can print it
/// as is.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// The cache directory has no complete set of images.
    #[error("guest images not found in {}: run `ftvm images fetch`", dir.display())]
    NotFound {
        /// The cache directory that was searched.
        dir: PathBuf,
    },

    /// Neither apt source file names an http or https mirror, and none was given.
    #[error("no Debian mirror found in {}: pass one with --mirror", searched)]
    NoMirror {
        /// The files that were read, comma-separated.
        searched: String,
    },

    /// The mirror could not be reached or refused a request.
    #[error("cannot reach the Debian archive at {url}: {cause}")]
    Unreachable {
        /// The URL that was requested.
        url: String,
        /// What the HTTP client reported.
        cause: String,
    },

    /// A downloaded or cached file does not have the checksum the index gives for it.
    #[error("checksum mismatch for {file}: expected SHA256 {expected}, got {got}")]
    ChecksumMismatch {
        /// The file that was checked.
        file: String,
        /// The SHA-256 the index gives, in hex.
        expected: String,
        /// The SHA-256 of the bytes received, in hex.
        got: String,
    },

    /// A downloaded file does not have the size the index gives for it.
    #[error("size mismatch for {file}: expected {expected} bytes, got {got}")]
    SizeMismatch {
        /// The file that was checked.
        file: String,
        /// The size the index gives.
        expected: u64,
        /// The number of bytes received.
        got: u64,
    },

    /// The package index does not list a package that the guest needs.
    #[error("package {package} not found in {index}")]
    PackageNotFound {
        /// The package name, or a pattern of names.
        package: String,
        /// The index (URL) that was searched.
        index: String,
    },

    /// A stanza of the package index lacks a field or has a malformed one.
    #[error("malformed package index {index}: {reason}")]
    BadIndex {
        /// The index (URL) being parsed.
        index: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An xz stream could not be decompressed.
    #[error("cannot decompress {what}: {cause}")]
    Decompress {
        /// The file being decompressed.
        what: String,
        /// What the decoder reported.
        cause: String,
    },

    /// An external program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program name.
        program: String,
        /// Why it could not be started.
        source: std::io::Error,
    },

    /// An external program exited with a failure.
    #[error("{command} failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line that failed.
        command: String,
        /// Its exit status.
        status: String,
        /// The last line it wrote to stderr.
        stderr: String,
    },

    /// A package lacks a file that the guest needs.
    #[error("package {package} has no {path}")]
    MissingFile {
        /// The package name.
        package: String,
        /// The path looked for inside it.
        path: String,
    },

    /// A kernel module is not a 64-bit little-endian ELF with a `.modinfo` section.
    #[error("cannot read kernel module {module}: {reason}")]
    BadModule {
        /// The module name or file.
        module: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A module that another module depends on is not in the kernel package.
    #[error("kernel module {module} depends on {dependency}, which the kernel package lacks")]
    MissingDependency {
        /// The dependent module.
        module: String,
        /// The missing dependency.
        dependency: String,
    },

    /// The modules' `depends=` fields form a cycle.
    #[error("kernel modules depend on each other in a cycle: {cycle}")]
    DependencyCycle {
        /// The modules in the cycle, joined by ` -> `.
        cycle: String,
    },

    /// A program or library for the initramfs is not a RISC-V ELF64 file it can read.
    #[error("cannot read executable {file}: {reason}")]
    BadExecutable {
        /// The file, as named inside its package.
        file: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The cache holds images built by an older ftvm, with an older initramfs layout.
    #[error(
        "guest images in {} were built by an older ftvm: run `ftvm images fetch`",
        dir.display()
    )]
    Outdated {
        /// The cache directory.
        dir: PathBuf,
    },

    /// The manifest in the cache directory cannot be parsed.
    #[error("malformed manifest {}: {reason}", path.display())]
    BadManifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A file-system operation on the host failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, as a verb phrase ("read", "create directory").
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ImagesError {
    /// Wraps an I/O error with the action and path it concerns.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ImagesError::Io {
            action,
            path,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_not_found_message_tells_to_fetch() {
        let err = ImagesError::NotFound {
            dir: PathBuf::from("/cache/ftvm/images"),
        };

        assert_eq!(
            err.to_string(),
            "guest images not found in /cache/ftvm/images: run `ftvm images fetch`"
        );
    }

    #[test]
    fn test_unreachable_message_names_url_and_cause() {
        let err = ImagesError::Unreachable {
            url: "http://mirror.invalid/debian/dists/trixie/Release".into(),
            cause: "Could not resolve host: mirror.invalid".into(),
        };

        assert_eq!(
            err.to_string(),
            "cannot reach the Debian archive at http://mirror.invalid/debian/dists/trixie/Release: \
             Could not resolve host: mirror.invalid"
        );
    }

    #[test]
    fn test_checksum_mismatch_message_names_file_expected_and_got() {
        let err = ImagesError::ChecksumMismatch {
            file: "opensbi_1.6-1_all.deb".into(),
            expected: "aa".repeat(32),
            got: "bb".repeat(32),
        };

        assert_eq!(
            err.to_string(),
            format!(
                "checksum mismatch for opensbi_1.6-1_all.deb: expected SHA256 {}, got {}",
                "aa".repeat(32),
                "bb".repeat(32)
            )
        );
    }

    #[test]
    fn test_io_message_names_action_and_path() {
        let err = ImagesError::io("read", "/no/such/file")(std::io::Error::from(
            std::io::ErrorKind::NotFound,
        ));

        assert_eq!(
            err.to_string(),
            "cannot read /no/such/file: entity not found"
        );
    }
}
