//! README "Conformance": RFC 6455 on the wire, written and read by hand on a plain socket
//! (a client library would refuse to send what these tests send): the closing handshake,
//! a 1009 that reaches a client still sending, 1002 and 1007 for broken frames, and the
//! test-only echo route that `bench/autobahn.sh` runs the Autobahn cases against.

use std::time::Duration;

use layer4_chat_client::protocol::close;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helper::*;

/// The status line of an upgrade request to `path` (with a bearer token when given), and
/// the socket, which is a WebSocket when the status is 101 (a `welcome` unread on `/ws`).
async fn upgrade(server: &Server, path: &str, token: Option<&str>) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head[9..12]).parse().unwrap();
    (status, s)
}

/// A WebSocket on `/ws` opened by hand (so the test can write a frame in pieces while
/// reading), its `welcome` still unread.
async fn handshake(server: &Server, token: &str) -> TcpStream {
    let (status, s) = upgrade(server, "/ws", Some(token)).await;
    assert_eq!(status, 101);
    s
}

/// The next frame the server sends: its first byte (FIN, RSV and opcode) and payload.
async fn next_frame(r: &mut (impl AsyncRead + Unpin)) -> Result<(u8, Vec<u8>), std::io::Error> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await?;
    assert_eq!(head[1] & 0x80, 0, "a server frame is never masked");
    let mut len = u64::from(head[1] & 0x7f);
    if len == 126 {
        len = u64::from(r.read_u16().await?);
    } else if len == 127 {
        len = r.read_u64().await?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    Ok((head[0], payload))
}

/// The frames the server sends until its Close: the close code (None: a Close without
/// one), or the read error that ended the stream first.
async fn close_code_from(mut r: impl AsyncRead + Unpin) -> Result<Option<u16>, std::io::Error> {
    loop {
        let (first, payload) = next_frame(&mut r).await?;
        if first & 0x0f == 8 {
            return Ok((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])));
        }
    }
}

/// A masked frame as a client sends it: `first` is the first byte (FIN, RSV, opcode).
fn raw_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A whole masked frame (`opcode`, `payload`).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(0x80 | opcode, payload)
}

#[tokio::test]
async fn a_client_s_close_is_answered_with_its_code_and_with_1000_when_it_has_none() {
    let server = Server::start(&[]).await;
    for (sent, answered) in [(Some(4321u16), Some(4321u16)), (None, Some(1000))] {
        let mut s = handshake(&server, &server.token(1, "closer")).await;
        let payload = sent.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
        s.write_all(&client_frame(8, &payload)).await.unwrap();
        let code = tokio::time::timeout(Duration::from_secs(5), close_code_from(&mut s)).await.expect("an answer");
        assert_eq!(code.unwrap(), answered, "the Close of the client: {sent:?}");
    }
}

#[tokio::test]
async fn the_1009_close_reaches_a_client_still_sending_its_oversized_frame() {
    let server = Server::start(&[("MAX_MESSAGE_SIZE", "16384")]).await;
    let mut s = handshake(&server, &server.token(1, "big")).await;
    // 4 MiB in 64 KiB pieces, all of it before reading, as a client library sends a
    // frame: the server decides on the header while the rest keeps coming.
    let frame = client_frame(2, &vec![7u8; 4 << 20]);
    for piece in frame.chunks(64 * 1024) {
        s.write_all(piece).await.expect("the server reads the rest of the frame, no reset");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let code = tokio::time::timeout(Duration::from_secs(10), close_code_from(&mut s)).await.expect("an answer");
    assert_eq!(code.expect("a close frame, not a reset"), Some(close::TOO_BIG));
}

#[tokio::test]
async fn a_frame_that_breaks_the_protocol_is_closed_with_1002_and_text_that_is_not_utf8_with_1007() {
    let server = Server::start(&[]).await;
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("a reserved bit", raw_frame(0x80 | 0x40 | 1, b"{}"), close::PROTOCOL),
        ("a reserved opcode", client_frame(3, b""), close::PROTOCOL),
        ("a fragmented ping", raw_frame(9, b"p"), close::PROTOCOL),
        ("text that is not UTF-8", client_frame(1, b"{\"type\":\"\xff\xfe\"}"), close::INVALID_DATA),
    ];
    for (what, frame, expected) in cases {
        let mut s = handshake(&server, &server.token(1, "broken")).await;
        s.write_all(&frame).await.unwrap();
        let code = tokio::time::timeout(Duration::from_secs(5), close_code_from(&mut s)).await.expect("an answer");
        assert_eq!(code.unwrap_or_else(|e| panic!("{what}: {e}")), Some(expected), "{what}");
    }
}

#[tokio::test]
async fn the_1002_close_reaches_a_client_that_goes_on_sending() {
    let server = Server::start(&[]).await;
    let mut s = handshake(&server, &server.token(1, "talker")).await;
    s.write_all(&raw_frame(0x80 | 0x40 | 1, b"{}")).await.unwrap();
    // A client that has not noticed yet: more frames for 200 ms. The server reads and
    // discards them (for up to 1 s) rather than closing on them, which would reset.
    let ping = client_frame(9, b"still here");
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(200) {
        s.write_all(&ping).await.expect("the server reads on, no reset");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let code = tokio::time::timeout(Duration::from_secs(5), close_code_from(&mut s)).await.expect("an answer");
    assert_eq!(code.expect("a close frame, not a reset"), Some(close::PROTOCOL));
}

#[tokio::test]
async fn the_echo_route_exists_only_with_echo_route_set() {
    let server = Server::start(&[]).await;
    let (status, _) = upgrade(&server, "/echo", None).await;
    assert_eq!(status, 404, "off by default");
}

#[tokio::test]
async fn the_echo_route_sends_every_message_back_with_the_limits_of_ws() {
    let server = Server::start(&[("ECHO_ROUTE", "1"), ("MAX_MESSAGE_SIZE", "1024")]).await;
    let (status, mut s) = upgrade(&server, "/echo", None).await;
    assert_eq!(status, 101, "no token needed");
    // No welcome: the first frame back is the echo of the first message.
    s.write_all(&client_frame(1, "héllo".as_bytes())).await.unwrap();
    assert_eq!(next_frame(&mut s).await.unwrap(), (0x81, "héllo".as_bytes().to_vec()));
    s.write_all(&client_frame(2, &[0, 159, 255])).await.unwrap();
    assert_eq!(next_frame(&mut s).await.unwrap(), (0x82, vec![0, 159, 255]));
    // A message in three fragments, a ping between them: the pong first, then the whole.
    s.write_all(&raw_frame(1, b"frag")).await.unwrap();
    s.write_all(&client_frame(9, b"hi")).await.unwrap();
    s.write_all(&raw_frame(0, b"men")).await.unwrap();
    s.write_all(&raw_frame(0x80, b"ted")).await.unwrap();
    assert_eq!(next_frame(&mut s).await.unwrap(), (0x8a, b"hi".to_vec()));
    assert_eq!(next_frame(&mut s).await.unwrap(), (0x81, b"fragmented".to_vec()));
    // MAX_MESSAGE_SIZE holds here as on /ws.
    s.write_all(&client_frame(2, &[1u8; 1025])).await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(5), close_code_from(&mut s)).await.expect("an answer");
    assert_eq!(code.unwrap(), Some(close::TOO_BIG));
    // So does MAX_CONNECTIONS: the echo takes a slot like any connection.
    let capped = Server::start(&[("ECHO_ROUTE", "1"), ("MAX_CONNECTIONS", "1")]).await;
    let (first, _held) = upgrade(&capped, "/echo", None).await;
    assert_eq!(first, 101);
    let (second, _) = upgrade(&capped, "/echo", None).await;
    assert_eq!(second, 503);
}
