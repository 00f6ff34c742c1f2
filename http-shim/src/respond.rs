//! Writing a response: its head (status line, length, connection, caching, `nosniff`), then
//! its body; and lingering after an early answer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::message::Response;

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// After an early answer to a request whose body we do not read: stop sending, and read and
/// drop what the client still sends for a moment (at most 1 s and 4 MiB), so that closing the
/// socket with unread data does not reset the connection before the client reads the answer.
pub(crate) fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 16 * 1024];
    let mut total = 0usize;
    while total < 4 << 20 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

/// Writes `r`: the head, then the body unless `head_only` (or a `304`).
pub(crate) fn write_response(
    mut stream: &TcpStream,
    r: &Response,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    // A large body is written from where it is, after the head: copying it behind the head
    // would hold it twice while a slow client reads.
    let inline = r.body.len() <= 16 * 1024;
    let mut out = Vec::with_capacity(if inline { r.body.len() } else { 0 } + 512);
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    let pushed = r.takeover.is_some();
    // A 304 has no body, and no Content-Length: it would describe the answer not sent. A
    // pushed body has no length: it ends when the connection closes.
    if pushed {
        let _ = write!(out, "Content-Type: {}\r\n", r.content_type);
    } else if r.status != 304 {
        let _ = write!(
            out,
            "Content-Type: {}\r\nContent-Length: {}\r\n",
            r.content_type,
            r.body.len()
        );
    }
    let connection = match (r.status, pushed, keep_alive) {
        (101, true, _) => "Upgrade",
        (_, _, true) => "keep-alive",
        _ => "close",
    };
    // nosniff: a browser never takes a JSON answer for a script or a page.
    let _ = write!(
        out,
        "Connection: {connection}\r\nVary: Accept-Encoding\r\nX-Content-Type-Options: nosniff\r\n"
    );
    match &r.etag {
        Some(tag) => {
            let _ = write!(out, "ETag: {tag}\r\nCache-Control: no-cache\r\n");
        }
        None => out.extend_from_slice(b"Cache-Control: no-store\r\n"),
    }
    for h in &r.extra_headers {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let with_body = !head_only && r.status != 304;
    if with_body && inline {
        out.extend_from_slice(&r.body);
    }
    stream.write_all(&out)?;
    if with_body && !inline {
        stream.write_all(&r.body)?;
    }
    Ok(())
}
