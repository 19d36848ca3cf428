//! A minimal HTTP/1.1 client for etcd's JSON gateway: one request per connection
//! (`Connection: close`), bounded in time and size.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long connecting, and each read or write, may take.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a whole exchange may take, however the server trickles its answer.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest response we read, in bytes; etcd's answers here are a few hundred.
const MAX_RESPONSE: usize = 1 << 20;

/// An `http://HOST:PORT` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The host as written (a name, an IPv4 address, or an IPv6 address in brackets).
    host: String,
    /// The TCP port.
    port: u16,
}

/// A response: status code and (de-chunked) body.
#[derive(Debug)]
pub(crate) struct Response {
    /// The HTTP status code.
    pub(crate) status: u16,
    /// The body.
    pub(crate) body: Vec<u8>,
}

impl Endpoint {
    /// Parses `http://HOST[:PORT][/]`; the port defaults to etcd's 2379.
    pub(crate) fn parse(url: &str) -> Result<Endpoint, String> {
        let Some(rest) = url.strip_prefix("http://") else {
            return Err("only http:// is supported".to_owned());
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err("it has a path; give only http://HOST:PORT".to_owned());
        }
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                (&authority[..i], Some(&authority[i + 1..]))
            }
            _ => (authority, None),
        };
        if host.is_empty() {
            return Err("the host is empty".to_owned());
        }
        let port = match port {
            None => 2379,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("bad port {port:?}"))?,
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }

    /// The endpoint as a URL, `http://HOST:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Sends `POST path` with a JSON `body` and reads the whole response.
    pub(crate) fn post(&self, path: &str, body: &[u8]) -> io::Result<Response> {
        self.exchange("POST", path, body)
    }

    /// Sends `GET path` and reads the whole response.
    pub(crate) fn get(&self, path: &str) -> io::Result<Response> {
        self.exchange("GET", path, &[])
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to no address", self.host),
        );
        for addr in (host, self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    fn exchange(&self, method: &str, path: &str, body: &[u8]) -> io::Result<Response> {
        let start = Instant::now();
        let mut stream = self.connect()?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.host,
            self.port,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request)?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if start.elapsed() > EXCHANGE_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the response took too long",
                ));
            }
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if raw.len() > MAX_RESPONSE {
                return Err(invalid("the response is larger than 1 MiB"));
            }
        }
        parse_response(&raw)
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// Splits a complete HTTP/1.1 response (read until the server closed) into status
/// and body, undoing chunked transfer encoding.
fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let head_end =
        find(raw, b"\r\n\r\n").ok_or_else(|| invalid("the response ends inside its header"))?;
    let head = std::str::from_utf8(&raw[..head_end])
        .map_err(|_| invalid("the response header is not UTF-8"))?;
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid(&format!("bad status line {status_line:?}")))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| invalid("bad Content-Length"))?,
            );
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        rest.get(..length)
            .ok_or_else(|| invalid("the response body is shorter than its Content-Length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// Joins the chunks of a chunked body; trailers after the last chunk are ignored.
fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end =
            find(rest, b"\r\n").ok_or_else(|| invalid("the response ends inside a chunk size"))?;
        let size_text =
            std::str::from_utf8(&rest[..line_end]).map_err(|_| invalid("bad chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| invalid("the response ends inside a chunk"))?;
        body.extend_from_slice(chunk);
        rest = rest
            .get(size + 2..)
            .ok_or_else(|| invalid("the response ends after a chunk"))?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_response_with_content_length() {
        let response = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            .expect("valid response");

        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, b"{}".as_slice())
        );
    }

    #[test]
    fn test_parse_response_dechunks_and_skips_trailers() {
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\nGrpc-Trailer: x\r\n\r\n";

        let response = parse_response(raw).expect("valid response");

        assert_eq!(
            (response.status, response.body.as_slice()),
            (404, b"{\"a\":1}".as_slice())
        );
    }

    #[test]
    fn test_parse_response_refuses_truncated_chunk() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort";

        assert!(parse_response(raw).is_err());
    }

    #[test]
    fn test_endpoint_parse_ipv6_with_port() {
        let endpoint = Endpoint::parse("http://[::1]:2380/").expect("valid URL");

        assert_eq!(endpoint.url(), "http://[::1]:2380");
    }
}
