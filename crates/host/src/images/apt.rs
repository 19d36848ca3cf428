//! Finding the Debian mirror the host's apt already uses.
//!
//! The mirror is never written into ftvm: it is read at run time from the apt sources,
//! first the deb822 file (`sources(5)`, "DEB822-STYLE FORMAT"), then the one-line-style
//! `sources.list`.

use std::path::Path;

use super::ImagesError;

/// The deb822-style source file of a stock Debian installation.
pub const DEB822_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";
/// The one-line-style source file.
pub const ONE_LINE_SOURCES: &str = "/etc/apt/sources.list";

/// Returns the mirror's base URL (without a trailing slash) from the host's apt sources.
pub fn host_mirror() -> Result<String, ImagesError> {
    let read = |path: &str| std::fs::read_to_string(Path::new(path)).ok();
    read(DEB822_SOURCES)
        .and_then(|text| mirror_from_deb822(&text))
        .or_else(|| read(ONE_LINE_SOURCES).and_then(|text| mirror_from_one_line(&text)))
        .ok_or_else(|| ImagesError::NoMirror {
            searched: format!("{DEB822_SOURCES}, {ONE_LINE_SOURCES}"),
        })
}

/// Returns the first http(s) URI of the first enabled `deb` stanza that is not only a
/// security suite.
pub fn mirror_from_deb822(text: &str) -> Option<String> {
    let mut stanza: Vec<(String, String)> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let Some(uri) = deb822_stanza_mirror(&stanza) {
                return Some(uri);
            }
            stanza.clear();
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            // A continuation line belongs to the previous field.
            if let Some((_, value)) = stanza.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    None
}

fn deb822_stanza_mirror(fields: &[(String, String)]) -> Option<String> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    if field("enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
        return None;
    }
    if !field("types")
        .unwrap_or("deb")
        .split_whitespace()
        .any(|t| t == "deb")
    {
        return None;
    }
    if field("suites").is_some_and(only_security_suites) {
        return None;
    }
    field("uris")?.split_whitespace().find_map(http_uri)
}

/// Returns the URL of the first `deb` line that is not a security suite.
pub fn mirror_from_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("").trim();
        let rest = line.strip_prefix("deb")?;
        if !rest.starts_with([' ', '\t']) {
            return None; // `deb-src`, or a word that only begins with "deb".
        }
        let mut rest = rest.trim_start();
        if let Some(options) = rest.strip_prefix('[') {
            rest = options.split_once(']')?.1.trim_start();
        }
        let mut words = rest.split_whitespace();
        let uri = words.next()?;
        if only_security_suites(words.next()?) {
            return None;
        }
        http_uri(uri)
    })
}

fn only_security_suites(suites: &str) -> bool {
    suites
        .split_whitespace()
        .all(|suite| suite.ends_with("-security") || suite.ends_with("/updates"))
}

fn http_uri(uri: &str) -> Option<String> {
    (uri.starts_with("http://") || uri.starts_with("https://"))
        .then(|| uri.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_deb822_first_stanza_uri_is_the_mirror() {
        let text = "\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
";

        assert_eq!(
            mirror_from_deb822(text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn test_deb822_skips_security_disabled_and_source_stanzas() {
        let text = "\
Types: deb
URIs: https://security.example/debian-security
Suites: trixie-security

Types: deb-src
URIs: https://src.example/debian

Enabled: no
Types: deb
URIs: https://off.example/debian

types: deb
uris:
 cdrom:/media/ https://mirror.example/debian
suites: trixie
";

        assert_eq!(
            mirror_from_deb822(text).as_deref(),
            Some("https://mirror.example/debian")
        );
    }

    #[test]
    fn test_deb822_without_http_uri_gives_none() {
        assert_eq!(
            mirror_from_deb822("Types: deb\nURIs: file:/srv/debian\n"),
            None
        );
    }

    #[test]
    fn test_one_line_first_deb_line_is_the_mirror() {
        let text = "\
# deb http://commented.example/debian trixie main
deb-src http://src.example/debian trixie main
deb http://security.example/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] https://mirror.example/debian/ bookworm main
deb http://second.example/debian bookworm main
";

        assert_eq!(
            mirror_from_one_line(text).as_deref(),
            Some("https://mirror.example/debian")
        );
    }

    #[test]
    fn test_one_line_without_deb_line_gives_none() {
        assert_eq!(mirror_from_one_line("# nothing here\n\n"), None);
    }
}
